"""`python -m autograder release`: regenerate release/ from source/ with nbgrader, then scan for leaks."""

from __future__ import annotations

import shutil
from pathlib import Path

from autograder.layout import REPO, SOURCE, assignments
from autograder.pipeline import generated_cells, leaks
from autograder.pipeline.generate import ReleaseError, generate


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
