"""`python -m autograder release`: regenerate release/ from source/ with nbgrader, then scan for leaks."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from nbgrader.apps import NbGraderAPI

from autograder.layout import REPO, SOURCE, assignments
from autograder.pipeline import generated_cells, leaks
from autograder.pipeline.config import nbgrader_config, quiet_logger


class ReleaseError(RuntimeError):
    """Releasing failed, or the release leaks."""


def sync_sources(source: Path = SOURCE, write: bool = True) -> dict[str, list[str]]:
    """Regenerate generated cells in the source notebooks; return {notebook: stale cell ids}."""
    stale = {}
    for notebook in sorted(source.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        cells = generated_cells.sync_notebook(notebook, write=write)
        if cells:
            stale[str(notebook.relative_to(source))] = cells
    return stale


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


def release(repo: Path = REPO) -> list[str]:
    """Sync generated cells, regenerate every assignment into repo/release, and scan it; return assignment ids."""
    sync_sources(repo / "source")
    ids = assignments(repo / "source")
    release_dir = repo / "release"
    for stale in set(p.name for p in release_dir.iterdir() if p.is_dir()) - set(ids) if release_dir.exists() else ():
        shutil.rmtree(release_dir / stale)
    generate(repo, ids)
    found = leaks.scan_release(release_dir, repo / "source")
    if found:
        raise ReleaseError("the release leaks:\n" + "\n".join(f"  {leak}" for leak in found))
    return ids
