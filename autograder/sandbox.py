"""Start a student's kernel in a sandbox: `python -m autograder.sandbox WORKDIR CONNECTION_FILE [KERNEL ARGS]`.

The grader installs a kernelspec named `python3` in each submission's private Jupyter data folder whose
command is this module, so nbgrader's Execute preprocessor starts every student kernel through it.

When run as root on Linux (the grading machines), before it becomes the kernel it:

1. enters a new network namespace with no interface up: no network at all (the kernel talks to nbgrader
   over Unix sockets, see `KernelManager.transport` in autograder.worker);
2. enters a new mount namespace and hides, behind empty folders: the `course` package (reference library and
   hidden tests: autograder.check_server runs them outside the kernel), the source notebooks and tests,
   the class folder with every other student's work, this submission's copy of the source, its gradebook,
   /root and /tmp (a private, empty /tmp replaces it); the few paths the kernel needs (its working folder,
   the Python installation, the repository for autograder.check_client, the data) are put back read-only,
   except the working folder;
3. drops root for the unprivileged user `nobody`, which owns only the working folder.

Everywhere it applies resource limits: address space (MEMORY_LIMIT), processes (PROCESS_LIMIT: a fork bomb
stays bounded), size of any written file (FILE_SIZE_LIMIT), no core dumps.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import resource
import shutil
import sys
from pathlib import Path

from .paths import REPO

MEMORY_LIMIT = 8 * 1024**3
PROCESS_LIMIT = 512
FILE_SIZE_LIMIT = 1024**3
SANDBOX_USER = "nobody"
SOCKET_LINK_VARIABLE = "DP_COURSE_SOCKET_LINK"  # "link:target": the grader's short path to the kernel sockets
HOLDING = Path("/mnt")  # an existing empty folder, covered by a private tmpfs inside the namespace

_CLONE_NEWNS, _CLONE_NEWNET = 0x00020000, 0x40000000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)


def apply_limits() -> None:
    for limit, value in ((resource.RLIMIT_AS, MEMORY_LIMIT), (resource.RLIMIT_NPROC, PROCESS_LIMIT),
                         (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))


def hidden_paths(workdir: Path) -> list[Path]:
    """What a student's kernel must not see: the reference library and hidden tests (`course`, run by the
    grader's own process instead), sources, tests, gradebooks, the class folder, /root, /tmp."""
    class_folder = workdir.parents[2]  # OUT/work/<student>/<assignment>
    return [REPO / "course", REPO / "source", REPO / "tests", class_folder, workdir / "source", workdir / "gradebook.db",
            Path("/root"), Path("/tmp")]


def needed_paths(workdir: Path) -> list[tuple[Path, bool]]:
    """(path, writable) the kernel must reach: its folder, Python, the repository and the data."""
    python_paths = {Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent}
    data = Path(os.environ.get("DP_COURSE_DATA", REPO / "data")).resolve()
    return [(workdir, True), *((p.resolve(), False) for p in sorted(python_paths)), (REPO, False), (data, False)]


def isolate(workdir: Path) -> None:
    """Network and mount namespaces (root only): see the module docstring."""
    _call(_libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET), "unshare")
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    _mount("tmpfs", HOLDING, "tmpfs", 0, "mode=700")
    held = []
    for index, (path, writable) in enumerate(needed_paths(workdir)):
        if path.exists():
            holder = HOLDING / str(index)
            holder.mkdir()
            _mount(path, holder, None, _MS_BIND | _MS_REC)
            held.append((path, holder, writable))
    held.sort(key=lambda item: len(item[0].parts))  # shallow first, so deeper mounts land on top
    for item in held:
        _restore(*item)
    for hidden in sorted(hidden_paths(workdir), key=lambda path: len(path.parts)):
        if hidden.is_dir():
            _mount("tmpfs", hidden, "tmpfs", 0, "size=64m,mode=1777" if hidden == Path("/tmp") else "size=1m,mode=755")
        elif hidden.exists():
            _mount("/dev/null", hidden, None, _MS_BIND)
        for item in held:  # what the kernel needs below a hidden folder comes back
            if hidden in item[0].parents:
                _restore(*item)


def _restore(path: Path, holder: Path, writable: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _mount(holder, path, None, _MS_BIND | _MS_REC)
    if not writable:
        _mount(path, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


def drop_privileges(workdir: Path) -> None:
    """Become `nobody`, owner of the working folder's outputs, home and kernel sockets."""
    user = pwd.getpwnam(SANDBOX_USER)
    for top in (workdir / "autograded", workdir / "home", workdir / ".jupyter" / "runtime"):
        for node in [top, *top.rglob("*")]:
            os.chown(node, user.pw_uid, user.pw_gid)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def _mount(source, target, fstype, flags: int, data: str | None = None) -> None:
    encode = lambda value: None if value is None else str(value).encode()  # noqa: E731
    _call(_libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")


def _call(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"sandbox: {what} failed: {os.strerror(error)}")


def main(workdir: str, connection_file: str, *kernel_arguments: str) -> None:
    workdir_path = Path(workdir).resolve()
    runtime = workdir_path / ".jupyter" / "runtime"
    home = workdir_path / "home"
    home.mkdir(exist_ok=True)
    runtime.mkdir(parents=True, exist_ok=True)
    # The connection file may sit in /tmp, which the sandbox replaces: keep a copy in the working folder.
    connection = runtime / Path(connection_file).name
    if Path(connection_file).resolve() != connection:
        shutil.copyfile(connection_file, connection)
    os.environ.update(HOME=str(home), MPLCONFIGDIR=str(home / ".matplotlib"))
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        isolate(workdir_path)
        # The working directory still points into the tree as it was before the mounts: enter it again
        # through the new view, or '..' would lead to what was just hidden.
        os.chdir(os.getcwd())
        if SOCKET_LINK_VARIABLE in os.environ:  # the private /tmp needs the grader's link to the sockets
            link, target = os.environ[SOCKET_LINK_VARIABLE].split(":", 1)
            Path(link).symlink_to(target)
        drop_privileges(workdir_path)
    apply_limits()
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection), *kernel_arguments])


if __name__ == "__main__":
    main(*sys.argv[1:])
