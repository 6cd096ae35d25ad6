"""What every LMS format shares: a student's grade for one assignment, the export's summary, and the
roster-filling steps a format specialises (which column holds the id, which id a student has there, which
column is an assignment's)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from autograder.sinks import safe_text
from autograder.sinks.safe_text import for_terminal

POINTS_POSSIBLE = "Points Possible"


@dataclass(frozen=True)
class Grade:
    score: float | None  # after the late penalty; None when it cannot be exported
    max_score: float
    penalty: float
    status: str  # "ok" | "partial" (answers not graded yet counted 0) | "grading error" | "awaiting manual grading"

    @property
    def exportable(self) -> bool:
        return self.status in ("ok", "partial")


Grades = dict[tuple[str, str], Grade]  # (student, assignment) -> Grade
Students = dict[str, dict]  # student -> its row of students.csv


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


@dataclass(frozen=True)
class RosterLayout:
    """How one roster file is read: the column of its ids, and whether it is one assignment's worksheet
    (one "Grade" column) rather than a gradebook (a column per assignment)."""

    key: int
    worksheet: bool = False


class LmsFormat:
    """One LMS's export. `roster`: whether --roster (the LMS's own export, filled in) is "required",
    "optional" or refused ("none"). Without a roster, `write` makes a file of its own."""

    name: ClassVar[str]  # as --to names it
    title: ClassVar[str]  # as its users know it
    roster: ClassVar[str] = "optional"

    def write(self, grades: Grades, students: Students, dest: Path, summary: ExportSummary) -> None:
        """Write a file of the format's own (no roster)."""
        raise ValueError(f"--to {self.name} needs --roster")

    def layout(self, roster: Path, header: list[str]) -> RosterLayout:
        """Where this roster keeps its ids; a ValueError saying why a file is not this format's roster."""
        raise NotImplementedError

    def roster_id(self, info: dict, layout: RosterLayout) -> str:
        """The id by which a student's roster row is found ('' when none may be): an LMS's own id, of the
        kind that roster carries, never a name or an email (students choose those themselves)."""
        raise NotImplementedError

    def identifier(self, cell: str, layout: RosterLayout) -> str:
        """The id a roster row's id cell holds ('' for none)."""
        return cell

    def plain_title(self, header: str) -> str:
        """A roster column's title without the LMS's decorations, to match an assignment id against."""
        return header

    def fill(
        self,
        grades: Grades,
        students: Students,
        roster: Path,
        dest: Path,
        summary: ExportSummary,
        titles: dict[str, str],
    ) -> None:
        """Fill the LMS's own export `roster` into `dest`: every grade in its student's row and the
        assignment's column (appended when missing, under `titles`' name for it), the LMS's own cells kept."""
        table = _read_rows(roster)
        if not table:
            raise ValueError(f"{roster} is empty")
        header = table[0]
        layout = self.layout(roster, header)
        by_key: dict[str, str] = {}
        for student, info in students.items():
            if value := self.roster_id(info, layout):
                by_key.setdefault(value.casefold(), student)

        def identifier(row: list[str]) -> str:
            return self.identifier(row[layout.key].strip() if layout.key < len(row) else "", layout)

        if layout.worksheet:
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
                    f"{roster} is one {self.title} assignment's grading worksheet, but its participants have "
                    f"grades of {', '.join(assignments)} in this OUT; grade each {self.title} assignment's "
                    "download into its own OUT folder"
                )
            columns = {a: header.index("Grade") for a in assignments}
        else:
            assignments = sorted({a for _, a in grades})
            columns = {}
            for assignment in assignments:
                found = self._find_column(header, assignment, titles.get(assignment))
                if found is None:
                    header.append(titles.get(assignment, assignment))
                    found = len(header) - 1
                    summary.new_columns.append(header[-1])
                columns[assignment] = found
        possible = points_possible(grades)
        width = len(header)
        matched: set[str] = set()
        for row in table[1:]:
            row.extend([""] * (width - len(row)))
            first = row[0].strip()
            if first == POINTS_POSSIBLE:
                for assignment in assignments:
                    if columns[assignment] >= len(header) - len(summary.new_columns):  # a column added here
                        row[columns[assignment]] = number(possible[assignment])
                continue
            row_id = identifier(row)
            if not row_id:
                if first:  # a student without the id (Canvas's "Manual Posting" row has no name either)
                    summary.not_submitted.append(f"{first} (no {header[layout.key]})")
                continue
            owner = by_key.get(row_id.casefold())
            label = f"{row[0].strip() or row_id} ({row_id})"
            if owner is None or not any((owner, a) in grades for a in assignments):
                summary.not_submitted.append(label)
                continue
            matched.add(owner)
            for assignment in assignments:
                grade = grades.get((owner, assignment))
                if grade is not None and grade.exportable:
                    row[columns[assignment]] = number(grade.score)
                    summary.exported += 1
        for student in sorted({s for s, _ in grades} - matched):
            known = self.roster_id(students[student], layout)
            summary.not_on_roster.append(f"{student} ({'id ' + known if known else 'no id of this roster known'})")
        with open(dest, "w", newline="") as file:
            safe_text.writer(file, reversible=False).writerows(table)  # the LMS's own cells too

    def _find_column(self, header: list[str], assignment: str, title: str | None) -> int | None:
        """The roster column of an assignment: the configured title, else a title equal to the assignment id
        (the LMS's decorations ignored)."""
        wanted = (title or assignment).casefold()
        for index, name in enumerate(header):
            if name.casefold() == wanted or self.plain_title(name).strip().casefold() == wanted:
                return index
        return None


def scores(grades: Grades, student: str, assignments: list[str], summary: ExportSummary) -> list[str]:
    """One student's exportable score per assignment ('' where there is none), counted in the summary."""
    values = []
    for assignment in assignments:
        grade = grades.get((student, assignment))
        values.append(number(grade.score) if grade and grade.exportable else "")
        summary.exported += bool(grade and grade.exportable)
    return values


def points_possible(grades: Grades) -> dict[str, float]:
    possible: dict[str, float] = {}
    for (_, assignment), grade in grades.items():
        possible[assignment] = max(possible.get(assignment, 0.0), grade.max_score)
    return possible


def number(value: float | None) -> str:
    return "" if value is None else f"{round(value, 2):g}"


def _some(items: list[str], shown: int = 8) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _read_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        raise ValueError(f"roster {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as file:  # Canvas may write a byte-order mark
        return [row for row in csv.reader(file)]
