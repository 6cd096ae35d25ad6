"""nbgrader's generate_assignment over a course folder: what `release` and the grader's bundles both run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from nbgrader.apps import NbGraderAPI

from autograder.layout import assignments
from autograder.pipeline.config import nbgrader_config, quiet_logger


class ReleaseError(RuntimeError):
    """Releasing failed, or the release leaks."""


def generate(course_root: Path, ids: list[str] | None = None, gradebook: Path | str | None = None) -> None:
    """Run nbgrader generate_assignment for each assignment of `course_root/source` into `course_root/release`.

    The assignments' cells are recorded in `gradebook` (the grader needs them); by default it is a throw-away
    file, since releasing alone needs no record.
    """
    ids = ids or assignments(course_root / "source")
    with tempfile.TemporaryDirectory() as scratch:
        api = NbGraderAPI(
            config=nbgrader_config(course_root, gradebook or Path(scratch) / "gradebook.db"),
            log=quiet_logger("release"),
        )
        for assignment in ids:
            result = api.generate_assignment(assignment, force=True, create=True)
            if not result["success"]:
                raise ReleaseError(
                    f"nbgrader generate_assignment {assignment} failed:\n{result.get('error') or result.get('log')}"
                )
