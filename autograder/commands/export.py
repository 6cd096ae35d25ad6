"""`python -m autograder export OUT --to canvas|moodle|csv --out FILE [--roster FILE]`: grades for the LMS.

Interface:

    summary = export(out, to, dest, roster=None, config=None, partial=False)  # -> ExportSummary; writes dest
    print(summary.text())
    add_parser(subcommands) / run(args)                         # the CLI subcommand, for cli.py

Inputs, all in OUT: grades.csv (one row per graded cell: student, assignment, notebook, cell, kind, score,
max_score, reason), students.csv (student, lms_id, email, name; written at intake) and late.csv (written by
autograder.term.late). One grade per student and assignment: the sum of its cells' scores minus its late
penalties, recomputed here from late.csv's submission times with the course's current due dates, extensions
and policy and the current scores (so an extension or a manual grade given after grading counts, and a penalty
never stacks).

A grade is left out (blank, or the LMS's own value kept), and listed in the summary, when any of its cells is
a grading error (an empty score whose reason starts "grading error:"; never a zero) or a written answer not
graded yet (an empty manual score); with `partial` (--partial) the answers not graded yet count 0 and the
grade is exported and listed as partial, so the automatic points can go out before the manual grading is
done (grading errors are still never exported). Students on the roster without a submission, and graded students not on
the roster, are listed too; nobody is dropped silently.

Formats, as their documentation describes them:
- canvas: fills a gradebook CSV exported from Canvas (Grades > Export), the file Canvas's "How do I import
  grades in the Gradebook?" (Canvas Instructor Guide) imports back: the student columns and the "Points
  Possible" row are kept, one column per assignment whose header is Canvas's `Title (assignment id)`; rows are
  matched by the "ID" column, Canvas's user id, which intake reads from Canvas's submission file names. The
  header layout (Student, ID, SIS User ID, SIS Login ID, [Integration ID], Section, assignments, read-only
  totals) and the "    Points Possible" and "Manual Posting" rows follow canvas-lms lib/gradebook_exporter.rb.
  Only a Canvas user id (or a custom regexp's lms_id) is matched, never a Moodle participant id.
  An imported score replaces the one in Canvas, read-only columns are ignored, and a new column becomes a new
  assignment (as institutional Canvas guides restate it, e.g. Ohio State's "Import a CSV File to Carmen
  Grades"); so a grade that is withheld keeps Canvas's own value, and an assignment without a column yet is
  appended under its course id with its points in the Points Possible row.
- moodle, with --roster the assignment's grading worksheet (Assignment > Submissions > "Download grading
  worksheet", re-imported with "Upload grading worksheet"; columns Identifier, Full name, ..., Grade): rows
  are matched by its "Identifier", "Participant <id>", the participant id intake read from Moodle's folder
  names, and the "Grade" column is filled. A worksheet is one assignment's: the participants matched must
  have grades of one assignment only.
- moodle, with --roster a gradebook "Export to plain text file" (Moodle's CSV grade import, docs.moodle.org
  "Grade import": the import format is the export format; map "ID number" to useridnumber and each grade
  column to a grade item): rows are matched by "ID number" against an id the submissions' names carried
  (a custom --student-regexp's lms_id group), or the name of a `<student>/...` folder. Without --roster, a
  file with "ID number", "Email address" and one column per assignment is written the same way; students
  known only by a Canvas user id or a Moodle participant id have no ID number and are listed, not written.
- Rows are never matched by a display name or an email address: students choose those themselves (a
  participant named after a classmate's email address would otherwise take the classmate's row).
- csv: one row per student, one column per assignment, and a "Points Possible" row (as otter-grader's final
  grades CSV), for any other LMS or a spreadsheet.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from autograder.batch.submission import is_grading_error
from autograder.intake.submissions import read_students
from autograder.sinks import safe_text
from autograder.sinks.safe_text import for_terminal
from autograder.term import late as late_policy

FORMATS = ("canvas", "moodle", "csv")
POINTS_POSSIBLE = "Points Possible"
CANVAS_ID_SUFFIX = re.compile(r"\s*\((\d+)\)\s*$")  # Canvas's "Title (assignment id)" header
MOODLE_ITEM = re.compile(r"^(?:[^:]+:\s*)?(?P<title>.*?)(?:\s*\((?:Real|Percentage|Letter)\))?\s*$")
MOODLE_PARTICIPANT = re.compile(r"^\s*\S.*?\s(\d+)\s*$")  # the worksheet's "Participant 123" (in any language)
NO_ID_NUMBER = (
    "no Moodle ID number known (a Canvas user id or a Moodle participant id is not one; a Moodle "
    "participant's grade goes in with the assignment's grading worksheet as --roster)"
)


@dataclass(frozen=True)
class Grade:
    score: float | None  # after the late penalty; None when it cannot be exported
    max_score: float
    penalty: float
    status: str  # "ok" | "partial" (answers not graded yet counted 0) | "grading error" | "awaiting manual grading"

    @property
    def exportable(self) -> bool:
        return self.status in ("ok", "partial")


@dataclass
class ExportSummary:
    dest: Path
    to: str
    exported: int = 0  # grades written
    not_submitted: list[str] = field(default_factory=list)  # on the roster, nothing graded
    not_on_roster: list[str] = field(default_factory=list)  # graded, not on the roster
    withheld: list[tuple[str, str, str]] = field(default_factory=list)  # (student, assignment, why)
    partial: list[tuple[str, str]] = field(default_factory=list)  # exported with ungraded answers as 0
    penalised: list[tuple[str, str, float]] = field(default_factory=list)  # (student, assignment, points)
    new_columns: list[str] = field(default_factory=list)  # assignments appended as new LMS columns

    def text(self) -> str:
        """The summary for the terminal: every name, id and roster entry in it escaped (for_terminal)."""
        lines = [f"wrote {for_terminal(self.dest)} ({self.to}): {self.exported} grade(s)"]
        if self.penalised:
            lines.append(
                f"late penalties in {len(self.penalised)} grade(s): "
                + ", ".join(f"{for_terminal(s)}/{a} -{p:g}" for s, a, p in self.penalised)
            )
        by_reason: dict[str, list[str]] = defaultdict(list)
        for student, assignment, why in self.withheld:
            by_reason[why].append(f"{for_terminal(student)}/{assignment}")
        for why, grades in sorted(by_reason.items()):
            lines.append(f"not exported, {why} ({len(grades)}): {_some(grades)}")
        if self.partial:
            lines.append(
                f"exported with written answers not graded yet counted 0 ({len(self.partial)}): "
                + _some([f"{for_terminal(s)}/{a}" for s, a in self.partial])
            )
        if self.not_submitted:
            lines.append(
                f"on the roster without a graded submission ({len(self.not_submitted)}): "
                + ", ".join(map(for_terminal, self.not_submitted))
            )
        if self.not_on_roster:
            lines.append(
                f"graded but not on the roster, not exported ({len(self.not_on_roster)}): "
                + ", ".join(map(for_terminal, self.not_on_roster))
            )
        if self.new_columns:
            lines.append(
                "new gradebook column(s), to be created on import: " + ", ".join(map(for_terminal, self.new_columns))
            )
        return "\n".join(lines)


def export(
    out: Path,
    to: str,
    dest: Path,
    roster: Path | None = None,
    config: late_policy.CourseConfig | None = None,
    partial: bool = False,
) -> ExportSummary:
    """Write the grades of OUT to `dest` in the LMS format `to`; return what was and was not exported."""
    out, dest = Path(out), Path(dest)
    if to not in FORMATS:
        raise ValueError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    if to == "canvas" and roster is None:
        raise ValueError("--to canvas needs --roster: the gradebook CSV exported from Canvas (Grades > Export)")
    if to == "csv" and roster is not None:
        raise ValueError("--roster is for --to canvas or moodle; the csv format lists every graded student")
    if not (out / "grades.csv").exists():
        raise ValueError(f"{out / 'grades.csv'} does not exist: grade first (python -m autograder grade)")
    config = config or late_policy.load_config()
    grades = assignment_grades(_read(out / "grades.csv"), late_policy.read_late(out / "late.csv"), config, partial)
    students = {row["student"]: row for row in read_students(out / "students.csv")}
    for student, _ in grades:
        students.setdefault(student, {"student": student, "lms_id": "", "email": "", "name": "", "lms": ""})
    summary = ExportSummary(dest, to)
    for (student, assignment), grade in sorted(grades.items()):
        if not grade.exportable:
            summary.withheld.append((student, assignment, grade.status))
        if grade.status == "partial":
            summary.partial.append((student, assignment))
        if grade.penalty:
            summary.penalised.append((student, assignment, grade.penalty))
    if to == "csv":
        _write_wide(grades, students, dest, summary)
    elif roster is None:
        _write_moodle(grades, students, dest, summary)
    else:
        _fill_roster(grades, students, Path(roster), dest, summary, to, config)
    return summary


def assignment_grades(
    rows: list[dict], late_rows: list[dict], config: late_policy.CourseConfig, partial: bool = False
) -> dict[tuple[str, str], Grade]:
    """(student, assignment) -> Grade: the cells' sum minus the late penalties of its notebooks."""
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        cells[(row["student"], row["assignment"])].append(row)
    # Seconds late from the recorded submission time and today's due dates and extensions (an extension
    # granted after grading counts); a time that was never known gives no penalty.
    seconds_late = {
        (r["student"], r["assignment"], r["notebook"]): late_policy.lateness(
            config, r["student"], r["assignment"], datetime.fromisoformat(r["submitted"])
        )
        for r in late_rows
        if r.get("submitted")
    }
    grades = {}
    for key, members in cells.items():
        max_score = sum(float(r["max_score"]) for r in members)
        if any(is_grading_error(r) for r in members):
            grades[key] = Grade(None, max_score, 0.0, "grading error")
            continue
        pending = any(r["score"] == "" for r in members)
        if pending and not partial:
            grades[key] = Grade(None, max_score, 0.0, "awaiting manual grading")
            continue
        by_notebook: dict[str, float] = defaultdict(float)
        for r in members:
            by_notebook[r.get("notebook", "")] += float(r["score"] or 0)
        penalty = sum(
            late_policy.penalty(config, key[0], score, seconds_late.get((*key, notebook)) or 0.0)
            for notebook, score in by_notebook.items()
        )
        grades[key] = Grade(sum(by_notebook.values()) - penalty, max_score, penalty, "partial" if pending else "ok")
    return grades


def add_parser(commands) -> argparse.ArgumentParser:
    """The `export` subcommand on cli.py's subparsers."""
    parser = commands.add_parser("export", help="grades of a graded OUT folder for Canvas, Moodle or a CSV")
    parser.add_argument("out", type=Path, help="the folder `grade` wrote (grades.csv, students.csv, late.csv)")
    parser.add_argument("--to", choices=FORMATS, required=True)
    parser.add_argument("--out", dest="dest", type=Path, required=True, metavar="FILE", help="the file to write")
    parser.add_argument(
        "--roster",
        type=Path,
        metavar="FILE",
        help="the LMS's own gradebook export to fill (required for canvas, optional for moodle)",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="export before the manual grading is done: written answers not graded yet count 0",
    )
    return parser


def run(args: argparse.Namespace) -> ExportSummary:
    summary = export(args.out, args.to, args.dest, args.roster, partial=args.partial)
    print(summary.text())
    return summary


def _write_wide(grades, students, dest: Path, summary: ExportSummary) -> None:
    assignments = sorted({a for _, a in grades})
    possible = _points_possible(grades)
    with open(dest, "w", newline="") as file:
        writer = safe_text.writer(file, reversible=False)
        writer.writerow(["student", "lms_id", "email", "name", *assignments])
        writer.writerow([POINTS_POSSIBLE, "", "", "", *(_number(possible[a]) for a in assignments)])
        for student in sorted({s for s, _ in grades}):
            info = students[student]
            values = _scores(grades, student, assignments, summary)
            writer.writerow([student, info.get("lms_id", ""), info.get("email", ""), info.get("name", ""), *values])


def _write_moodle(grades, students, dest: Path, summary: ExportSummary) -> None:
    assignments = sorted({a for _, a in grades})
    with open(dest, "w", newline="") as file:
        writer = safe_text.writer(file, reversible=False)
        writer.writerow(["ID number", "Email address", *assignments])
        for student in sorted({s for s, _ in grades}):
            info = students[student]
            id_number = _roster_id(info, "moodle", worksheet=False)
            if not id_number:
                summary.withheld += [
                    (student, a, NO_ID_NUMBER)
                    for a in assignments
                    if (student, a) in grades and grades[(student, a)].exportable
                ]
                continue
            values = _scores(grades, student, assignments, summary)
            writer.writerow([id_number, info.get("email", ""), *values])


def _roster_id(info: dict, to: str, worksheet: bool) -> str:
    """The id by which a student's roster row is found ('' when none may be): an LMS's own id, of the kind
    that roster carries, or the name of a `<student>/...` folder; never a name or an email."""
    lms, lms_id = info.get("lms", ""), info.get("lms_id", "")
    if to == "canvas":
        return lms_id if lms != "moodle" else ""
    if worksheet:
        return lms_id if lms == "moodle" else ""
    if lms_id:  # a Moodle ID number only when the instructor's regexp read it as one
        return lms_id if not lms else ""
    return info["student"]


def _scores(grades, student: str, assignments: list[str], summary: ExportSummary) -> list[str]:
    """One student's exportable score per assignment ('' where there is none), counted in the summary."""
    values = []
    for assignment in assignments:
        grade = grades.get((student, assignment))
        values.append(_number(grade.score) if grade and grade.exportable else "")
        summary.exported += bool(grade and grade.exportable)
    return values


def _fill_roster(
    grades, students, roster: Path, dest: Path, summary: ExportSummary, to: str, config: late_policy.CourseConfig
) -> None:
    table = _read_rows(roster)
    if not table:
        raise ValueError(f"{roster} is empty")
    header = table[0]
    worksheet = to == "moodle" and "Identifier" in header and "Grade" in header
    if to == "canvas":
        if "ID" not in header:
            raise ValueError(f'{roster} is not a Canvas gradebook export: it has no "ID" column (header: {header[:6]})')
        key = header.index("ID")
    elif worksheet:
        key = header.index("Identifier")
    elif "ID number" in header:
        key = header.index("ID number")
    else:
        raise ValueError(
            f"{roster} is neither a Moodle grading worksheet (Identifier, ..., Grade) nor a Moodle "
            'grade export with an "ID number" column; rows are not matched by email address, '
            "which a student can set"
        )
    # Our students by the one id that roster carries (Canvas: user id; worksheet: participant id; Moodle
    # gradebook: ID number).
    by_key = {}
    for student, info in students.items():
        if value := _roster_id(info, to, worksheet):
            by_key.setdefault(value.casefold(), student)

    def identifier(row: list[str]) -> str:
        value = row[key].strip() if key < len(row) else ""
        if worksheet:
            match = MOODLE_PARTICIPANT.match(value)
            return match.group(1) if match else ""
        return value

    if worksheet:
        assignments = sorted(
            {
                a
                for row in table[1:]
                if (s := by_key.get(identifier(row).casefold()))
                for (student, a) in grades
                if student == s
            }
        )
        if len(assignments) > 1:
            raise ValueError(
                f"{roster} is one Moodle assignment's grading worksheet, but its participants have "
                f"grades of {', '.join(assignments)} in this OUT; grade each Moodle assignment's "
                "download into its own OUT folder"
            )
        columns = {a: header.index("Grade") for a in assignments}
    else:
        assignments = sorted({a for _, a in grades})
        titles = config.lms_columns.get(to, {})
        columns = {a: _find_column(header, a, titles.get(a), to) for a in assignments}
        for assignment in assignments:
            if columns[assignment] is None:
                header.append(titles.get(assignment, assignment))
                columns[assignment] = len(header) - 1
                summary.new_columns.append(header[-1])
    possible = _points_possible(grades)
    width = len(header)
    matched: set[str] = set()
    for row in table[1:]:
        row.extend([""] * (width - len(row)))
        first = row[0].strip()
        if first == POINTS_POSSIBLE:
            for assignment in assignments:
                if columns[assignment] >= len(header) - len(summary.new_columns):  # a column added here
                    row[columns[assignment]] = _number(possible[assignment])
            continue
        found = identifier(row)
        if not found:
            if first:  # a student without the id (Canvas's "Manual Posting" row has no name either)
                summary.not_submitted.append(f"{first} (no {header[key]})")
            continue
        student = by_key.get(found.casefold())
        label = f"{row[0].strip() or found} ({found})"
        if student is None or not any((student, a) in grades for a in assignments):
            summary.not_submitted.append(label)
            continue
        matched.add(student)
        for assignment in assignments:
            grade = grades.get((student, assignment))
            if grade is not None and grade.exportable:
                row[columns[assignment]] = _number(grade.score)
                summary.exported += 1
    for student in sorted({s for s, _ in grades} - matched):
        known = _roster_id(students[student], to, worksheet)
        summary.not_on_roster.append(f"{student} ({'id ' + known if known else 'no id of this roster known'})")
    with open(dest, "w", newline="") as file:
        safe_text.writer(file, reversible=False).writerows(table)  # the LMS's own cells too


def _find_column(header: list[str], assignment: str, title: str | None, to: str) -> int | None:
    """The roster column of an assignment: the configured title, else a title equal to the assignment id
    (Canvas's " (id)" suffix and Moodle's "Type: " prefix and " (Real)" suffix ignored)."""
    wanted = (title or assignment).casefold()
    for index, name in enumerate(header):
        plain = CANVAS_ID_SUFFIX.sub("", name) if to == "canvas" else MOODLE_ITEM.match(name).group("title")
        if name.casefold() == wanted or plain.strip().casefold() == wanted:
            return index
    return None


def _some(items: list[str], shown: int = 8) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _points_possible(grades) -> dict[str, float]:
    possible: dict[str, float] = {}
    for (_, assignment), grade in grades.items():
        possible[assignment] = max(possible.get(assignment, 0.0), grade.max_score)
    return possible


def _number(value: float | None) -> str:
    return "" if value is None else f"{round(value, 2):g}"


def _read(path: Path) -> list[dict]:
    return safe_text.read_rows(path, encoding="utf-8-sig")


def _read_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        raise ValueError(f"roster {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as file:  # Canvas may write a byte-order mark
        return [row for row in csv.reader(file)]
