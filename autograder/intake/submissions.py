"""Find the submissions to grade.

Accepted layouts (a folder, or a zip of one, possibly wrapped in one top-level folder):

- `<student>/<assignment>/<notebook>.ipynb`, the layout nbgrader itself uses;
- `<student>/<anything>.ipynb` or nested deeper: a renamed or misplaced notebook is matched to its
  assignment by the nbgrader cell ids (`grade_id`) it carries;
- flat files named by the LMS, as for `nbgrader zip_collect`: a regular expression with named groups
  `student_id` (and usually `file_id`) is applied to each file name (default: Canvas's
  `<student>_<ids>_<file>.ipynb`, and Moodle's flat `<name>_<id>_assignsubmission_file_<file>`); folders
  named by Moodle (`<name>_<id>_assignsubmission_file_`) are student folders.

Who a student is comes from the LMS's own ids, never from a name the student can set, and never depends on
who else submitted:
- Canvas: the user id (`lms_id` group), e.g. `1234` (`anon_<id>` under anonymous grading); the sortable
  name is kept as the student's `name`;
- Moodle: `participant_<id>`, from the participant id in the folder name (Moodle's `assign_user_mapping`,
  one id per student and assignment; the grading worksheet's "Participant <id>"); the full name is kept as
  `name`, so namesakes, or a participant who renamed himself after a classmate, stay two students;
- any other regexp: its `lms_id` group when it has one, else `student_id`; a `<student>/...` folder: its name.
An id that a terminal, a file system or a spreadsheet could misread (control characters, escape sequences,
bidi and zero-width characters, path separators, a leading dot or dash, over 100 characters) is replaced by
`student_<hash>` (the same for the same original), the original kept as `name` and the mapping noted.

Nothing is guessed: two files that match the same notebook are a duplicate (the notebook is not graded and
the reason says why), and files that match no notebook are reported as extra.

What else is kept for each submission (the grader passes it on to autograder.term.late and autograder.commands.export):
- `lms_id` and `lms`: the LMS's id and whose it is ("canvas", "moodle", "" for a custom regexp's lms_id
  group). Canvas names each uploaded file
  `<sortable name>_[LATE_]<user id>_<attachment id>_<file name>` (canvas-lms lib/content_zipper.rb,
  `get_filename` and `add_upload_submission`; `anon_<id>` replaces the name and user id under anonymous
  grading). The gradebook CSV's "ID" column is that user id, so export matches students by it.
- `late_marker`: Canvas's `LATE_`, which says late but not how late.
- `timestamp` (aware, UTC) and `timestamp_source`, from the LMS only: a `timestamp` group of the file-name
  regexp (as nbgrader's FileNameCollectorPlugin.named_regexp), else the file's time inside the LMS's zip,
  which zip stores without a zone and is read in the course's time zone (course.toml). A folder gives no
  time. A `timestamp.txt` in a student's folder is a file the student may have uploaded: it is never read,
  and intake.csv says so.

Every input is bounded before it is parsed: a zip's member count, each member's and the total uncompressed
size are checked against the limits before anything is extracted (a member over the notebook size limit is
not extracted), and a notebook's size and its cell count (counted by a streaming scan, ijson, which builds
no cells) before nbformat reads it; a notebook over a limit is not graded ("malformed notebook: ...").

The file-name regexp is applied by nbgrader's own `nbgrader.plugins.FileNameCollectorPlugin` (the plugin
`nbgrader zip_collect` uses), so its groups mean what they mean there: `student_id`, `file_id`, and optionally
`first_name`, `last_name`, `email`, `timestamp`; this module adds `lms_id` and `late`.

Interface: `unpack(submissions, scratch, regexp, limits) -> root`, `collect(root, assignments,
expected, source, regexp, time_zone=None, limits) -> (submissions, notes)`, `limits` a GradingSettings,
`write_students(submissions, OUT / "students.csv")`, `check_ids_unchanged(OUT / "students.csv", submissions)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
import warnings
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import ijson
import nbformat
from nbgrader.plugins import FileNameCollectorPlugin
from nbgrader.utils import is_grade

from autograder.settings import GradingSettings, course_settings
from autograder.sinks import safe_text
from autograder.term import late

IGNORED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}
# Canvas's names (see above). Under anonymous grading there is no name part: the student is the anon_ id.
CANVAS_FILE = (
    r"^(?:(?P<student_id>.+?)_)??(?P<late>LATE_)?(?P<lms_id>anon_[A-Za-z0-9]+|\d+)_"
    r"(?P<attachment_id>\d+)_(?P<file_id>.+)$"
)
TIMESTAMP_FILE = "timestamp.txt"
ZIP_TIMES = ".zip-times.json"  # written by unpack beside the extracted files: relative path -> zip time
ZIP_REFUSED = ".zip-refused.json"  # written by unpack: relative path -> why that member was not extracted
ZIP_UNNAMED = ".zip-unnamed.json"  # written by unpack: why each member whose name can be no file was skipped
# lms: whose id lms_id is: "canvas" (user id), "moodle" (participant id), "" (a custom regexp's lms_id group)
STUDENT_COLUMNS = ["student", "lms_id", "email", "name", "lms"]
# Moodle names a folder `<full name>_<participant id>_assignsubmission_<plugin>_` (mod/assign
# download_submissions), or, without "download submissions in folders", each file that followed by the file's
# own name. Moodle turns underscores in the name into spaces, so the first `_` ends the name whatever the
# student called himself or his file.
MOODLE_FOLDER = re.compile(r"^(?P<name>[^_]*)_(?P<participant>\d+)_assignsubmission_[a-z]+_?$")
MOODLE_FILE = re.compile(r"^(?P<name>[^_]*)_(?P<participant>\d+)_assignsubmission_[a-z]+_(?P<file_id>.+)$")
# What an id may hold besides letters and digits (any script's): none of it means anything to HTML (formgrader
# prints ids unescaped), a shell glob (nbgrader globs the submitted folder), a spreadsheet or a terminal.
ID_PUNCTUATION = frozenset(" _.@+-")
STAND_IN = re.compile(r"student_[0-9a-f]{12}")  # the form of a stand-in id; no real id may take it
# A JSON string (possessive, so a long or unterminated one costs one pass), or a bracket or comma
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{},]', re.DOTALL)
# nbgrader's collector plugin warns through this logger for every name the regexp does not match; intake
# reports those files itself (as "(unknown)" notes), so the warnings go nowhere.
_QUIET = logging.getLogger("autograder.intake.submissions.collector")
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
    lms_id: str = ""  # the LMS's own id (Canvas user id, Moodle participant id); empty when the files do not say
    timestamp: datetime | None = None  # when it was submitted (aware, UTC); None when unknown
    late_marker: bool = False  # the LMS named the file late (Canvas LATE_)
    timestamp_source: str = ""  # "file name" | "zip"
    email: str = ""  # from the regexp's `email` group; empty when unknown
    name: str = ""  # display text only: a Canvas sortable name, a Moodle full name, `first_name last_name`
    lms: str = ""  # whose id lms_id is: "canvas", "moodle", or "" (a custom regexp's lms_id group)


@dataclass(frozen=True)
class _FileInfo:
    """What an LMS file name says besides the student."""

    lms_id: str = ""
    late: bool = False
    timestamp: str = ""
    email: str = ""
    name: str = ""
    lms: str = ""


@dataclass(frozen=True)
class Note:
    """Something found in the submissions that is not graded: an extra or unidentifiable file."""

    student: str
    file: str
    note: str


def unpack(
    submissions: Path, scratch: Path, student_regexp: str = CANVAS_FILE, limits: GradingSettings | None = None
) -> Path:
    """The folder that holds the submissions: `submissions` itself, or the extracted zip.

    The zip's directory is checked before anything is extracted: more members than `limits.zip_member_limit`, or
    more uncompressed bytes than `limits.zip_size_limit` in all, refuse the whole zip (ValueError). A member over
    `limits.notebook_size_limit`, or compressed other than as LMSs do (stored or deflated: a bzip2 or LZMA block
    can expand in memory before zipfile cuts it at its declared size), is not extracted: an empty file stands
    in for it, and collect reports why. zipfile never writes past a member's declared size."""
    limits = limits or course_settings()
    if submissions.is_dir():
        return submissions
    if not zipfile.is_zipfile(submissions):
        raise ValueError(f"{submissions} is neither a folder nor a zip file")
    top = target = scratch / "unzipped"
    times = {}  # where each file member went, and its own time (zip stores local time without a zone)
    refused = {}  # members not extracted: relative path -> why
    refused_names = []  # members whose very name could not be a file, so no stand-in marks them
    with zipfile.ZipFile(submissions) as archive:
        members = archive.infolist()
        if len(members) > limits.zip_member_limit:
            raise ValueError(
                f"{submissions} has {len(members):,} members, over Grading.zip_member_limit "
                f"({limits.zip_member_limit:,}); nothing was extracted"
            )
        total = sum(info.file_size for info in members)
        if total > limits.zip_size_limit:
            raise ValueError(
                f"{submissions} would unpack to {total:,} bytes, over Grading.zip_size_limit "
                f"({limits.zip_size_limit:,}); nothing was extracted"
            )
        for info in members:
            if info.is_dir():
                archive.extract(info, target)
                continue
            why = ""
            if info.file_size > limits.notebook_size_limit:
                why = (
                    f"{info.file_size:,} bytes uncompressed, over Grading.notebook_size_limit "
                    f"({limits.notebook_size_limit:,} bytes); not extracted"
                )
            elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                why = f"compressed with method {info.compress_type}, not as an LMS zips files; not extracted"
            if not why:
                try:
                    extracted = Path(archive.extract(info, target))  # zipfile drops absolute paths and '..'
                except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # a damaged member, not the zip
                    why = f"it could not be extracted ({type(error).__name__}: {error})"
                except OSError as error:  # a name this file system refuses (too long, say): that member only
                    note = (
                        f"its name {_printable(info.filename[:200])} could not be a file here "
                        f"({type(error).__name__}: {error.strerror}); not extracted"
                    )
                    refused_names.append(note)
                    continue
            if why:
                # An empty stand-in where zipfile would have put it (without absolute paths, '.' and '..').
                parts = [part for part in info.filename.split("/") if part not in ("", ".", "..")]
                if not parts:
                    continue
                extracted = target.joinpath(*parts)
                extracted.parent.mkdir(parents=True, exist_ok=True)
                extracted.write_bytes(b"")
                refused[extracted.relative_to(top).as_posix()] = why
            times[extracted.relative_to(top).as_posix()] = datetime(*info.date_time).isoformat()
    # An LMS zip often wraps everything in one folder named after the course or the export; a single
    # student's folder (notebooks in it or one level down) is not such a wrapper.
    while (
        len(_folders(target)) == 1
        and not _files(target)
        and not _looks_like_student(_folders(target)[0], re.compile(student_regexp))
    ):
        target = _folders(target)[0]
    prefix = target.relative_to(top).as_posix()

    def below_target(table: dict) -> dict:
        return {
            (name[len(prefix) + 1 :] if prefix != "." else name): value
            for name, value in table.items()
            if prefix == "." or name.startswith(prefix + "/")
        }

    (target / ZIP_TIMES).write_text(json.dumps(below_target(times)))
    (target / ZIP_REFUSED).write_text(json.dumps(below_target(refused)))
    (target / ZIP_UNNAMED).write_text(json.dumps(refused_names))
    return target


def collect(
    root: Path,
    assignments: list[str],
    expected_notebooks: dict[str, list[str]],
    source: Path,
    student_regexp: str = CANVAS_FILE,
    time_zone: ZoneInfo | str | None = None,
    limits: GradingSettings | None = None,
) -> tuple[list[Submission], list[Note]]:
    """One `Submission` per student, assignment and expected notebook, in a stable order, and the notes.

    `expected_notebooks` lists the notebooks of every assignment of the course (files are identified
    against all of them); submissions are made for `assignments` only. `time_zone` reads zip file times and
    zone-less timestamps; default: the course's, from course.toml.
    """
    limits = limits or course_settings()
    zone = _zone(time_zone)
    signatures = {(a, nb): _graded_ids(source / a / nb) for a, names in expected_notebooks.items() for nb in names}
    files_by_student, infos, notes = _files_by_student(root, student_regexp, limits.student_id_limit)
    zip_times = _sidecar(root, ZIP_TIMES)
    refused = {root / name: why for name, why in _sidecar(root, ZIP_REFUSED).items()}
    notes += [Note("(unknown)", "(zip member)", why) for why in _sidecar(root, ZIP_UNNAMED, [])]
    over = {
        path: refused.get(path) or (_over_limit(path, limits) if path.suffix == ".ipynb" else "")
        for paths in files_by_student.values()
        for path in paths
    }
    submissions = []
    for student in sorted(files_by_student):
        matched: dict[tuple[str, str], list[Path]] = defaultdict(list)
        for path in files_by_student[student]:
            if path.name == TIMESTAMP_FILE:
                notes.append(
                    Note(
                        student,
                        _shown(path, root),
                        "not read: a file in a student's submission is "
                        "the student's to write; submission times come from the LMS (its file names "
                        "or its zip's times)",
                    )
                )
                continue
            key = _identify(path, root, signatures, readable=not over.get(path))
            if key is None:
                why = f" ({over[path]})" if over.get(path) else ""
                notes.append(
                    Note(
                        student,
                        _shown(path, root),
                        f"extra file: it matches no notebook of the course and was not graded{why}",
                    )
                )
            else:
                matched[key].append(path)
        known = [infos[p] for p in files_by_student[student] if p in infos]
        lms_ids = sorted({(i.lms_id, i.lms) for i in known if i.lms_id})
        lms_id, lms = lms_ids[0] if len(lms_ids) == 1 else ("", "")
        email = next((i.email for i in known if i.email), "")
        name = next((i.name for i in known if i.name), "")
        for assignment in assignments:
            for notebook in expected_notebooks[assignment]:
                found = _submission(student, assignment, notebook, matched[(assignment, notebook)], root, over)
                if found.path is not None:
                    info = infos.get(found.path, _FileInfo())
                    stamp, stamp_source, problem = _timestamp(found.path, root, info, zip_times, zone)
                    if problem:
                        notes.append(Note(student, _shown(found.path, root), problem))
                    found = Submission(
                        student,
                        assignment,
                        notebook,
                        found.path,
                        found.problem,
                        lms_id,
                        stamp,
                        info.late,
                        stamp_source,
                        email,
                        name,
                        lms,
                    )
                else:
                    late_marker = any(infos[p].late for p in matched[(assignment, notebook)] if p in infos)
                    found = Submission(
                        student,
                        assignment,
                        notebook,
                        None,
                        found.problem,
                        lms_id,
                        late_marker=late_marker,
                        email=email,
                        name=name,
                        lms=lms,
                    )
                submissions.append(found)
    return submissions, notes


def write_students(found: list[Submission], path: Path) -> None:
    """OUT/students.csv: student, lms_id, email, name, lms; one row per student seen at intake (empty when
    unknown). export.py matches these to the LMS roster, by lms_id only."""
    rows: dict[str, list[str]] = {}
    for s in found:
        row = rows.setdefault(s.student, [s.student, s.lms_id, s.email, s.name, s.lms])
        row[2], row[3] = row[2] or s.email, row[3] or s.name
    with open(path, "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(STUDENT_COLUMNS)
        writer.writerows(rows[s] for s in sorted(rows))


def read_students(path: Path) -> list[dict]:
    """Rows of students.csv ([] when there is none); a file from before the `lms` column reads it as ""."""
    if not Path(path).exists():
        return []
    return [{**row, "lms": row.get("lms") or ""} for row in safe_text.read_rows(path)]


def check_ids_unchanged(students_csv: Path, found: list[Submission]) -> None:
    """Refuse (ValueError) to grade into an OUT whose students.csv knows one of these students by another id.

    Earlier versions named Canvas students by their sortable name and Moodle students by their full name; an
    OUT graded then would keep its rows, seeds and manual grades under the old ids beside new ones."""
    new: dict[tuple[str, str], Submission] = {}
    for s in found:
        if s.lms_id:
            new.setdefault((s.lms, s.lms_id), s)
    renamed = set()
    for row in read_students(students_csv):
        for s in new.values():
            same_lms_id = row.get("lms_id") == s.lms_id and row.get("lms", "") in ("", s.lms)
            # An earlier version's Moodle row: the full name as both id and name, no LMS id.
            old_moodle_name = (
                s.lms == "moodle"
                and not row.get("lms_id")
                and row["student"] == s.name
                and row.get("name") == row["student"]
            )
            if row["student"] != s.student and (same_lms_id or old_moodle_name):
                renamed.add((row["student"], s.student))
    if renamed:
        pairs = ", ".join(f"{ascii(old)} -> {new}" for old, new in sorted(renamed)[:8])
        raise ValueError(
            f"{students_csv} knows {len(renamed)} student(s) by an earlier id ({pairs}): students "
            "are now named by their LMS id (Canvas user id, Moodle participant_<id>). Grade into a "
            "new OUT folder; manual grades given under the old ids must be entered again there, "
            "and extensions in course.toml keyed by the new ids"
        )


def _sidecar(root: Path, name: str, empty=None):
    """What unpack recorded beside the extracted files (`empty`, by default {}, for a folder)."""
    path = root / name
    return json.loads(path.read_text()) if path.is_file() else ({} if empty is None else empty)


def _submission(
    student: str, assignment: str, notebook: str, paths: list[Path], root: Path, over: dict[Path, str]
) -> Submission:
    if not paths:
        return Submission(
            student, assignment, notebook, None, f"missing notebook: no {assignment}/{notebook} was submitted"
        )
    if len(paths) > 1:
        names = ", ".join(sorted(_shown(p, root) for p in paths))
        return Submission(
            student,
            assignment,
            notebook,
            None,
            f"duplicate notebooks: {names} all look like {assignment}/{notebook}; submit exactly one",
        )
    if over.get(paths[0]):
        return Submission(student, assignment, notebook, paths[0], f"malformed notebook: {over[paths[0]]}")
    return Submission(student, assignment, notebook, paths[0], _readable(paths[0]))


def _files_by_student(
    root: Path, student_regexp: str, id_limit: int
) -> tuple[dict[str, list[Path]], dict[Path, _FileInfo], list[Note]]:
    """Student -> files, what the LMS says of each file, and a note for each id that had to be made safe."""
    found: dict[str, list[Path]] = defaultdict(list)
    infos: dict[Path, _FileInfo] = {}
    notes: list[Note] = []
    mapped: dict[str, str] = {}  # safe id -> the original it stands for

    def safe(raw: str, where: str) -> tuple[str, str]:
        """(student id, name): the id itself, or a stand-in and the original as the name."""
        if _is_safe_id(raw, id_limit):
            return raw, ""
        stand_in = "student_" + hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        if stand_in not in mapped:
            mapped[stand_in] = raw
            notes.append(
                Note(
                    stand_in,
                    where,
                    f"student id {_printable(raw)} has characters a terminal, a file "
                    f"system or a spreadsheet could misread: graded as {stand_in}, the original kept "
                    "as the name in students.csv",
                )
            )
        return stand_in, raw

    for folder in sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(".") and p.name not in IGNORED_FOLDERS
    ):
        notes.append(
            Note(
                "(hidden folder)",
                _shown(folder, root),
                "not read: a folder whose name starts with "
                "'.' is hidden, and is no student's; rename it to grade what it holds",
            )
        )
    for folder in _folders(root):
        files = [p for p in sorted(folder.rglob("*")) if p.is_file() and _wanted(p, folder)]
        moodle = MOODLE_FOLDER.match(folder.name)
        if moodle:  # the participant id is Moodle's; the full name is the student's to choose
            student = f"participant_{moodle.group('participant')}"
            info = _FileInfo(moodle.group("participant"), name=moodle.group("name"), lms="moodle")
        else:
            student, name = safe(folder.name, _shown(folder, root))
            info = _FileInfo(name=name)
        found[student] += files
        infos.update(dict.fromkeys(files, info))
    # Hidden files too: a Canvas sortable name may start with a dot. A timestamp.txt here is no student's.
    flat = [
        p
        for p in sorted(root.iterdir())
        if p.is_file() and p.name not in (TIMESTAMP_FILE, ZIP_TIMES, ZIP_REFUSED, ZIP_UNNAMED, ".DS_Store")
    ]
    # nbgrader's own collector plugin applies the regexp (re.match on the name, as zip_collect does); every
    # extension present is valid here, so that files which are not notebooks are still reported per student.
    collector = FileNameCollectorPlugin(
        named_regexp=student_regexp, valid_ext=sorted({p.suffix for p in flat}), log=_QUIET
    )
    lms = "canvas" if student_regexp == CANVAS_FILE else ""
    for path in flat:
        moodle = MOODLE_FILE.match(path.name) if lms == "canvas" else None  # the default reads both LMSs' names
        if moodle:
            student = f"participant_{moodle.group('participant')}"
            found[student].append(path)
            infos[path] = _FileInfo(moodle.group("participant"), name=moodle.group("name"), lms="moodle")
            continue
        groups = collector.collect(path.name) or {}
        name, lms_id = groups.get("student_id") or "", groups.get("lms_id") or ""
        full_name = " ".join(part for part in (groups.get("first_name"), groups.get("last_name")) if part)
        # The LMS's id when the name carries one: it stays the same whoever else submits (a namesake
        # submitting never renames a student); the name the student chose is only shown.
        student, original = safe(lms_id or name or "(unknown)", _shown(path, root))
        found[student].append(path)
        infos[path] = _FileInfo(
            lms_id,
            bool(groups.get("late")),
            groups.get("timestamp") or "",
            groups.get("email") or "",
            original or full_name or (name if lms_id else ""),
            lms if lms_id else "",
        )
    return found, infos, notes


def _timestamp(
    path: Path, root: Path, info: _FileInfo, zip_times: dict[str, str], zone: ZoneInfo
) -> tuple[datetime | None, str, str]:
    """(time, source, problem) from the LMS: the file name's timestamp, else the zip's time of the file."""
    problem = ""
    if info.timestamp:
        try:
            return late.parse_time(info.timestamp, zone), "file name", ""
        except ValueError as error:
            problem = f"the timestamp in the file name is unreadable ({error})"
    stamp = zip_times.get(path.relative_to(root).as_posix())
    if stamp:
        problem += "; the zip's time was used" if problem else ""
        return datetime.fromisoformat(stamp).replace(tzinfo=zone).astimezone(UTC), "zip", problem
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


def _identify(
    path: Path, root: Path, signatures: dict[tuple[str, str], set[str]], readable: bool = True
) -> tuple[str, str] | None:
    """(assignment, notebook) that a file is: by its place and name first, else by its nbgrader cell ids
    (not read from a file over a limit)."""
    relative = path.relative_to(root).parts
    if len(relative) >= 2 and (relative[-2], relative[-1]) in signatures:
        return relative[-2], relative[-1]
    if path.suffix != ".ipynb":
        return None
    ids = _graded_ids_of_file(path) if readable else set()
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


def _over_limit(path: Path, limits: GradingSettings) -> str:
    """Why a submitted notebook is not read at all ('' when it may be): its size, then its cell count.

    The cells are counted by ijson's streaming parser, which builds no cell and stops at the first cell
    over the limit: nbformat would build, validate and keep every cell (about 10 KB each). A file ijson cannot
    read to the end (not strict JSON, e.g. a NaN, which Python's json accepts) may still have no more cells
    than it has '{' bytes."""
    size = path.stat().st_size
    if size > limits.notebook_size_limit:
        return (
            f"{size:,} bytes, over Grading.notebook_size_limit ({limits.notebook_size_limit:,} bytes); it was not read"
        )
    with open(path, "rb") as file:
        values, depth = json_shape(file.read(), limits.notebook_value_limit, limits.notebook_depth_limit)
    if values > limits.notebook_value_limit:
        return (
            f"more than {limits.notebook_value_limit:,} JSON values (cells, outputs, lines...), over "
            "Grading.notebook_value_limit; it was not read"
        )
    if depth > limits.notebook_depth_limit:
        return (
            f"nested more than {limits.notebook_depth_limit} levels deep, over Grading.notebook_depth_limit; "
            "it was not read"
        )
    over = f"more than {limits.notebook_cell_limit:,} cells, over Grading.notebook_cell_limit; it was not read"
    cells = 0
    try:
        with open(path, "rb") as file:
            for prefix, event, _ in ijson.parse(file):
                if event == "start_map" and prefix in ("cells.item", "worksheets.item.cells.item"):
                    cells += 1
                    if cells > limits.notebook_cell_limit:
                        return over
    except ijson.JSONError:
        with open(path, "rb") as file:
            if file.read().count(b"{") > limits.notebook_cell_limit:
                return over.replace("more than", "perhaps more than")
    return ""


def json_shape(data: bytes, value_limit: int, depth_limit: int) -> tuple[int, int]:
    """(values, depth) of a JSON text, read from its bytes with no parser: every value a parser would build
    (each array or object, and each element after a comma) and the deepest nesting of arrays and objects.

    Both bound what parsing costs before anything parses: nbformat builds and validates every value (an
    empty output `{}` costs about 45 KB there), and a streaming parser keeps a path per level of nesting,
    so its cost grows with the square of the depth. One regular expression steps over strings (possessive,
    so linear) to the brackets and commas outside them, one match at a time, and the scan stops as soon as
    either limit is passed: it never holds more than one match."""
    values, depth, deepest = 1, 0, 0
    for match in _JSON_TOKEN.finditer(data):
        token = match.group()
        if token[0] == ord('"'):
            continue
        if token in b"[{":
            values += 1
            depth += 1
            deepest = max(deepest, depth)
        elif token == b",":
            values += 1
        else:
            depth -= 1
        if values > value_limit or deepest > depth_limit:
            break
    return values, deepest


def _is_safe_id(raw: str, length_limit: int) -> bool:
    """An id that prints as itself everywhere: letters, digits and ID_PUNCTUATION (an allow-list), one file
    name that is not hidden or an option, and not the form of a stand-in (which would take another's)."""
    return (
        0 < len(raw) <= length_limit
        and raw == raw.strip()
        and raw[0] not in ".-+@"
        and all(ch.isalnum() or ch in ID_PUNCTUATION for ch in raw)
        and not STAND_IN.fullmatch(raw)
    )


def _plain(ch: str) -> bool:
    # Categories C* (controls, format characters such as bidi overrides and zero-width spaces, unassigned)
    # and Z* other than the plain space (line and paragraph separators, odd spaces).
    return ch == " " or (ch not in "/\\" and unicodedata.category(ch)[0] not in "CZ")


def _printable(text: str) -> str:
    """Text with every character that is not plain written as a Python escape, quoted."""
    return "'" + "".join(ch if _plain(ch) and ch != "'" else ascii(ch)[1:-1] for ch in text) + "'"


def _shown(path: Path, root: Path) -> str:
    """A submitted file's path relative to the submissions, as intake.csv and reasons show it."""
    relative = path.relative_to(root).as_posix()
    return relative if all(_plain(ch) or ch == "/" for ch in relative) else _printable(relative)


def _read_quietly(path: Path):
    """nbformat.read without its warnings about the file (a student's duplicate cell ids, say): the grader
    reports what matters about a submission in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nbformat.read(path, as_version=4)


def _graded_ids(path: Path) -> set[str]:
    return {c.metadata.nbgrader["grade_id"] for c in _read_quietly(path).cells if is_grade(c)}


def _graded_ids_of_file(path: Path) -> set[str]:
    # Streamed, not nbgrader.utils: the file may not be a readable notebook, and a student's edit of a cell's
    # flags must not hide its grade_id.
    ids = set()
    try:
        with open(path, "rb") as file:
            for value in ijson.items(file, "cells.item.metadata.nbgrader.grade_id"):
                if value:
                    ids.add(str(value))
    except ijson.JSONError:
        return set()
    return ids


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
    return bool(notebooks) and not all(
        student_regexp.match(path.name) or MOODLE_FILE.match(path.name) for path in notebooks
    )


def _folders(path: Path) -> list[Path]:
    return sorted(
        p for p in path.iterdir() if p.is_dir() and p.name not in IGNORED_FOLDERS and not p.name.startswith(".")
    )


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
