"""csv: one row per student, one column per assignment, and a "Points Possible" row (as otter-grader's final
grades CSV), for any other LMS or a spreadsheet."""

from __future__ import annotations

from autograder.lms import register
from autograder.lms.base import POINTS_POSSIBLE, LmsFormat, number, points_possible, scores
from autograder.sinks import safe_text


@register
class Spreadsheet(LmsFormat):
    name = "csv"
    title = "CSV"
    roster = "none"

    def write(self, grades, students, dest, summary) -> None:
        assignments = sorted({a for _, a in grades})
        possible = points_possible(grades)
        with open(dest, "w", newline="") as file:
            writer = safe_text.writer(file, reversible=False)
            writer.writerow(["student", "lms_id", "email", "name", *assignments])
            writer.writerow([POINTS_POSSIBLE, "", "", "", *(number(possible[a]) for a in assignments)])
            for student in sorted({s for s, _ in grades}):
                info = students[student]
                values = scores(grades, student, assignments, summary)
                writer.writerow([student, info.get("lms_id", ""), info.get("email", ""), info.get("name", ""), *values])
