"""One bubblewrap sandbox per student kernel: `python -m autograder.sandbox.bubblewrap SPEC CONNECTION_FILE`.

The grader installs, for each submission, a private `python3` kernelspec whose command is this module, so
nbgrader's Execute starts the kernel through it. The sandbox is built by bubblewrap (`bwrap`), the tool
Flatpak uses, from an allow-list:

- the Python environment, the system's `/usr`, the datasets and the check client, all read-only; a virtual
  environment and the datasets at fixed paths (`/venv`, `/data`), so that the sandbox's view does not
  depend on where the repository lives;
- one size-limited tmpfs holding the scratch folder (the working directory and HOME), `$TMPDIR` and
  `/dev/shm`: the only disk a submission can fill, and the only writable place besides its kernel sockets;
- the kernel's own socket folder (read-write) and its check server's folder (read-only). As root the socket
  folder is a tmpfs of its own, a few pages and inodes (`SOCKET_FOLDER_BYTES`, `SOCKET_FOLDER_INODES`) taken
  from the disk limit, mounted by the grader and detached after the run (autograder.pipeline.autograde).

Nothing else of the host exists inside: no repository, no `.git`, no `build/`, no OUT, no submissions, no
host `/tmp`. The kernel and everything it starts have their own user, PID, mount, network, IPC, UTS and
cgroup namespaces, and all of it dies with the kernel's PID namespace: when the kernel is shut down or
killed, when it times out, and when the grader dies (`--die-with-parent`).

As root (the grading machines) each sandbox runs as its own host uid, so no other sandbox shares its
process count, and in its own cgroups where the machine has them: memory and process limits, and a CPU
controller that makes the sandbox one share of the CPU however many processes or sessions it starts, and
at most `Spec.cores` cores (cgroup v2 `cpu.weight` and `cpu.max`, v1 `cpu.shares` and the CFS quota). Its
CPU time (`cpuacct`, or v2 `cpu.stat`) is what the grader's time limits count (autograder.sandbox.timelimits). The
Python environment sits in root's home (mode 700), out of reach of that uid: its folders are first bound,
as root, in a private mount namespace (`unshare --mount`) at places the uid can reach, then bubblewrap
binds them back inside the sandbox. Without root, bubblewrap runs as the instructor in
an unprivileged user namespace; docs/GRADING.md, "The sandbox", says what differs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.settings import CHECKER_VARIABLE, DATA_VARIABLE

BWRAP = "bwrap"
# The name of the sandbox's kernelspec, which the grader installs for each submission. nbclient gives kernels
# of this name its IPython arguments (no history file).
KERNEL_NAME = "python3"
UID_BASE = 1 << 20  # host uids of sandboxes: UID_BASE + pid * SLOTS_PER_PROCESS + slot (autograder.pipeline.autograde)
SLOTS_PER_PROCESS = 64
INSIDE_UID = 1000
SCRATCH = "/scratch"
KERNEL_ENVIRONMENT = (
    "LANG",
    "LC_ALL",
    "TZ",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "MPLBACKEND",
    "NBGRADER_EXECUTION",
    "DP_COURSE_FAST",
)
DEVICES = ("null", "zero", "full", "random", "urandom")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "dp-course"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
CPU_PERIOD_US = 100_000  # the CFS period of a sandbox's CPU quota
CPU_SHARES, CPU_WEIGHT = 1024, 100  # one sandbox, one share: the defaults of a cgroup (v1, v2)
# The socket folder's own tmpfs (root only): room for the kernel's five ZeroMQ sockets and nothing more.
SOCKET_FOLDER_BYTES = 64 * 1024
SOCKET_FOLDER_INODES = 16
VENV_INSIDE = "/venv"  # where a virtual environment appears in the sandbox, wherever it lives on the host
DATA_INSIDE = "/data"


class SandboxUnavailable(RuntimeError):
    """No sandbox can be built on this machine; the message says why and what to do."""


@dataclass
class Spec:
    """What one sandbox gets; written by the grader (a file the kernel never sees), read by `main`."""

    sockets: str  # read-write folder for the kernel's ZeroMQ sockets, at the same path inside
    checker: str  # read-only folder holding the check server's socket, at the same path inside
    client: str  # folder with the `autograder` package of the check client only
    data_root: str
    stage: str  # root only: empty folder where read-only sources are bound for the sandbox's uid to reach
    uid: int | None  # host uid of the sandbox (root only)
    memory_limit: int
    process_limit: int
    disk_limit: int
    cores: float = 0.0  # most CPU cores the sandbox may use at once (its CFS quota); 0: no quota
    socket_folder_bytes: int = 0  # the size of the socket folder's own tmpfs, taken from the disk limit; 0: none
    pid_file: str = ""  # where the launcher writes its pid, which stays bubblewrap's (for the grader's watchdog)
    python_paths: list[str] = field(default_factory=lambda: python_paths())

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: str | Path) -> Spec:
        return cls(**json.loads(Path(path).read_text()))


def python_paths() -> list[str]:
    """The folders of this Python installation: the virtual environment and the interpreter it comes from."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    resolved = sorted({str(p.resolve()) for p in paths})
    return [p for p in resolved if not any(p != q and p.startswith(q + os.sep) for q in resolved)]


def virtual_environment() -> str:
    """This Python's virtual environment (resolved), or '' when it runs from its installation itself.

    Only a virtual environment moves (to VENV_INSIDE): it finds its interpreter through pyvenv.cfg, which
    names the installation by its own path, so the installation stays where it is."""
    prefix = Path(sys.prefix).resolve()
    if prefix == Path(sys.base_prefix).resolve() or not (prefix / "pyvenv.cfg").is_file():
        return ""
    return str(prefix) if str(prefix) in python_paths() else ""  # not when it lies inside the installation


def inside_path(spec: Spec, path: str) -> str:
    """Where a read-only host path of the sandbox appears inside it."""
    venv = virtual_environment()
    if venv and (path == venv or path.startswith(venv + os.sep)):
        return VENV_INSIDE + path[len(venv) :]
    if path == spec.data_root:
        return DATA_INSIDE
    return path


def inside_executable() -> str:
    """This interpreter as the sandbox runs it: the virtual environment's own `python`, at its inside path."""
    return f"{VENV_INSIDE}/bin/{Path(sys.executable).name}" if virtual_environment() else sys.executable


def kernelspec(spec_file: Path) -> dict:
    """The kernel.json that starts a kernel in the sandbox described by `spec_file`."""
    command = [sys.executable, "-m", "autograder.sandbox.bubblewrap", str(spec_file), "{connection_file}"]
    if os.geteuid() == 0:
        command = [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", *command]
    # bubblewrap forwards no SIGINT to the kernel: interrupts (cell timeouts) travel as messages. The launcher
    # imports this very copy of the package (a snapshot, a clone), not whichever one the environment installed.
    return {
        "argv": command,
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "env": {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    }


def unavailable_reason() -> str:
    """Why no sandbox can be built here ('' when one can): bubblewrap missing or namespaces refused."""
    if not sys.platform.startswith("linux"):
        return f"the grading sandbox needs Linux (this is {sys.platform})"
    if not shutil.which(BWRAP):
        return "bubblewrap (bwrap) is not installed: run `make sandbox` (Debian package bubblewrap)"
    probe = subprocess.run(
        [
            BWRAP,
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            *_merged_usr_links(),
            "--proc",
            "/proc",
            "true",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {probe.stderr.strip() or probe.returncode}"
    return ""


def bwrap_arguments(spec: Spec, sources: dict[str, str], connection: int, passwd: int, kernel: list[str]) -> list[str]:
    """bubblewrap's command line; `sources` maps each read-only path to where bwrap can read it from."""
    arguments = [
        BWRAP,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        *_merged_usr_links(),
        "--ro-bind-try",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache",
        "--ro-bind-try",
        "/etc/localtime",
        "/etc/localtime",
        "--ro-bind-try",
        "/etc/fonts",
        "/etc/fonts",
        "--ro-bind-data",
        str(passwd),
        "/etc/passwd",
        "--proc",
        "/proc",
        "--dir",
        "/dev",
    ]
    for device in DEVICES:
        arguments += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    scratch_bytes = max(spec.disk_limit - spec.socket_folder_bytes, 4096)  # one limit for every writable place
    arguments += ["--symlink", "/proc/self/fd", "/dev/fd", "--size", str(scratch_bytes), "--tmpfs", SCRATCH]
    for folder in ("tmp", "shm", ".jupyter"):
        arguments += ["--dir", f"{SCRATCH}/{folder}"]
    arguments += [
        "--symlink",
        f"{SCRATCH}/shm",
        "/dev/shm",
        "--file",
        str(connection),
        f"{SCRATCH}/.jupyter/kernel.json",
    ]
    for path, source in sources.items():
        arguments += ["--ro-bind", source, inside_path(spec, path)]
    arguments += [
        "--bind",
        spec.sockets,
        spec.sockets,
        "--ro-bind",
        spec.checker,
        spec.checker,
        "--remount-ro",
        "/",
        "--uid",
        str(INSIDE_UID),
        "--gid",
        str(INSIDE_UID),
        "--chdir",
        SCRATCH,
    ]
    environment = {name: os.environ[name] for name in KERNEL_ENVIRONMENT if name in os.environ}
    environment.update(
        HOME=SCRATCH,
        TMPDIR=f"{SCRATCH}/tmp",
        MPLCONFIGDIR=f"{SCRATCH}/.matplotlib",
        PATH=f"{Path(inside_executable()).parent}:/usr/bin:/bin",
        PYTHONPATH=spec.client,
        PYTHONDONTWRITEBYTECODE="1",
        USER="student",
        **{DATA_VARIABLE: inside_path(spec, spec.data_root), CHECKER_VARIABLE: os.path.join(spec.checker, "checker")},
    )
    for name, value in sorted(environment.items()):
        arguments += ["--setenv", name, value]
    return arguments + ["--", *kernel]


def _merged_usr_links() -> list[str]:
    """/bin, /lib, ... as the host has them: symlinks into /usr (merged /usr) or read-only folders."""
    arguments = []
    for top in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / top
        if path.is_symlink():
            arguments += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            arguments += ["--ro-bind", str(path), str(path)]
    return arguments


def read_only_paths(spec: Spec) -> list[str]:
    return [*spec.python_paths, spec.data_root, spec.client]


def _stage(spec: Spec) -> dict[str, str]:
    """Root only: bind each read-only source at spec.stage/N (in this process's private mount namespace),
    where the sandbox's uid can reach it although the original sits in root's home."""
    sources = {}
    for index, path in enumerate(read_only_paths(spec)):
        if not Path(path).exists():
            continue
        target = Path(spec.stage) / str(index)
        target.mkdir(mode=0o755)
        subprocess.run(["mount", "--bind", "-o", "ro", path, str(target)], check=True, capture_output=True)
        sources[path] = str(target)
    return sources


def _v1_mounts() -> dict[str, Path]:
    """controller -> where its cgroup v1 hierarchy is mounted, as /proc/self/mountinfo says (`cpu` and
    `cpuacct` are often mounted together, at cpu,cpuacct)."""
    mounts: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        fields = line.split(" - ")
        if len(fields) != 2 or not fields[1].startswith("cgroup "):
            continue
        mount_point = Path(fields[0].split()[4])
        for option in fields[1].split()[2].split(","):
            if option in V1_CONTROLLERS:
                mounts.setdefault(option, mount_point)
    return mounts


def cgroup_folders(uid: int) -> dict[str, Path]:
    """This sandbox's cgroups, by controller: one folder in the unified hierarchy (v2), or one per v1
    hierarchy (memory, pids, cpu, cpuacct; one folder where they are mounted together)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        folder = CGROUP_ROOT / CGROUP_NAME / f"sandbox-{uid}"
        return {controller: folder for controller in V1_CONTROLLERS}
    return {controller: mount / CGROUP_NAME / f"sandbox-{uid}" for controller, mount in _v1_mounts().items()}


def cgroup_limits(spec: Spec) -> dict[str, int | str]:
    """The files of the sandbox's cgroups and their values (those a hierarchy lacks are skipped)."""
    limits: dict[str, int | str] = {
        "memory.max": spec.memory_limit,
        "memory.limit_in_bytes": spec.memory_limit,
        "memory.memsw.limit_in_bytes": spec.memory_limit,
        "memory.swap.max": 0,
        "pids.max": spec.process_limit,
        "cpu.weight": CPU_WEIGHT,
        "cpu.shares": CPU_SHARES,
    }
    if spec.cores > 0:
        quota = max(int(spec.cores * CPU_PERIOD_US), 1000)  # the kernel's least quota is 1 ms
        limits.update(
            {"cpu.max": f"{quota} {CPU_PERIOD_US}", "cpu.cfs_period_us": CPU_PERIOD_US, "cpu.cfs_quota_us": quota}
        )
    return limits


OPTIONAL_LIMITS = ("memory.memsw.limit_in_bytes", "memory.swap.max")  # absent without swap accounting


def enter_cgroups(spec: Spec) -> bool:
    """Move this process into the sandbox's cgroups with their limits; False where the machine has none
    with memory and process limits. The CPU controller is used where the machine has one."""
    assert spec.uid is not None, "only root enters cgroups, and a root grader gives each sandbox a uid"
    try:
        folders = cgroup_folders(spec.uid)
        if not {"memory", "pids"} <= set(folders):
            return False
        unified = (CGROUP_ROOT / "cgroup.controllers").exists()
        if unified:
            parent = CGROUP_ROOT / CGROUP_NAME
            parent.mkdir(exist_ok=True)
            for level in (CGROUP_ROOT, parent):
                for controller in ("memory", "pids", "cpu"):
                    if controller in (level / "cgroup.subtree_control").read_text().split():
                        continue
                    try:
                        (level / "cgroup.subtree_control").write_text(f"+{controller}")
                    except OSError:
                        if controller != "cpu":  # without the CPU controller the sandbox still runs
                            raise
        limits, written = cgroup_limits(spec), set()
        for folder in dict.fromkeys(folders.values()):
            folder.mkdir(parents=True, exist_ok=True)
            for name, value in limits.items():
                if (folder / name).exists():
                    try:
                        (folder / name).write_text(str(value))
                        written.add(name)
                    except OSError:
                        if name not in OPTIONAL_LIMITS:
                            raise
        if "pids.max" not in written or not written & {"memory.max", "memory.limit_in_bytes"}:
            return False
        for folder in dict.fromkeys(folders.values()):
            (folder / "cgroup.procs").write_text(str(os.getpid()))
        return True
    except OSError:
        return False


def cpu_clock(uid: int | None) -> Callable[[], float] | None:
    """A function giving the CPU seconds the sandbox's processes have used, all of them and the dead
    included (cgroup v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec; 0 before its cgroup exists), or None
    where the machine does not count it (no cgroups, or not root)."""
    folder = cgroup_folders(uid).get("cpuacct") if uid is not None else None
    return _cgroup_clock(folder) if folder is not None else None


def all_sandboxes_cpu_clock(uid: int | None) -> Callable[[], float] | None:
    """The same for every sandbox of the machine together: their parent cgroup counts its children's CPU
    time, removed ones included (what autograder.sandbox.timelimits compares the host's load with)."""
    folder = cgroup_folders(uid).get("cpuacct") if uid is not None else None
    return _cgroup_clock(folder.parent) if folder is not None else None


def _cgroup_clock(folder: Path) -> Callable[[], float]:
    def seconds() -> float:
        try:
            if (folder / "cpuacct.usage").exists():
                return int((folder / "cpuacct.usage").read_text()) / 1e9
            for line in (folder / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            pass
        return 0.0

    return seconds


def waits(uid: int | None) -> Callable[[], dict[int, float]] | None:
    """A function giving, for each thread now in the sandbox's cgroup, the seconds it has spent ready to run
    but waiting for a CPU (/proc/<tid>/schedstat), or None where the machine does not say."""
    folder = cgroup_folders(uid).get("cpuacct") if uid is not None else None
    if folder is None or not Path("/proc/self/schedstat").exists():
        return None

    def seconds() -> dict[int, float]:
        waited = {}
        for name in ("tasks", "cgroup.threads"):
            try:
                threads = (folder / name).read_text().split()
            except OSError:
                continue
            for tid in threads:
                try:
                    waited[int(tid)] = int(Path(f"/proc/{tid}/schedstat").read_text().split()[1]) / 1e9
                except (OSError, ValueError, IndexError):
                    pass
            break
        return waited

    return seconds


def remove_cgroups(uid: int) -> None:
    """Kill whatever is still in the sandbox's cgroups, then remove them (called by the grader)."""
    for folder in dict.fromkeys(cgroup_folders(uid).values()):
        if not folder.exists():
            continue
        for _ in range(200):  # a second at most: killed processes leave their cgroup as they die
            try:
                pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)
        try:
            folder.rmdir()
        except OSError:
            pass


def apply_limits(spec: Spec, cgroups: bool, root: bool) -> None:
    """Per-process limits, on top of the cgroups (or instead of their memory limit where there are none).

    The process limit is set here only as root, where the sandbox's private host uid makes it count that
    sandbox alone. Without root it is set inside the sandbox instead (see `kernel_command`): set out here,
    the kernel would also count every other process of the instructor's own user, browser threads included.
    """
    memory = resource.RLIM_INFINITY if cgroups else spec.memory_limit
    limits = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, spec.disk_limit), (resource.RLIMIT_CORE, 0)]
    if root:
        limits.append((resource.RLIMIT_NPROC, spec.process_limit))
    for limit, value in limits:
        soft, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY or value != resource.RLIM_INFINITY and value < hard else hard
        resource.setrlimit(limit, (value, value))


def kernel_command(spec: Spec, root: bool, kernel_arguments: tuple[str, ...] = ()) -> list[str]:
    """The kernel's command inside the sandbox. Without root, `prlimit` sets the process limit in there:
    Linux then counts it in the sandbox's own user namespace, that is for this sandbox's processes alone."""
    command = [
        inside_executable(),
        "-m",
        "ipykernel_launcher",
        "-f",
        f"{SCRATCH}/.jupyter/kernel.json",
        *kernel_arguments,
    ]
    if root:
        return command
    return [shutil.which("prlimit") or "/usr/bin/prlimit", f"--nproc={spec.process_limit}", "--", *command]


def kill(spec_file: Path) -> None:
    """Kill a sandbox from outside (the grader's watchdog): its bubblewrap, hence its PID namespace, and
    whatever is left in its cgroups."""
    spec = Spec.read(spec_file)
    try:
        os.kill(int(Path(spec.pid_file).read_text()), 9)
    except (OSError, ValueError):
        pass
    if spec.uid is not None:
        remove_cgroups(spec.uid)


def main(spec_file: str, connection_file: str, *kernel_arguments: str) -> None:
    spec = Spec.read(spec_file)
    if spec.pid_file:
        Path(spec.pid_file).write_text(str(os.getpid()))
    connection = os.open(connection_file, os.O_RDONLY)
    passwd_read, passwd_write = os.pipe()
    os.write(passwd_write, f"student:x:{INSIDE_UID}:{INSIDE_UID}::{SCRATCH}:/bin/sh\n".encode())
    os.close(passwd_write)
    root = os.geteuid() == 0
    sources = _stage(spec) if root else {path: path for path in read_only_paths(spec) if Path(path).exists()}
    cgroups = root and enter_cgroups(spec)
    apply_limits(spec, cgroups, root)
    if root:
        assert spec.uid is not None, "a root grader gives each sandbox a uid (autograde.sandbox_uid)"
        os.setgroups([])
        os.setgid(spec.uid)
        os.setuid(spec.uid)
    for fd in (connection, passwd_read):
        os.set_inheritable(fd, True)
    arguments = bwrap_arguments(spec, sources, connection, passwd_read, kernel_command(spec, root, kernel_arguments))
    # What the kernel writes to its own stdout and stderr (not its outputs, which travel as messages) would
    # land in the grader's terminal and could fill its log: it goes nowhere.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.execvp(arguments[0], arguments)


if __name__ == "__main__":
    main(*sys.argv[1:])
