"""Where things are: the repository layout of spec section 1."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class OutFolder:
    """OUT, as `grade` writes it and every other command reads it: one name for each of its files."""

    root: Path

    @property
    def grades(self) -> Path:
        return self.root / "grades.csv"  # one row per graded cell (spec section 6)

    @property
    def late(self) -> Path:
        return self.root / "late.csv"  # each notebook's submission time, lateness and penalty

    @property
    def students(self) -> Path:
        return self.root / "students.csv"  # each student's ids as the LMS gave them

    @property
    def inputs(self) -> Path:
        return self.root / "inputs.csv"  # each submission's input digest and grading cost

    @property
    def intake(self) -> Path:
        return self.root / "intake.csv"  # files found but not graded, and why

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"  # the class gradebook (SQLite), unless --gradebook names another

    @property
    def manual(self) -> Path:
        return self.root / "manual"  # the manual command's sheets and pages

    def report(self, suffix: str) -> Path:
        return self.root / f"report.{suffix}"  # txt, html, png

    def feedback(self, student: str, assignment: str, notebook: str) -> Path:
        return self.root / "feedback" / student / assignment / f"{notebook.removesuffix('.ipynb')}.html"

    def autograded(self, student: str, assignment: str, notebook: str) -> Path:
        return self.root / "autograded" / student / assignment / notebook
