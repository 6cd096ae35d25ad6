"""Late submissions: due dates, extensions and a penalty policy from the course configuration (course.toml).

Interface (what the grader, export and report call):

    config = load_config(path=None)              # course.toml at the repository root by default
    config.digest                                # sha256 of course.toml, for an incremental regrade's hash
    a = assess(submission, score, max_score, config)   # -> LateAssessment; pure, no state
    write_late(assessments, OUT / "late.csv")    # beside grades.csv, rewritten whole on every run
    rows = read_late(OUT / "late.csv")           # dicts keyed by LATE_COLUMNS
    lateness(config, student, assignment, submitted)  # seconds late now (current due dates and extensions)
    penalty(config, student, score, seconds_late) # the policy alone, for a score known later (manual grades)
    parse_time(text, time_zone)                  # aware UTC datetime from a timestamp string

The penalty goes through nbgrader's own plugin interface, `nbgrader.plugins.LateSubmissionPlugin` and its
`late_submission_penalty(student_id, score, total_seconds_late)` (nbgrader 0.9, plugins/latesubmission.py);
the configured class is any subclass of it, and its result is clamped to [0, score] exactly as nbgrader's
`AssignLatePenalties._check_late_penalty` does. The course's default is `PerDayPenalty` below.

Rules:
- no due date for an assignment: never a penalty (a Canvas LATE_ marker is still listed);
- a Canvas LATE_ marker without a known submission time: "late, time unknown", listed for the instructor,
  never a guessed penalty;
- the penalty is computed from the raw (unpenalised) score every time, and late.csv is rewritten whole, so
  a regrade recomputes it and never stacks penalties (nbgrader issue #723).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateutil.parser
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.utils import parse_utc
from traitlets import Float
from traitlets.config import Config

from autograder.layout import REPO
from autograder.lms import formats
from autograder.sinks import safe_text

COURSE_CONFIG = REPO / "course.toml"
DEFAULT_PLUGIN = "nbgrader.plugins.LateSubmissionPlugin"  # penalty_method 'none': late is listed, no penalty
LATE_COLUMNS = [
    "student",
    "assignment",
    "notebook",
    "submitted",
    "timestamp_source",
    "due",
    "seconds_late",
    "late_marker",
    "score",
    "penalty",
    "note",
]


class PerDayPenalty(LateSubmissionPlugin):
    """A fraction of the notebook's score per started day late (24 h from the due time), capped."""

    fraction_per_day = Float(0.1, help="share of the score lost per started day late").tag(config=True)
    max_fraction = Float(1.0, help="largest share of the score ever lost").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        if total_seconds_late <= 0:
            return None
        days = math.ceil(total_seconds_late / 86400)
        return score * min(self.max_fraction, self.fraction_per_day * days)


@dataclass(frozen=True)
class CourseConfig:
    """course.toml, validated. Times are aware datetimes."""

    time_zone: ZoneInfo = ZoneInfo("UTC")
    due: dict[str, datetime] = field(default_factory=dict)
    # (student id, assignment) -> due; the student id is the LMS's (autograder.intake.submissions), whoever
    # else submitted
    extensions: dict[tuple[str, str], datetime] = field(default_factory=dict)
    plugin: LateSubmissionPlugin = field(default_factory=LateSubmissionPlugin)
    grace: timedelta = timedelta(0)
    # LMS ("canvas", "moodle") -> assignment id -> that LMS's gradebook column title
    lms_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = "(defaults)"
    digest: str = ""  # sha256 of course.toml's text ("" for the defaults), for a regrade's input hash

    def due_for(self, student: str, assignment: str) -> datetime | None:
        return self.extensions.get((student, assignment), self.due.get(assignment))

    @property
    def policy(self) -> str:
        plugin = self.plugin
        names = set(plugin.trait_names(config=True))
        if type(plugin) is not LateSubmissionPlugin:  # a subclass's own options, not nbgrader's penalty_method
            names -= set(LateSubmissionPlugin.class_trait_names(config=True))
        options = {name: getattr(plugin, name) for name in names}
        arguments = ", ".join(f"{k}={v!r}" for k, v in sorted(options.items()))
        return f"{type(plugin).__module__}.{type(plugin).__name__}({arguments})"


@dataclass(frozen=True)
class LateAssessment:
    student: str
    assignment: str
    notebook: str
    submitted: datetime | None  # aware UTC; None when unknown
    timestamp_source: str  # "file name" | "zip" | "": the LMS's time, never a file of the student's
    due: datetime | None
    seconds_late: float | None  # None: late or not is unknown (no submission time)
    late_marker: bool
    score: float | None
    penalty: float
    note: str

    @property
    def late(self) -> bool:
        """Late by the clock, or marked late by the LMS with no time to check it against."""
        return bool(self.seconds_late) or (self.seconds_late is None and self.late_marker)


def load_config(path: Path | str | None = None) -> CourseConfig:
    """Read course.toml (default: the repository's). A missing default file gives the defaults: UTC, no
    due dates, no penalty."""
    path = Path(path) if path is not None else COURSE_CONFIG
    if not path.exists():
        if path == COURSE_CONFIG:
            return CourseConfig()
        raise ValueError(f"course configuration {path} does not exist")
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from error
    unknown = sorted(set(data) - {"course", "due", "extensions", "late", "lms"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}")
    name = data.get("course", {}).get("time_zone", "UTC")
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{path}: [course] time_zone {name!r} is not an IANA time zone name") from error
    due = {str(a): _due_time(value, zone, f"{path}: [due] {a}") for a, value in data.get("due", {}).items()}
    extensions = {}
    for student, table in data.get("extensions", {}).items():
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [extensions.{student}] must be a table of assignment = due time or days")
        for assignment, value in table.items():
            where = f"{path}: [extensions.{student}] {assignment}"
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if assignment not in due:
                    raise ValueError(f"{where}: {value} extra days, but {assignment} has no due date")
                if value < 0:
                    raise ValueError(f"{where}: extra days must not be negative")
                extensions[(student, assignment)] = due[assignment] + timedelta(days=value)
            else:
                extensions[(student, assignment)] = _due_time(value, zone, where)
    late = dict(data.get("late", {}))
    grace = late.pop("grace_minutes", 0)
    if not isinstance(grace, (int, float)) or isinstance(grace, bool) or grace < 0:
        raise ValueError(f"{path}: [late] grace_minutes must be a number >= 0, not {grace!r}")
    plugin = _plugin(late.pop("plugin", DEFAULT_PLUGIN), late.pop("options", {}), path)
    if late:
        raise ValueError(f"{path}: unknown [late] key(s) {sorted(late)}")
    columns = {}
    with_columns = [name for name, lms_format in formats().items() if lms_format.roster != "none"]
    for lms, table in data.get("lms", {}).items():
        if lms not in with_columns or not isinstance(table, dict) or set(table) - {"columns"}:
            expected = " or ".join(f"[lms.{name}.columns]" for name in with_columns)
            raise ValueError(f"{path}: expected {expected}, not [lms.{lms}]")
        columns[lms] = {str(k): str(v) for k, v in table.get("columns", {}).items()}
    return CourseConfig(
        zone,
        due,
        extensions,
        plugin,
        timedelta(minutes=grace),
        columns,
        str(path),
        hashlib.sha256(text.encode()).hexdigest(),
    )


def parse_time(text: str, time_zone: ZoneInfo) -> datetime:
    """An aware UTC datetime. nbgrader's own form ('2017-01-30 15:30:10.123 UTC', as its timestamp.txt) goes
    through nbgrader.utils.parse_utc; other strings through dateutil, and a time without an offset is read
    in `time_zone`. Raises ValueError when the text is not a time."""
    text = text.strip()
    if not text:
        raise ValueError("empty timestamp")
    parts = text.split(" ")
    try:
        if len(parts) == 3 and not _is_offset_free(parts[2]):
            return parse_utc(text).replace(tzinfo=UTC)
        compact = _compact_stamp(text)
        parsed = compact or dateutil.parser.parse(text)
    except (ValueError, OverflowError, TypeError) as error:
        raise ValueError(f"not a timestamp: {text!r}") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=time_zone)
    return parsed.astimezone(UTC)


def lateness(config: CourseConfig, student: str, assignment: str, submitted: datetime | None) -> float | None:
    """Seconds late past the student's due time and the grace period: 0 when on time or when the assignment
    has no due date, None when the submission time is unknown."""
    due = config.due_for(student, assignment)
    if due is None:
        return 0.0
    if submitted is None:
        return None
    seconds = (submitted - due).total_seconds()
    return 0.0 if seconds <= config.grace.total_seconds() else seconds


def penalty(config: CourseConfig, student: str, score: float, seconds_late: float) -> float:
    """The configured plugin's penalty, clamped to [0, score] as nbgrader's AssignLatePenalties does."""
    if seconds_late <= 0 or score <= 0:
        return 0.0
    value = config.plugin.late_submission_penalty(student, score, seconds_late)
    return 0.0 if value is None else float(min(max(value, 0.0), score))


def assess(submission, score: float | None, max_score: float, config: CourseConfig) -> LateAssessment:
    """Lateness and penalty of one graded notebook. `submission` is an intake.Submission (student, assignment,
    notebook, path, timestamp, timestamp_source, late_marker); `score` the raw score before any penalty (None
    for a grading error). Pure: the same inputs always give the same result."""
    student, assignment = submission.student, submission.assignment
    marker = bool(getattr(submission, "late_marker", False))
    submitted = getattr(submission, "timestamp", None)
    source = getattr(submission, "timestamp_source", "") if submitted else ""
    due = config.due_for(student, assignment)

    def result(seconds, amount, note):
        return LateAssessment(
            student, assignment, submission.notebook, submitted, source, due, seconds, marker, score, amount, note
        )

    marker_text = "Canvas marked it LATE_"
    if submission.path is None:
        return result(None, 0.0, "not submitted")
    if due is None:
        return result(0.0, 0.0, "no due date: no penalty" + (f" ({marker_text})" if marker else ""))
    if submitted is None:
        if marker:
            return result(
                None,
                0.0,
                f"late, time unknown: {marker_text} but no submission time is known; "
                "no penalty applied, check it by hand",
            )
        return result(None, 0.0, "submission time unknown: no penalty")
    seconds = lateness(config, student, assignment, submitted)
    assert seconds is not None  # the submission time is known
    if seconds == 0:
        note = "on time" + (f" by the {source} time, although {marker_text} (extension?)" if marker else "")
        return result(0.0, 0.0, note)
    if score is None:
        return result(seconds, 0.0, f"late by {_duration(seconds)}; no score (grading error), so no penalty yet")
    amount = penalty(config, student, score, seconds)
    return result(seconds, amount, f"late by {_duration(seconds)}: penalty {amount:g} of {score:g}")


def write_late(assessments: list[LateAssessment], path: Path) -> None:
    """OUT/late.csv, one row per notebook, rewritten whole (a regrade never stacks penalties)."""
    with open(path, "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(LATE_COLUMNS)
        for a in sorted(assessments, key=lambda a: (a.student, a.assignment, a.notebook)):
            writer.writerow(
                [
                    a.student,
                    a.assignment,
                    a.notebook,
                    a.submitted.isoformat() if a.submitted else "",
                    a.timestamp_source,
                    a.due.isoformat() if a.due else "",
                    "" if a.seconds_late is None else f"{a.seconds_late:g}",
                    int(a.late_marker),
                    "" if a.score is None else f"{a.score:g}",
                    f"{a.penalty:g}",
                    a.note,
                ]
            )


def read_late(path: Path) -> list[dict]:
    """Rows of late.csv ([] when there is none)."""
    if not Path(path).exists():
        return []
    return safe_text.read_rows(path)


def is_late_row(row: dict) -> bool:
    """A late.csv row that is late by the clock, or marked late with no time to check."""
    seconds = row.get("seconds_late", "")
    return (float(seconds) > 0) if seconds else row.get("late_marker") == "1"


def _plugin(name: str, options: dict, path: Path) -> LateSubmissionPlugin:
    module, _, cls = str(name).rpartition(".")
    try:
        plugin_class = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{path}: [late] plugin {name!r} cannot be imported ({error})") from error
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, LateSubmissionPlugin)):
        raise ValueError(f"{path}: [late] plugin {name!r} is not a nbgrader.plugins.LateSubmissionPlugin")
    if not isinstance(options, dict):
        raise ValueError(f"{path}: [late.options] must be a table")
    known = set(typing.cast(type[LateSubmissionPlugin], plugin_class).class_trait_names(config=True))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{path}: [late.options] {unknown} are not options of {name} (it has {sorted(known)})")
    config = Config()
    config[plugin_class.__name__] = Config(options)
    try:
        return plugin_class(config=config)
    except Exception as error:  # traitlets raises TraitError for a value of the wrong type
        raise ValueError(f"{path}: [late.options] for {name}: {error}") from error


def _due_time(value, zone: ZoneInfo, where: str) -> datetime:
    if isinstance(value, datetime):  # a TOML datetime literal
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f'{where}: expected a time such as "2027-03-01 23:59", not {value!r}')
    try:
        return parse_time(value, zone)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _is_offset_free(token: str) -> bool:
    """True when the third word of a timestamp is part of the time (e.g. 'PM'), not a zone."""
    return token.upper() in {"AM", "PM"}


def _compact_stamp(text: str) -> datetime | None:
    """nbgrader's zip_collect example form '2016-01-30-15-00-00' (all dashes), which dateutil misreads."""
    parts = text.replace("_", "-").split("-")
    if len(parts) == 6 and all(p.isdigit() for p in parts):
        year, month, day, hour, minute, second = map(int, parts)
        return datetime(year, month, day, hour, minute, second)
    return None


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return (f"{days} d " if days else "") + (f"{hours} h " if hours or days else "") + f"{minutes} min"
