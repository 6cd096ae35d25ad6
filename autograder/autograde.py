"""nbgrader autograde and generate_feedback for one submission, in the grader's private course folder.

`run_nbgrader(base, course, job)` prepares the submission's sandbox (its kernelspec, socket folders and spec:
see autograder.sandbox) and runs nbgrader in this process, with a logger of its own so that nothing reaches
the terminal (nbgrader's results carry their log). Nothing it reads or writes lies in the sandbox's view
except the socket folders.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
from pathlib import Path
from unittest import mock

from nbgrader.apps import NbGraderAPI

from . import early_kernel, sandbox
from .config import nbgrader_config, quiet_logger
from .preprocessors import TrustedExecute
from .settings import DATA_VARIABLE

CLIENT_MODULES = ("check_client.py", "wire.py")
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


def prepare_sandbox(base: Path, course: Path, job: dict, uid: int | None) -> None:
    """Socket folders, the check client's package, the sandbox spec and the kernelspec that uses it."""
    sockets, checker, client, stage = base / "k", base / "c", base / "client", base / "stage"
    for folder in (sockets, checker, client / "autograder", stage):
        folder.mkdir(parents=True, mode=0o755)
    if uid is not None:
        os.chown(sockets, uid, uid)
    sockets.chmod(0o700)
    (client / "autograder" / "__init__.py").write_text("")
    for module in CLIENT_MODULES:
        shutil.copyfile(Path(__file__).with_name(module), client / "autograder" / module)
    spec = sandbox.Spec(sockets=str(sockets), checker=str(checker), client=str(client), data_root=job["data_root"],
                        stage=str(stage), uid=uid, memory_limit=job["memory_limit"],
                        process_limit=job["process_limit"], disk_limit=job["disk_limit"],
                        pid_file=str(base / "sandbox.pid"))
    spec_file = base / "spec.json"
    spec.write(spec_file)
    kernel = course / ".jupyter" / "kernels" / sandbox.KERNEL_NAME / "kernel.json"
    kernel.parent.mkdir(parents=True)
    kernel.write_text(json.dumps(sandbox.kernelspec(spec_file)))


def run_nbgrader(base: Path, course: Path, job: dict, uid: int | None) -> dict:
    """Autograde and make feedback; return nbgrader's outcomes {"autograde": ..., "feedback": ...}."""
    config = nbgrader_config(course)
    config.Execute.timeout = int(job["cell_timeout"])
    config.Execute.startup_timeout = int(job["startup_timeout"])
    config.TrustedExecute.verdict_file = str(base / "verdicts.json")
    config.TrustedExecute.output_limit = job["output_limit"]
    config.TrustedExecute.reply_limit = job["reply_limit"]
    config.TrustedExecute.seed = job["seed"]
    config.TrustedExecute.probe = job["kernel_probe"]
    jupyter = course / ".jupyter"
    environment = {"JUPYTER_PATH": str(jupyter), "JUPYTER_DATA_DIR": str(jupyter),
                   "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"), DATA_VARIABLE: job["data_root"]}
    if job["sandbox"]:
        prepare_sandbox(base, course, job, uid)
        # The sandbox has no network, not even the host's loopback: the kernel's sockets are Unix sockets in
        # a folder bound at the same (short) path inside, and the check server's socket sits beside it.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(base / "k" / "kernel")
        config.TrustedExecute.checker_folder = str(base / "c")
        # Whatever kernel the notebook names, the sandbox's runs it.
        config.TrustedExecute.kernel_name = sandbox.KERNEL_NAME
    # JUPYTER_PATH first: this submission's kernelspec wins.
    with mock.patch.dict(os.environ, environment), contextlib.ExitStack() as kernel:
        if job["sandbox"]:  # its boot overlaps nbgrader's set-up (see autograder.early_kernel)
            config.TrustedExecute.early_kernel = str(base)
            kernel.enter_context(early_kernel.started(
                str(base), lambda: TrustedExecute.start_kernel_early(config, str(base))))
        api = NbGraderAPI(config=config, log=quiet_logger("grading"))
        outcome = {"autograde": api.autograde(job["assignment"], job["student"], force=True, create=True)}
        if outcome["autograde"]["success"]:
            outcome["feedback"] = api.generate_feedback(job["assignment"], job["student"], force=True)
    return outcome
