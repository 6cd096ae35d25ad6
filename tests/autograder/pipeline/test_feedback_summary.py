"""Feedback pages say where the student stands: points of possible, written answers awaiting grading (never 0),
the late penalty and why, failed cells with their reasons and links; every string escaped; MathJax local."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.commands.grade import COLUMNS
from autograder.pipeline import feedback
from autograder.pipeline.config import gradebook_url
from autograder.sinks import safe_text
from autograder.term import late

ASSIGNMENT, NOTEBOOK = "04_laplace", "04_laplace.ipynb"
NAME = NOTEBOOK.removesuffix(".ipynb")
HOSTILE = "<img src=x onerror=alert(1)>"
REASON = f"AssertionError: the noise scale should be sensitivity / epsilon {HOSTILE}"


def _flags(grade_id: str, points: float, **kinds) -> dict:
    return {"grade_id": grade_id, "points": points, "schema_version": 3, "locked": False, **kinds}


def notebook() -> nbformat.NotebookNode:
    """A 04 notebook as autograding leaves it: two answers, two test cells (one failed), two written answers."""
    cells = [
        nbformat.v4.new_markdown_cell("The Laplace mechanism adds noise of scale $b = \\Delta f / \\varepsilon$."),
        nbformat.v4.new_code_cell("def laplace_mechanism(value, sensitivity, epsilon):\n    return value"),
        nbformat.v4.new_code_cell(
            "assert True",
            outputs=[
                nbformat.v4.new_output("error", ename="AssertionError", evalue="printed by the cell", traceback=[])
            ],
        ),
        nbformat.v4.new_code_cell("assert True"),
        nbformat.v4.new_markdown_cell(f"Because the average of one person moves by $h/n$ {HOSTILE}"),
        nbformat.v4.new_markdown_cell("Sequential composition adds the epsilons: $\\sum_i \\varepsilon_i$."),
    ]
    cells[1].metadata["nbgrader"] = _flags("laplace", 0, solution=True, grade=False)
    cells[2].metadata["nbgrader"] = _flags("test_laplace_scale", 3, solution=False, grade=True)
    cells[3].metadata["nbgrader"] = _flags("test_private_sum", 2, solution=False, grade=True)
    cells[4].metadata["nbgrader"] = _flags("why_not_dp", 1, solution=True, grade=True)
    cells[5].metadata["nbgrader"] = _flags("composition", 1, solution=True, grade=True)
    return nbformat.v4.new_notebook(cells=cells)


def make_out(out: Path, student: str = "ada", penalty: float = 0.5) -> Path:
    """An OUT folder as `grade` leaves it for one student: gradebook, autograded notebook, grades.csv, late.csv."""
    out.mkdir(parents=True, exist_ok=True)
    with Gradebook(gradebook_url(out / "gradebook.db")) as gradebook:
        gradebook.update_or_create_assignment(ASSIGNMENT)
        gradebook.add_notebook(NAME, ASSIGNMENT)
        for cell in ("laplace", "why_not_dp", "composition"):
            gradebook.add_solution_cell(cell, NAME, ASSIGNMENT)
        for cell, points, kind in (
            ("test_laplace_scale", 3, "code"),
            ("test_private_sum", 2, "code"),
            ("why_not_dp", 1, "markdown"),
            ("composition", 1, "markdown"),
        ):
            gradebook.add_grade_cell(cell, NAME, ASSIGNMENT, max_score=points, cell_type=kind)
        gradebook.add_student(student)
        gradebook.add_submission(ASSIGNMENT, student)
        for cell, score in (("test_laplace_scale", 0.0), ("test_private_sum", 2.0)):
            grade = gradebook.find_grade(cell, NAME, ASSIGNMENT, student)
            grade.auto_score, grade.needs_manual_grade = score, False
        gradebook.find_grade("why_not_dp", NAME, ASSIGNMENT, student).needs_manual_grade = True
        # An answer left as its stub: nbgrader scores it 0 automatically, yet no grader has graded it.
        stub = gradebook.find_grade("composition", NAME, ASSIGNMENT, student)
        stub.auto_score, stub.needs_manual_grade = 0.0, False
        gradebook.db.commit()
    path = out / "autograded" / student / ASSIGNMENT / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook(), path)
    rows = [
        [student, ASSIGNMENT, NOTEBOOK, "test_laplace_scale", "auto", "0", "3", REASON, "on", "1"],
        [student, ASSIGNMENT, NOTEBOOK, "test_private_sum", "auto", "2", "2", "", "on", "1"],
        [student, ASSIGNMENT, NOTEBOOK, "why_not_dp", "manual", "", "1", "awaiting manual grading", "on", "1"],
        [student, ASSIGNMENT, NOTEBOOK, "composition", "manual", "", "1", "awaiting manual grading", "on", "1"],
    ]
    with open(out / "grades.csv", "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    note = f"late by 1 day: penalty {penalty:g} of 2" if penalty else "on time"
    with open(out / "late.csv", "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(late.LATE_COLUMNS)
        writer.writerow(
            [student, ASSIGNMENT, NOTEBOOK, "2027-03-30T10:00:00+00:00", "zip", "2027-03-29T22:59:00+00:00"]
            + ["40000" if penalty else "0", "0", "2", f"{penalty:g}", note]
        )
    return out


def page_of(out: Path, student: str = "ada") -> str:
    return (out / "feedback" / student / ASSIGNMENT / f"{NAME}.html").read_text()


def summary_of(page: str) -> str:
    return re.search(r'<section id="standing">.*?</section>', page, re.S).group(0)


@pytest.fixture
def out(tmp_path) -> Path:
    out = make_out(tmp_path / "out")
    feedback.regenerate(out, [("ada", ASSIGNMENT, NOTEBOOK)])
    return out


def test_the_summary_says_where_the_student_stands(out):
    summary = summary_of(page_of(out))
    assert 'Automatic tests</th><td class="">2 of 5 points' in summary
    assert "2 of 2 awaiting grading" in summary
    assert "-0.5 points (late by 1 day: penalty 0.5 of 2)" in summary
    assert "Total</th><td>1.5 of 7 points so far (2 points awaiting grading)" in summary
    # the failed cell, its reason from the grader's record (not what the cell printed), a link to the cell
    assert '<a href="#cell-test_laplace_scale">test_laplace_scale</a> (0 of 3)' in summary
    assert "the noise scale should be sensitivity / epsilon" in summary
    assert "printed by the cell" not in summary
    assert "test_private_sum" not in summary  # it passed


def test_the_links_reach_the_cells(out):
    page = page_of(out)
    for target in re.findall(r'href="#(cell-[^"]+)"', summary_of(page)):
        assert f'id="{target}"' in page


def test_an_ungraded_written_answer_never_shows_as_zero(out):
    page = page_of(out)
    for cell in ("why_not_dp", "composition"):
        start = page.index(f'id="cell-{cell}"')
        heading = page[start : page.index("</div>", start)]
        assert "awaiting grading (1 point)" in heading and "0.0" not in heading and "Score: 0" not in heading
    assert "Written response</a> (awaiting grading (1 point))" in page
    assert not re.search(r"Score: 0(\.0)? / 1", page)
    assert f"{NAME} (Score:" not in page  # nbgrader's own total, with its 0 for ungraded answers, is gone


def test_a_manual_grade_shows_once_given(out):
    with Gradebook(gradebook_url(out / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade("why_not_dp", NAME, ASSIGNMENT, "ada")
        grade.manual_score, grade.needs_manual_grade = 1.0, False
        gradebook.db.commit()
    feedback.regenerate(out, [("ada", ASSIGNMENT, NOTEBOOK)])
    summary = summary_of(page_of(out))
    assert "1 of 1 points; 1 of 2 awaiting grading" in summary
    assert "Total</th><td>2.5 of 7 points so far (1 point awaiting grading)" in summary


def test_everything_from_the_notebook_and_the_record_is_escaped(out):
    page = page_of(out)
    assert HOSTILE not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;img src=x onerror=alert(1)&gt;" in summary_of(page)


def test_a_comment_from_the_gradebook_is_sanitised(out):
    with Gradebook(gradebook_url(out / "gradebook.db")) as gradebook:
        comment = gradebook.find_comment("why_not_dp", NAME, ASSIGNMENT, "ada")
        comment.manual_comment = "Good, *but* see <script>alert(1)</script> [here](javascript:alert(2))"
        gradebook.db.commit()
    feedback.regenerate(out, [("ada", ASSIGNMENT, NOTEBOOK)])
    page = page_of(out)
    footer = page[page.index("<b>Comments:</b>") :][:400]
    assert "Good, *but* see" in footer  # shown as text
    assert "<script>alert" not in page and 'href="javascript' not in page


def test_math_comes_from_the_output_folder_under_a_policy(out):
    page = page_of(out)
    assert (out / "static" / "mathjax" / "MathJax.js").is_file()
    assert '<script src="../../../static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe">' in page
    assert "Content-Security-Policy" in page and "script-src 'self'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page loads something from a network"


def test_pages_to_refresh_are_the_late_and_the_manually_graded(tmp_path):
    out = make_out(tmp_path / "out")
    assert feedback.pages_to_refresh(out) == [("ada", ASSIGNMENT, NOTEBOOK)]
    on_time = make_out(tmp_path / "on_time", penalty=0)
    assert feedback.pages_to_refresh(on_time) == []


def test_mathjax_is_shipped_once(tmp_path):
    first = feedback.ship_mathjax(tmp_path)
    stamp = (first / "MathJax.js").stat().st_mtime_ns
    assert feedback.ship_mathjax(tmp_path) == first and (first / "MathJax.js").stat().st_mtime_ns == stamp
    assert (first / feedback.MATHJAX_CONFIG).is_file()
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".mathjax-")]


def test_after_a_grading_run_the_late_page_is_made_again(tmp_path):
    out = make_out(tmp_path / "out")
    page = out / "feedback" / "ada" / ASSIGNMENT / f"{NAME}.html"
    page.parent.mkdir(parents=True)
    page.write_text("the grading worker's page, which knows no late penalty")
    assert feedback.finish_pages(out) == [page]
    assert "-0.5 points (late by 1 day: penalty 0.5 of 2)" in summary_of(page.read_text())
    on_time = make_out(tmp_path / "on_time", penalty=0)
    assert feedback.finish_pages(on_time) == [] and (on_time / "static" / "mathjax" / "MathJax.js").is_file()
