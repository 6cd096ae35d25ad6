"""Find the submissions to grade: a folder laid out <student>/<assignment>/<notebook>.ipynb, or a zip of one."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

IGNORED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class Submission:
    """One expected notebook of one student's assignment, and what was found for it."""

    student: str
    assignment: str
    notebook: str  # file name, e.g. "01_databases.ipynb"
    path: Path | None  # the submitted file; None when it is missing
    problem: str = ""  # why it cannot be graded (missing, unreadable); empty when it can


def unpack(submissions: Path, scratch: Path) -> Path:
    """The folder that holds the student folders: `submissions` itself, or the extracted zip."""
    if submissions.is_dir():
        return submissions
    if not zipfile.is_zipfile(submissions):
        raise ValueError(f"{submissions} is neither a folder nor a zip file")
    target = scratch / "unzipped"
    with zipfile.ZipFile(submissions) as archive:
        archive.extractall(target)  # zipfile drops absolute paths and '..' components
    folders = _folders(target)
    # An LMS zip often wraps everything in one folder named after the course or the export.
    while len(folders) == 1 and not list(folders[0].glob("*.ipynb")) and not _looks_like_student(folders[0]):
        target = folders[0]
        folders = _folders(target)
    return target


def collect(root: Path, assignments: list[str], expected_notebooks: dict[str, list[str]]) -> list[Submission]:
    """One `Submission` per student, assignment and expected notebook, in a stable order."""
    found = []
    for student_dir in _folders(root):
        for assignment in assignments:
            for notebook in expected_notebooks[assignment]:
                path = student_dir / assignment / notebook
                found.append(Submission(student_dir.name, assignment, notebook, *_inspect(path)))
    return found


def _inspect(path: Path) -> tuple[Path | None, str]:
    if not path.is_file():
        return None, f"missing notebook: no {path.parent.name}/{path.name} was submitted"
    try:
        nbformat.read(path, as_version=4)
    except Exception as error:  # any parse failure means the file cannot be graded
        return path, f"malformed notebook: it could not be read ({type(error).__name__}: {str(error)[:200]})"
    return path, ""


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name not in IGNORED_FOLDERS
                  and not p.name.startswith("."))


def _looks_like_student(folder: Path) -> bool:
    return any(child.is_dir() and list(child.glob("*.ipynb")) for child in folder.iterdir())
