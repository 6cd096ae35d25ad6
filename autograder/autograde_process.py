"""Autograde one submission in the grader's private folder: `python -m autograder.autograde_process JOB`.

A child process of autograder.submission, so that the grader bounds its wall time and survives whatever
happens in it. JOB (JSON) names the private course folder and the grading settings. The process prepares
the submission's sandbox (its kernelspec, socket folders and spec: see autograder.sandbox), runs nbgrader
autograde and generate_feedback, and writes OUTCOME.json beside the course folder with nbgrader's results.
Nothing it reads or writes lies in the sandbox's view except the socket folders.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from nbgrader.apps import NbGraderAPI

from . import sandbox
from .config import nbgrader_config

CLIENT_MODULES = ("check_client.py", "wire.py")


def prepare_sandbox(base: Path, course: Path, job: dict) -> None:
    """Socket folders, the check client's package, the sandbox spec and the kernelspec that uses it."""
    uid = sandbox.UID_BASE + os.getpid() if os.geteuid() == 0 else None
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
                        process_limit=job["process_limit"], disk_limit=job["disk_limit"])
    spec_file = base / "spec.json"
    spec.write(spec_file)
    kernel = course / ".jupyter" / "kernels" / "python3" / "kernel.json"
    kernel.parent.mkdir(parents=True)
    kernel.write_text(json.dumps(sandbox.kernelspec(spec_file)))
    (base / "uid").write_text(str(uid or ""))


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    base, course = Path(job["base"]), Path(job["course"])
    config = nbgrader_config(course)
    config.Execute.timeout = int(job["cell_timeout"])
    config.Execute.startup_timeout = int(job["startup_timeout"])
    config.TrustedExecute.verdict_file = str(base / "verdicts.json")
    config.TrustedExecute.output_limit = job["output_limit"]
    config.TrustedExecute.reply_limit = job["reply_limit"]
    jupyter = course / ".jupyter"
    os.environ.update(JUPYTER_PATH=str(jupyter), JUPYTER_DATA_DIR=str(jupyter),
                      JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), DP_COURSE_DATA=job["data_root"])
    if job["sandbox"]:
        prepare_sandbox(base, course, job)
        # The sandbox has no network, not even the host's loopback: the kernel's sockets are Unix sockets in
        # a folder bound at the same (short) path inside, and the check server's socket sits beside it.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(base / "k" / "kernel")
        config.TrustedExecute.checker_folder = str(base / "c")
    api = NbGraderAPI(config=config)
    outcome = {"autograde": api.autograde(job["assignment"], job["student"], force=True, create=True)}
    if outcome["autograde"]["success"]:
        outcome["feedback"] = api.generate_feedback(job["assignment"], job["student"], force=True)
    (base / "outcome.json").write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
