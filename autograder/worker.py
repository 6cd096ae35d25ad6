"""Grade one submission in its own course directory: `python -m autograder.worker WORKDIR ASSIGNMENT STUDENT`.

Runs nbgrader autograde and generate_feedback there and writes WORKDIR/worker.json with nbgrader's outcome.
It runs in a child process so that the grader can bound its wall time and survive whatever it does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nbgrader.apps import NbGraderAPI

from .config import nbgrader_config


def main(workdir: str, assignment: str, student: str) -> int:
    root = Path(workdir)
    api = NbGraderAPI(config=nbgrader_config(root))
    outcome = {"autograde": api.autograde(assignment, student, force=True, create=True)}
    if outcome["autograde"]["success"]:
        outcome["feedback"] = api.generate_feedback(assignment, student, force=True)
    (root / "worker.json").write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
