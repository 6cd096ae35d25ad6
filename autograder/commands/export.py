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

Formats: one module of autograder/lms/ each (canvas, moodle, csv; see their docstrings), registered by name.
Rows are never matched by a display name or an email address: students choose those themselves (a participant
named after a classmate's email address would otherwise take the classmate's row).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from autograder.batch.submission import is_grading_error
from autograder.intake.submissions import read_students
from autograder.layout import OutFolder
from autograder.lms import formats
from autograder.lms.base import ExportSummary, Grade
from autograder.sinks import safe_text
from autograder.term import late as late_policy


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
    known = formats()
    if to not in known:
        raise ValueError(f"unknown export format {to!r}; choose one of {', '.join(known)}")
    lms = known[to]
    if lms.roster == "required" and roster is None:
        lms.write({}, {}, dest, ExportSummary(dest, to))  # says what roster it needs
    if lms.roster == "none" and roster is not None:
        with_roster = " or ".join(name for name, f in known.items() if f.roster != "none")
        raise ValueError(f"--roster is for --to {with_roster}; the {to} format lists every graded student")
    if not (OutFolder(out).grades).exists():
        raise ValueError(f"{out / 'grades.csv'} does not exist: grade first (python -m autograder grade)")
    config = config or late_policy.load_config()
    grades = assignment_grades(
        _read(OutFolder(out).grades), late_policy.read_late(OutFolder(out).late), config, partial
    )
    students = {row["student"]: row for row in read_students(OutFolder(out).students)}
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
    if roster is None:
        lms.write(grades, students, dest, summary)
    else:
        lms.fill(grades, students, Path(roster), dest, summary, config.lms_columns.get(to, {}))
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
    parser.add_argument("--to", choices=list(formats()), required=True)
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


def _read(path: Path) -> list[dict]:
    return safe_text.read_rows(path, encoding="utf-8-sig")
