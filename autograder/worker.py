"""Grade one submission in its own course directory: `python -m autograder.worker WORKDIR ASSIGNMENT STUDENT`.

Runs nbgrader autograde and generate_feedback there and writes WORKDIR/worker.json with nbgrader's outcome.
It runs in a child process so that the grader can bound its wall time and survive whatever it does.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from nbgrader.apps import NbGraderAPI

from .config import nbgrader_config
from .sandbox import SOCKET_LINK_VARIABLE


def main(workdir: str, assignment: str, student: str) -> int:
    root = Path(workdir)
    config = nbgrader_config(root)
    if (root / ".jupyter" / "kernels" / "python3").is_dir():
        # The sandboxed kernel has no network, not even loopback: talk to it over Unix sockets, named by an
        # absolute path because the kernel and this process work in different folders.
        # Socket paths are limited to about 100 characters, so they go through a short link in /tmp (the
        # sandbox makes the same link inside its private /tmp).
        sockets = root / ".jupyter" / "runtime"
        sockets.mkdir(parents=True, exist_ok=True)
        link = Path(tempfile.gettempdir()) / f"dpk-{hashlib.sha1(str(root).encode()).hexdigest()[:16]}"
        if not link.is_symlink():
            link.symlink_to(sockets)
        os.environ[SOCKET_LINK_VARIABLE] = f"{link}:{sockets}"
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(link / "kernel-ipc")
    api = NbGraderAPI(config=config)
    outcome = {"autograde": api.autograde(assignment, student, force=True, create=True)}
    if outcome["autograde"]["success"]:
        outcome["feedback"] = api.generate_feedback(assignment, student, force=True)
    (root / "worker.json").write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
