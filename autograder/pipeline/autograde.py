"""nbgrader autograde and generate_feedback for one submission, in the grader's private course folder.

`run_nbgrader(base, course, job)` prepares the submission's sandbox (its kernelspec, socket folders and spec:
see autograder.sandbox.bubblewrap) and runs nbgrader in this process, with a logger of its own so that nothing reaches
the terminal (nbgrader's results carry their log). Nothing it reads or writes lies in the sandbox's view
except the socket folders. `release_sandbox` undoes `prepare_sandbox` whatever the kernel left there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import json
import math
import os
import shutil
import threading
from pathlib import Path
from unittest import mock

from nbgrader.apps import NbGraderAPI

from autograder import imports
from autograder import kernel_side as kernel_side_package
from autograder.pipeline import early_kernel
from autograder.pipeline.config import nbgrader_config, quiet_logger
from autograder.pipeline.preprocessors import TrustedExecute
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox import cleanup
from autograder.sandbox.timelimits import usable_cpus
from autograder.settings import DATA_VARIABLE, GradingSettings

_slots = itertools.count()
_slots_lock = threading.Lock()


def sandbox_uid() -> int | None:
    """A host uid for a new sandbox, unique among the sandboxes alive on this machine (root only).

    The grading process's pid is unique among live processes, and each process numbers its sandboxes.
    """
    if os.geteuid() != 0:
        return None
    with _slots_lock:
        slot = next(_slots) % sandbox.SLOTS_PER_PROCESS
    return sandbox.UID_BASE + os.getpid() * sandbox.SLOTS_PER_PROCESS + slot


def sandbox_cores(settings: GradingSettings) -> float:
    """Grading.cores_per_sandbox, or this machine's usable CPUs shared among its workers (at least one)."""
    return settings.cores_per_sandbox or max(usable_cpus() / settings.workers, 1.0)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MS_NOSUID, MS_NODEV, MS_NOEXEC, MNT_DETACH = 0x2, 0x4, 0x8, 0x2  # <sys/mount.h>


def _mount_socket_folder(sockets: Path, uid: int) -> None:
    """A tmpfs of a few pages and inodes on the kernel's socket folder (root only): the one host folder the
    kernel may write stays within its disk limit (the sandbox's scratch gets the rest), and it goes at once,
    whatever is in it, when `release_sandbox` detaches it."""
    options = (
        f"size={sandbox.SOCKET_FOLDER_BYTES},nr_inodes={sandbox.SOCKET_FOLDER_INODES},mode=0700,uid={uid},gid={uid}"
    )
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc.mount(b"tmpfs", str(sockets).encode(), b"tmpfs", flags, options.encode()) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot mount the socket folder's tmpfs on {sockets}: {os.strerror(error)}")


def _detach(folder: Path) -> str:
    """Detach whatever is mounted on `folder` (its files vanish with it); '' or what went wrong."""
    if _libc.umount2(str(folder).encode(), MNT_DETACH) != 0:
        error = ctypes.get_errno()
        return f"cannot detach {folder}: {os.strerror(error)}"
    return ""


def prepare_sandbox(base: Path, course: Path, settings: GradingSettings, uid: int | None) -> None:
    """Socket folders, the check client's package, the sandbox spec and the kernelspec that uses it."""
    sockets, checker, client, stage = base / "k", base / "c", base / "client", base / "stage"
    for folder in (sockets, checker, client / "autograder", stage):
        folder.mkdir(parents=True, mode=0o755)
    socket_folder_bytes = 0
    if uid is not None:
        _mount_socket_folder(sockets, uid)
        socket_folder_bytes = sandbox.SOCKET_FOLDER_BYTES
    else:
        sockets.chmod(0o700)
    (client / "autograder" / "__init__.py").write_text("")
    kernel_side = Path(kernel_side_package.__file__).parent
    shutil.copytree(kernel_side, client / "autograder" / kernel_side.name, ignore=shutil.ignore_patterns("__pycache__"))
    spec = sandbox.Spec(
        sockets=str(sockets),
        checker=str(checker),
        client=str(client),
        data_root=str(settings.data_root),
        stage=str(stage),
        uid=uid,
        memory_limit=settings.memory_limit,
        process_limit=settings.process_limit,
        disk_limit=settings.disk_limit,
        cores=sandbox_cores(settings),
        socket_folder_bytes=socket_folder_bytes,
        pid_file=str(base / "sandbox.pid"),
    )
    spec_file = base / "spec.json"
    spec.write(spec_file)
    kernel = course / ".jupyter" / "kernels" / sandbox.KERNEL_NAME / "kernel.json"
    kernel.parent.mkdir(parents=True)
    kernel.write_text(json.dumps(sandbox.kernelspec(spec_file)))


def release_sandbox(base: Path, uid: int | None) -> list[str]:
    """Kill what is left of the sandbox, detach its socket folder's tmpfs and remove the private folder
    `base`, without recursion and without following a link (autograder.sandbox.cleanup). Never raises: returns
    what could not be undone, for the submission's log."""
    problems = []
    try:
        if (base / "spec.json").is_file():
            sandbox.kill(base / "spec.json")  # normally gone already: nbgrader shut the kernel down
        if uid is not None:
            sandbox.remove_cgroups(uid)
    except Exception as error:  # noqa: BLE001 (cleanup reports, never raises)
        problems.append(f"cannot stop the sandbox: {type(error).__name__}: {error}")
    if uid is not None and os.path.ismount(base / "k"):
        problems += [p for p in [_detach(base / "k")] if p]
    return problems + cleanup.remove_tree(base)


def run_nbgrader(
    base: Path, course: Path, settings: GradingSettings, assignment: str, student: str, seed: int, uid: int | None
) -> dict:
    """Autograde and make feedback; return nbgrader's outcomes {"autograde": ..., "feedback": ...}."""
    config = nbgrader_config(course)
    # nbclient counts whole seconds; TrustedExecute's own time limits keep the exact value.
    config.Execute.timeout = math.ceil(settings.cell_timeout)
    config.Execute.startup_timeout = math.ceil(settings.startup_timeout)
    config.TrustedExecute.settings = settings
    config.TrustedExecute.verdict_file = str(base / "verdicts.json")
    config.TrustedExecute.seed = seed
    config.SanitiseNotebook.settings = settings
    jupyter = course / ".jupyter"
    environment = {
        "JUPYTER_PATH": str(jupyter),
        "JUPYTER_DATA_DIR": str(jupyter),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        DATA_VARIABLE: str(settings.data_root),
    }
    if settings.sandbox:
        prepare_sandbox(base, course, settings, uid)
        # The sandbox has no network, not even the host's loopback: the kernel's sockets are Unix sockets in
        # a folder bound at the same (short) path inside, and the check server's socket sits beside it.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(base / "k" / "kernel")
        config.TrustedExecute.checker_folder = str(base / "c")
        # Whatever kernel the notebook names, the sandbox's runs it.
        config.TrustedExecute.kernel_name = sandbox.KERNEL_NAME
        if uid is not None:  # its time limits count its own CPU time
            config.TrustedExecute.sandbox_uid = uid
            config.TrustedExecute.cores = sandbox_cores(settings)
    # JUPYTER_PATH first: this submission's kernelspec wins.
    with mock.patch.dict(os.environ, environment), contextlib.ExitStack() as kernel:
        if settings.sandbox:  # its boot overlaps nbgrader's set-up (see autograder.pipeline.early_kernel)
            config.TrustedExecute.early_kernel = str(base)
            kernel.enter_context(
                early_kernel.started(str(base), lambda: TrustedExecute.start_kernel_early(config, str(base)))
            )
        api = NbGraderAPI(config=config, log=quiet_logger("grading"))
        outcome = {"autograde": api.autograde(assignment, student, force=True, create=True)}
        if outcome["autograde"]["success"]:
            with imports.LOCK:  # its first page imports what the warm-up may still be importing
                outcome["feedback"] = api.generate_feedback(assignment, student, force=True)
    return outcome
