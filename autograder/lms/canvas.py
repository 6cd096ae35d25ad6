"""Canvas: fills a gradebook CSV exported from Canvas (Grades > Export), the file Canvas's "How do I import
grades in the Gradebook?" (Canvas Instructor Guide) imports back. The student columns and the "Points
Possible" row are kept, one column per assignment whose header is Canvas's `Title (assignment id)`; rows are
matched by the "ID" column, Canvas's user id, which intake reads from Canvas's submission file names. The header
layout (Student, ID, SIS User ID, SIS Login ID, [Integration ID], Section, assignments, read-only totals) and the
"    Points Possible" and "Manual Posting" rows follow canvas-lms lib/gradebook_exporter.rb. Only a Canvas user
id (or a custom regexp's lms_id) is matched, never a Moodle participant id.

An imported score replaces the one in Canvas, read-only columns are ignored, and a new column becomes a new
assignment (as institutional Canvas guides restate it, e.g. Ohio State's "Import a CSV File to Carmen
Grades"); so a grade that is withheld keeps Canvas's own value, and an assignment without a column yet is
appended under its course id with its points in the Points Possible row.
"""

from __future__ import annotations

import re
from pathlib import Path

from autograder.lms import register
from autograder.lms.base import LmsFormat, RosterLayout

ID_SUFFIX = re.compile(r"\s*\((\d+)\)\s*$")  # Canvas's "Title (assignment id)" header


@register
class Canvas(LmsFormat):
    name = "canvas"
    title = "Canvas"
    roster = "required"

    def write(self, grades, students, dest, summary) -> None:
        raise ValueError("--to canvas needs --roster: the gradebook CSV exported from Canvas (Grades > Export)")

    def layout(self, roster: Path, header: list[str]) -> RosterLayout:
        if "ID" not in header:
            raise ValueError(f'{roster} is not a Canvas gradebook export: it has no "ID" column (header: {header[:6]})')
        return RosterLayout(header.index("ID"))

    def roster_id(self, info: dict, layout: RosterLayout) -> str:
        return info.get("lms_id", "") if info.get("lms", "") != "moodle" else ""

    def plain_title(self, header: str) -> str:
        return ID_SUFFIX.sub("", header)
