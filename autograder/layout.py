"""Where things are: the repository layout of spec section 1."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "source"
RELEASE = REPO / "release"
CONFIG_FILE = Path(__file__).resolve().parent / "pipeline" / "nbgrader_config.py"
LOCK_FILE = REPO / "requirements.lock"
DATA = REPO / "data"  # the datasets' default root: where `make data` copies ../shared/data


def assignments(source: Path = SOURCE) -> list[str]:
    """Assignment ids: the folders of `source/` that hold at least one notebook, in order."""
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def notebooks(assignment: str, source: Path = SOURCE) -> list[str]:
    """Notebook file names (with .ipynb) of one assignment."""
    return sorted(p.name for p in (source / assignment).glob("*.ipynb"))
