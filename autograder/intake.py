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

What else is kept for each submission (the grader passes it on to autograder.late and autograder.export):
- `lms_id`: Canvas's numeric user id from its file names. Canvas names each uploaded file
  `<sortable name>_[LATE_]<user id>_<attachment id>_<file name>` (canvas-lms lib/content_zipper.rb,
  `get_filename` and `add_upload_submission`; `anon_<id>` replaces the name and user id under anonymous
  grading). The gradebook CSV's "ID" column is that user id, so export matches students by it.
- `late_marker`: Canvas's `LATE_`, which says late but not how late.
- `timestamp` (aware, UTC) and `timestamp_source`, from the first of: a `timestamp.txt` beside the notebook
  (nbgrader's convention, as `nbgrader zip_collect` and the exchange write it); a `timestamp` group of the
  file-name regexp (as nbgrader's FileNameCollectorPlugin.named_regexp); the file's time inside the zip, which
  zip stores without a zone and is read in the course's time zone (course.toml). A folder gives no file time.

The file-name regexp is applied by nbgrader's own `nbgrader.plugins.FileNameCollectorPlugin` (the plugin
`nbgrader zip_collect` uses), so its groups mean what they mean there: `student_id`, `file_id`, and optionally
`first_name`, `last_name`, `email`, `timestamp`; this module adds `lms_id` and `late`.

Interface: `unpack(submissions, scratch, regexp) -> root`, `collect(root, assignments, expected, source,
regexp, time_zone=None) -> (submissions, notes)`, `write_students(submissions, OUT / "students.csv")`.
"""
from __future__ import annotations

import csv
import json
import logging
import re
import warnings
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
from nbgrader.plugins import FileNameCollectorPlugin
from nbgrader.utils import is_grade

from . import late

IGNORED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}
# Canvas's names (see above). Under anonymous grading there is no name part: the student is the anon_ id.
CANVAS_FILE = (r"^(?:(?P<student_id>.+?)_)??(?P<late>LATE_)?(?P<lms_id>anon_[A-Za-z0-9]+|\d+)_"
               r"(?P<attachment_id>\d+)_(?P<file_id>.+)$")
TIMESTAMP_FILE = "timestamp.txt"
ZIP_TIMES = ".zip-times.json"  # written by unpack beside the extracted files: relative path -> zip time
STUDENT_COLUMNS = ["student", "lms_id", "email", "name"]
MOODLE_FOLDER = re.compile(r"^(?P<student_id>.+?)_\d+_assignsubmission_\w*$")
# nbgrader's collector plugin warns through this logger for every name the regexp does not match; intake
# reports those files itself (as "(unknown)" notes), so the warnings go nowhere.
_QUIET = logging.getLogger("autograder.intake.collector")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
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
    lms_id: str = ""  # the LMS's own id of the student (Canvas user id); empty when the files do not say
    timestamp: datetime | None = None  # when it was submitted (aware, UTC); None when unknown
    late_marker: bool = False  # the LMS named the file late (Canvas LATE_)
    timestamp_source: str = ""  # "timestamp.txt" | "file name" | "zip"
    email: str = ""  # from the regexp's `email` group; empty when unknown
    name: str = ""  # from `first_name`/`last_name`, or a Moodle folder's name; empty when unknown


@dataclass(frozen=True)
class _FileInfo:
    """What an LMS file name says besides the student."""

    lms_id: str = ""
    late: bool = False
    timestamp: str = ""
    email: str = ""
    name: str = ""


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
    top = target = scratch / "unzipped"
    times = {}  # where each file member went, and its own time (zip stores local time without a zone)
    with zipfile.ZipFile(submissions) as archive:
        for info in archive.infolist():
            extracted = Path(archive.extract(info, target))  # zipfile drops absolute paths and '..' components
            if not info.is_dir():
                times[extracted.relative_to(top).as_posix()] = datetime(*info.date_time).isoformat()
    # An LMS zip often wraps everything in one folder named after the course or the export; a single
    # student's folder (notebooks in it or one level down) is not such a wrapper.
    while (len(_folders(target)) == 1 and not _files(target)
           and not _looks_like_student(_folders(target)[0], re.compile(student_regexp))):
        target = _folders(target)[0]
    prefix = target.relative_to(top).as_posix()
    relative = {(name[len(prefix) + 1:] if prefix != "." else name): stamp for name, stamp in times.items()
                if prefix == "." or name.startswith(prefix + "/")}
    (target / ZIP_TIMES).write_text(json.dumps(relative))
    return target


def collect(root: Path, assignments: list[str], expected_notebooks: dict[str, list[str]],
            source: Path, student_regexp: str = CANVAS_FILE,
            time_zone: ZoneInfo | str | None = None) -> tuple[list[Submission], list[Note]]:
    """One `Submission` per student, assignment and expected notebook, in a stable order, and the notes.

    `expected_notebooks` lists the notebooks of every assignment of the course (files are identified
    against all of them); submissions are made for `assignments` only. `time_zone` reads zip file times and
    zone-less timestamps; default: the course's, from course.toml.
    """
    zone = _zone(time_zone)
    signatures = {(a, nb): _graded_ids(source / a / nb) for a, names in expected_notebooks.items() for nb in names}
    files_by_student, infos = _files_by_student(root, student_regexp)
    zip_times = json.loads((root / ZIP_TIMES).read_text()) if (root / ZIP_TIMES).exists() else {}
    moodle_students = {m.group("student_id") for f in _folders(root) if (m := MOODLE_FOLDER.match(f.name))}
    submissions, notes = [], []
    for student in sorted(files_by_student):
        matched: dict[tuple[str, str], list[Path]] = defaultdict(list)
        for path in files_by_student[student]:
            if path.name == TIMESTAMP_FILE:
                continue  # metadata of the notebooks beside it, read below
            key = _identify(path, root, signatures)
            if key is None:
                notes.append(Note(student, str(path.relative_to(root)), "extra file: it matches no notebook of "
                                  "the course and was not graded"))
            else:
                matched[key].append(path)
        known = [infos[p] for p in files_by_student[student] if p in infos]
        lms_ids = sorted({i.lms_id for i in known if i.lms_id})
        lms_id = lms_ids[0] if len(lms_ids) == 1 else ""
        email = next((i.email for i in known if i.email), "")
        # Moodle names a student's folder by the student's full name.
        name = next((i.name for i in known if i.name), "") or (student if student in moodle_students else "")
        for assignment in assignments:
            for notebook in expected_notebooks[assignment]:
                found = _submission(student, assignment, notebook, matched[(assignment, notebook)], root)
                if found.path is not None:
                    info = infos.get(found.path, _FileInfo())
                    stamp, stamp_source, problem = _timestamp(found.path, root, info, zip_times, zone)
                    if problem:
                        notes.append(Note(student, str(found.path.relative_to(root)), problem))
                    found = Submission(student, assignment, notebook, found.path, found.problem, lms_id, stamp,
                                       info.late, stamp_source, email, name)
                else:
                    late_marker = any(infos[p].late for p in matched[(assignment, notebook)] if p in infos)
                    found = Submission(student, assignment, notebook, None, found.problem, lms_id,
                                       late_marker=late_marker, email=email, name=name)
                submissions.append(found)
    return submissions, notes


def write_students(found: list[Submission], path: Path) -> None:
    """OUT/students.csv: student, lms_id, email, name; one row per student seen at intake (empty when
    unknown). export.py matches these to the LMS roster."""
    rows = {}
    for s in found:
        row = rows.setdefault(s.student, [s.student, s.lms_id, s.email, s.name])
        row[2], row[3] = row[2] or s.email, row[3] or s.name
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(STUDENT_COLUMNS)
        writer.writerows(rows[s] for s in sorted(rows))


def read_students(path: Path) -> list[dict]:
    """Rows of students.csv ([] when there is none)."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


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


def _files_by_student(root: Path, student_regexp: str) -> tuple[dict[str, list[Path]], dict[Path, _FileInfo]]:
    """Student -> files, and what the LMS's name says of each flat file."""
    found: dict[str, list[Path]] = defaultdict(list)
    for folder in _folders(root):
        moodle = MOODLE_FOLDER.match(folder.name)
        student = moodle.group("student_id") if moodle else folder.name
        found[student] += [p for p in sorted(folder.rglob("*")) if p.is_file() and _wanted(p, folder)]
    flat = [p for p in _files(root) if p.name != TIMESTAMP_FILE]  # a timestamp.txt belongs to a folder
    # nbgrader's own collector plugin applies the regexp (re.match on the name, as zip_collect does); every
    # extension present is valid here, so that files which are not notebooks are still reported per student.
    collector = FileNameCollectorPlugin(named_regexp=student_regexp, valid_ext=sorted({p.suffix for p in flat}),
                                        log=_QUIET)
    matches = {path: collector.collect(path.name) or {} for path in flat}
    # Two students can share a Canvas name; their user ids tell them apart.
    ids_by_name: dict[str, set[str]] = defaultdict(set)
    for groups in matches.values():
        if groups.get("student_id") and groups.get("lms_id"):
            ids_by_name[groups["student_id"]].add(groups["lms_id"])
    infos = {}
    for path, groups in matches.items():
        name, lms_id = groups.get("student_id") or "", groups.get("lms_id") or ""
        student = name or lms_id or "(unknown)"
        if name and len(ids_by_name.get(name, ())) > 1:
            student = f"{name}_{lms_id}"
        found[student].append(path)
        full_name = " ".join(part for part in (groups.get("first_name"), groups.get("last_name")) if part)
        infos[path] = _FileInfo(lms_id, bool(groups.get("late")), groups.get("timestamp") or "",
                                groups.get("email") or "", full_name)
    return found, infos


def _timestamp(path: Path, root: Path, info: _FileInfo, zip_times: dict[str, str],
               zone: ZoneInfo) -> tuple[datetime | None, str, str]:
    """(time, source, problem): timestamp.txt beside the notebook, else the name's timestamp, else the zip's."""
    problems = []
    beside = path.parent / TIMESTAMP_FILE
    if path.parent != root and beside.is_file():
        try:
            return late.parse_time(beside.read_text(errors="replace"), zone), TIMESTAMP_FILE, ""
        except ValueError as error:
            problems.append(f"{beside.relative_to(root)} is unreadable ({error})")
    if info.timestamp:
        try:
            return late.parse_time(info.timestamp, zone), "file name", ""
        except ValueError as error:
            problems.append(f"the timestamp in the file name is unreadable ({error})")
    stamp = zip_times.get(path.relative_to(root).as_posix())
    problem = "; ".join(problems) + ("; the next source was used" if problems and stamp else "")
    if stamp:
        return datetime.fromisoformat(stamp).replace(tzinfo=zone).astimezone(timezone.utc), "zip", problem
    return None, "", problem


def _zone(time_zone: ZoneInfo | str | None) -> ZoneInfo:
    if time_zone is None:
        return late.load_config().time_zone
    if isinstance(time_zone, ZoneInfo):
        return time_zone
    try:
        return ZoneInfo(time_zone)
    except Exception as error:  # ZoneInfoNotFoundError, or ValueError for a malformed key
        raise ValueError(f"{time_zone!r} is not an IANA time zone name") from error


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


def _read_quietly(path: Path):
    """nbformat.read without its warnings about the file (a student's duplicate cell ids, say): the grader
    reports what matters about a submission in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nbformat.read(path, as_version=4)


def _graded_ids(path: Path) -> set[str]:
    return {c.metadata.nbgrader["grade_id"] for c in _read_quietly(path).cells if is_grade(c)}


def _graded_ids_of_file(path: Path) -> set[str]:
    # Raw JSON, not nbgrader.utils: the file may not be a readable notebook, and a student's edit of a cell's
    # flags must not hide its grade_id.
    try:
        cells = json.loads(path.read_text(errors="replace")).get("cells", [])
        return {str(c["metadata"]["nbgrader"]["grade_id"]) for c in cells
                if isinstance(c, dict) and c.get("metadata", {}).get("nbgrader", {}).get("grade_id")}
    except (ValueError, AttributeError, KeyError, TypeError):
        return set()


def _readable(path: Path) -> str:
    try:
        _read_quietly(path)
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
