"""Moodle, in two forms of roster, and a file of its own without one.

- With --roster the assignment's grading worksheet (Assignment > Submissions > "Download grading worksheet",
  re-imported with "Upload grading worksheet"; columns Identifier, Full name, ..., Grade): rows are matched by
  its "Identifier", "Participant <id>", the participant id intake read from Moodle's folder names, and the
  "Grade" column is filled. A worksheet is one assignment's: the participants matched must have grades of one
  assignment only.
- With --roster a gradebook "Export to plain text file" (Moodle's CSV grade import, docs.moodle.org "Grade
  import": the import format is the export format; map "ID number" to useridnumber and each grade column to a
  grade item): rows are matched by "ID number" against an id the submissions' names carried (a custom
  --student-regexp's lms_id group), or the name of a `<student>/...` folder.
- Without --roster, a file with "ID number", "Email address" and one column per assignment is written the same
  way; students known only by a Canvas user id or a Moodle participant id have no ID number and are listed, not
  written.
"""

from __future__ import annotations

import re
from pathlib import Path

from autograder.lms import register
from autograder.lms.base import LmsFormat, RosterLayout, scores
from autograder.sinks import safe_text

ITEM = re.compile(r"^(?:[^:]+:\s*)?(?P<title>.*?)(?:\s*\((?:Real|Percentage|Letter)\))?\s*$")
PARTICIPANT = re.compile(r"^\s*\S.*?\s(\d+)\s*$")  # the worksheet's "Participant 123" (in any language)
NO_ID_NUMBER = (
    "no Moodle ID number known (a Canvas user id or a Moodle participant id is not one; a Moodle "
    "participant's grade goes in with the assignment's grading worksheet as --roster)"
)


@register
class Moodle(LmsFormat):
    name = "moodle"
    title = "Moodle"

    def write(self, grades, students, dest, summary) -> None:
        assignments = sorted({a for _, a in grades})
        layout = RosterLayout(0)
        with open(dest, "w", newline="") as file:
            writer = safe_text.writer(file, reversible=False)
            writer.writerow(["ID number", "Email address", *assignments])
            for student in sorted({s for s, _ in grades}):
                info = students[student]
                id_number = self.roster_id(info, layout)
                if not id_number:
                    summary.withheld += [
                        (student, a, NO_ID_NUMBER)
                        for a in assignments
                        if (student, a) in grades and grades[(student, a)].exportable
                    ]
                    continue
                writer.writerow([id_number, info.get("email", ""), *scores(grades, student, assignments, summary)])

    def layout(self, roster: Path, header: list[str]) -> RosterLayout:
        if "Identifier" in header and "Grade" in header:
            return RosterLayout(header.index("Identifier"), worksheet=True)
        if "ID number" in header:
            return RosterLayout(header.index("ID number"))
        raise ValueError(
            f"{roster} is neither a Moodle grading worksheet (Identifier, ..., Grade) nor a Moodle "
            'grade export with an "ID number" column; rows are not matched by email address, '
            "which a student can set"
        )

    def roster_id(self, info: dict, layout: RosterLayout) -> str:
        lms, lms_id = info.get("lms", ""), info.get("lms_id", "")
        if layout.worksheet:
            return lms_id if lms == "moodle" else ""
        if lms_id:  # a Moodle ID number only when the instructor's regexp read it as one
            return lms_id if not lms else ""
        return info["student"]

    def identifier(self, cell: str, layout: RosterLayout) -> str:
        if not layout.worksheet:
            return cell
        match = PARTICIPANT.match(cell)
        return match.group(1) if match else ""

    def plain_title(self, header: str) -> str:
        match = ITEM.match(header)
        return match.group("title") if match else header
