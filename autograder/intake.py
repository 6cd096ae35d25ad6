"""Find the submissions to grade.

Accepted layouts (a folder, or a zip of one, possibly wrapped in one top-level folder):

- `<student>/<assignment>/<notebook>.ipynb`, the layout nbgrader itself uses;
- `<student>/<anything>.ipynb` or nested deeper: a renamed or misplaced notebook is matched to its
  assignment by the nbgrader cell ids (`grade_id`) it carries;
- flat files named by the LMS, as for `nbgrader zip_collect`: a regular expression with named groups
  `student_id` (and usually `file_id`) is applied to each file name (default: Canvas's
  `<student>_<ids>_<file>.ipynb`); folders named by Moodle (`<name>_<id>_assignsubmission_file_`) are
  student folders.

Nothing is guessed: two files that match the same notebook are a duplicate (the notebook is not graded and
the reason says why), and files that match no notebook are reported as extra.
"""
from __future__ import annotations

import json
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nbformat

IGNORED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}
CANVAS_FILE = r"^(?P<student_id>[^_]+)_(?:LATE_)?\d+_\d+_(?P<file_id>.+)$"
MOODLE_FOLDER = re.compile(r"^(?P<student_id>.+?)_\d+_assignsubmission_\w*$")
# A file is taken as a given notebook when at least this share of that notebook's graded cell ids is in it.
MIN_ID_OVERLAP = 0.5


@dataclass(frozen=True)
class Submission:
    """One expected notebook of one student's assignment, and what was found for it."""

    student: str
    assignment: str
    notebook: str  # file name, e.g. "01_databases.ipynb"
    path: Path | None  # the submitted file; None when it is missing
    problem: str = ""  # why it cannot be graded (missing, duplicate, unreadable); empty when it can


@dataclass(frozen=True)
class Note:
    """Something found in the submissions that is not graded: an extra or unidentifiable file."""

    student: str
    file: str
    note: str


def unpack(submissions: Path, scratch: Path, student_regexp: str = CANVAS_FILE) -> Path:
    """The folder that holds the submissions: `submissions` itself, or the extracted zip."""
    if submissions.is_dir():
        return submissions
    if not zipfile.is_zipfile(submissions):
        raise ValueError(f"{submissions} is neither a folder nor a zip file")
    target = scratch / "unzipped"
    with zipfile.ZipFile(submissions) as archive:
        archive.extractall(target)  # zipfile drops absolute paths and '..' components
    # An LMS zip often wraps everything in one folder named after the course or the export; a single
    # student's folder (notebooks in it or one level down) is not such a wrapper.
    while (len(_folders(target)) == 1 and not _files(target)
           and not _looks_like_student(_folders(target)[0], re.compile(student_regexp))):
        target = _folders(target)[0]
    return target


def collect(root: Path, assignments: list[str], expected_notebooks: dict[str, list[str]],
            source: Path, student_regexp: str = CANVAS_FILE) -> tuple[list[Submission], list[Note]]:
    """One `Submission` per student, assignment and expected notebook, in a stable order, and the notes.

    `expected_notebooks` lists the notebooks of every assignment of the course (files are identified
    against all of them); submissions are made for `assignments` only.
    """
    signatures = {(a, nb): _graded_ids(source / a / nb) for a, names in expected_notebooks.items() for nb in names}
    files_by_student = _files_by_student(root, re.compile(student_regexp))
    submissions, notes = [], []
    for student in sorted(files_by_student):
        matched: dict[tuple[str, str], list[Path]] = defaultdict(list)
        for path in files_by_student[student]:
            key = _identify(path, root, signatures)
            if key is None:
                notes.append(Note(student, str(path.relative_to(root)), "extra file: it matches no notebook of "
                                  "the course and was not graded"))
            else:
                matched[key].append(path)
        for assignment in assignments:
            for notebook in expected_notebooks[assignment]:
                submissions.append(_submission(student, assignment, notebook, matched[(assignment, notebook)], root))
    return submissions, notes


def _submission(student: str, assignment: str, notebook: str, paths: list[Path], root: Path) -> Submission:
    if not paths:
        return Submission(student, assignment, notebook, None,
                          f"missing notebook: no {assignment}/{notebook} was submitted")
    if len(paths) > 1:
        names = ", ".join(sorted(str(p.relative_to(root)) for p in paths))
        return Submission(student, assignment, notebook, None,
                          f"duplicate notebooks: {names} all look like {assignment}/{notebook}; "
                          "submit exactly one")
    return Submission(student, assignment, notebook, paths[0], _readable(paths[0]))


def _files_by_student(root: Path, student_regexp: re.Pattern) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = defaultdict(list)
    for folder in _folders(root):
        moodle = MOODLE_FOLDER.match(folder.name)
        student = moodle.group("student_id") if moodle else folder.name
        found[student] += [p for p in sorted(folder.rglob("*")) if p.is_file() and _wanted(p, folder)]
    for path in _files(root):
        match = student_regexp.match(path.name)
        student = match.group("student_id") if match else "(unknown)"
        found[student].append(path)
    return found


def _identify(path: Path, root: Path, signatures: dict[tuple[str, str], set[str]]) -> tuple[str, str] | None:
    """(assignment, notebook) that a file is: by its place and name first, else by its nbgrader cell ids."""
    relative = path.relative_to(root).parts
    if len(relative) >= 2 and (relative[-2], relative[-1]) in signatures:
        return relative[-2], relative[-1]
    if path.suffix != ".ipynb":
        return None
    ids = _graded_ids_of_file(path)
    best, best_share = None, 0.0
    for key, wanted in signatures.items():
        share = len(ids & wanted) / len(wanted) if wanted else 0.0
        if share > best_share:
            best, best_share = key, share
    if best is not None and best_share >= MIN_ID_OVERLAP:
        return best
    # A notebook that cannot be read is still identified by its name, so that its student learns why.
    name_matches = [key for key in signatures if key[1] == path.name or path.name.endswith("_" + key[1])]
    return name_matches[0] if len(name_matches) == 1 and not ids else None


def _graded_ids(path: Path) -> set[str]:
    return {c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(path, as_version=4).cells
            if c.metadata.get("nbgrader", {}).get("grade")}


def _graded_ids_of_file(path: Path) -> set[str]:
    try:
        cells = json.loads(path.read_text(errors="replace")).get("cells", [])
        return {str(c["metadata"]["nbgrader"]["grade_id"]) for c in cells
                if isinstance(c, dict) and c.get("metadata", {}).get("nbgrader", {}).get("grade_id")}
    except (ValueError, AttributeError, KeyError, TypeError):
        return set()


def _readable(path: Path) -> str:
    try:
        nbformat.read(path, as_version=4)
    except Exception as error:  # any parse failure means the file cannot be graded
        return f"malformed notebook: it could not be read ({type(error).__name__}: {str(error)[:200]})"
    return ""


def _wanted(path: Path, top: Path) -> bool:
    parts = path.relative_to(top).parts
    return not any(part in IGNORED_FOLDERS or part.startswith(".") for part in parts)


def _looks_like_student(folder: Path, student_regexp: re.Pattern) -> bool:
    """Notebooks in it or one level down, not named as an LMS names flat files."""
    notebooks = [*folder.glob("*.ipynb"), *folder.glob("*/*.ipynb")]
    return bool(notebooks) and not all(student_regexp.match(path.name) for path in notebooks)


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name not in IGNORED_FOLDERS
                  and not p.name.startswith("."))


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
