"""`python -m autograder manual`: sheets of written answers out, checked scores back into the gradebook."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.commands import manual
from autograder.commands.grade import COLUMNS
from autograder.layout import REPO
from autograder.pipeline.config import gradebook_url
from autograder.sinks import safe_text

ASSIGNMENT, NOTEBOOK, CELL = "01_databases", "01_databases.ipynb", "threshold_why"
ANSWERS = {
    "alice": "It is **1** only when more than $5$ rows are true: $P(X > 5)$ is small for $p = 0.5$... no, large.",
    "bob": "Because <img src=x onerror=\"fetch('/formgrader/api/grade/1', {method: 'PUT'})\"> and "
    "<script>document.title = 'pwned'</script> $a < b$",
    '=HYPERLINK("http://evil.example/","x")': "formula student",
}


@pytest.fixture
def out(tmp_path) -> Path:
    """An OUT folder as `grade` leaves it for three students of 01, with one written answer each (ungraded)
    and one test cell, built with nbgrader's own gradebook API."""
    out = tmp_path / "out"
    out.mkdir()
    url = gradebook_url(out / "gradebook.db")
    with Gradebook(url) as gradebook:
        gradebook.update_or_create_assignment(ASSIGNMENT)
        gradebook.add_notebook(NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT)
        gradebook.add_grade_cell(CELL, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, max_score=1.0, cell_type="markdown")
        gradebook.add_solution_cell(CELL, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT)
        gradebook.add_grade_cell(
            "test_create_db", NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, max_score=2.0, cell_type="code"
        )
        for student in ANSWERS:
            gradebook.add_student(student)
            gradebook.add_submission(ASSIGNMENT, student)
    rows = []
    for student, answer in ANSWERS.items():
        rows.append([student, ASSIGNMENT, NOTEBOOK, "test_create_db", "auto", "2", "2", "", "on", "1"])
        rows.append([student, ASSIGNMENT, NOTEBOOK, CELL, "manual", "", "1", "awaiting manual grading", "on", "1"])
        cell = nbformat.v4.new_markdown_cell(answer)
        cell.metadata["nbgrader"] = {"grade_id": CELL, "grade": True, "solution": True, "points": 1}
        path = out / "autograded" / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    with open(out / "grades.csv", "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return out


def _manual(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", "manual", *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fill(sheet: Path, scores: dict[str, str], target: Path | None = None) -> Path:
    rows = safe_text.read_rows(sheet)
    for row in rows:
        row["score"] = scores.get(row["student"], row["score"])
    target = target or sheet
    with open(target, "w", newline="") as file:
        writer = safe_text.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def _manual_scores(out: Path) -> dict[str, float | None]:
    with Gradebook(gradebook_url(out / "gradebook.db")) as gradebook:
        return {
            s: gradebook.find_grade(CELL, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, s).manual_score for s in ANSWERS
        }


def test_sheets_list_every_answer_ungraded_and_formula_safe(out):
    result = _manual(out)
    assert result.returncode == 0, result.stderr
    sheet = out / "manual" / ASSIGNMENT / f"{CELL}.csv"
    rows = safe_text.read_rows(sheet)
    assert {r["student"]: r["answer"] for r in rows} == ANSWERS
    assert all(r["score"] == "" and r["max_score"] == "1" for r in rows)
    with open(sheet, newline="") as file:  # as a spreadsheet reads it: no cell starts a formula
        cells = [cell for row in csv.reader(file) for cell in row]
    assert not [c for c in cells if c and c[0] in "=+-@"]
    assert f"{CELL}.csv: 3 answer(s)" in result.stdout


def test_the_page_shows_answers_inert_and_awaiting_grading(out):
    assert _manual(out).returncode == 0
    page = (out / "manual" / ASSIGNMENT / f"{CELL}.html").read_text()
    assert "<script" not in page.lower() and "onerror" not in page.lower()
    assert "default-src 'none'" in page  # a second line of defence: the page may run no script at all
    assert page.count("awaiting grading") == 3 and "<strong>1</strong>" in page


def test_scores_read_back_into_the_gradebook_and_grades_csv(out):
    assert _manual(out).returncode == 0
    sheet = _fill(out / "manual" / ASSIGNMENT / f"{CELL}.csv", {"alice": "1", "bob": "0.5"})
    result = _manual(out, "--scores", sheet)
    assert result.returncode == 0, result.stderr
    assert "2 changed" in result.stdout
    assert _manual_scores(out) == {"alice": 1.0, "bob": 0.5, next(iter(reversed(ANSWERS))): None}
    rows = {(r["student"], r["cell"]): r for r in safe_text.read_rows(out / "grades.csv")}
    assert (rows["alice", CELL]["score"], rows["alice", CELL]["reason"]) == ("1", "")
    assert rows["bob", CELL]["score"] == "0.5"
    assert rows["bob", "test_create_db"]["score"] == "2"  # automatic scores untouched
    assert _manual(out).returncode == 0  # sheets written again show the scores given
    assert {r["student"]: r["score"] for r in safe_text.read_rows(out / "manual" / ASSIGNMENT / f"{CELL}.csv")}[
        "bob"
    ] == "0.5"


@pytest.mark.parametrize(
    "score, phrase",
    [("2", "outside 0 to 1"), ("-0.5", "outside 0 to 1"), ("nan", "outside 0 to 1"), ("one", "not a number")],
)
def test_a_bad_score_writes_nothing(out, score, phrase):
    assert _manual(out).returncode == 0
    sheet = _fill(out / "manual" / ASSIGNMENT / f"{CELL}.csv", {"alice": "1", "bob": score})
    before = (out / "grades.csv").read_bytes()
    result = _manual(out, "--scores", sheet)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and phrase in result.stderr
    assert "line 3" in result.stderr and "Traceback" not in result.stderr
    assert _manual_scores(out) == dict.fromkeys(ANSWERS)  # alice's valid score was not written either
    assert (out / "grades.csv").read_bytes() == before


def test_unknown_students_and_cells_are_refused(out):
    assert _manual(out).returncode == 0
    sheet = out / "manual" / ASSIGNMENT / f"{CELL}.csv"
    rows = safe_text.read_rows(sheet)
    rows[0]["student"], rows[0]["score"] = "mallory", "1"
    with open(sheet, "w", newline="") as file:
        writer = safe_text.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = _manual(out, "--scores", sheet)
    assert result.returncode == 1 and "unknown student" in result.stderr
    assert _manual_scores(out) == dict.fromkeys(ANSWERS)


def test_two_files_that_disagree_write_nothing(out, tmp_path):
    assert _manual(out).returncode == 0
    sheet = out / "manual" / ASSIGNMENT / f"{CELL}.csv"
    first = _fill(sheet, {"alice": "1"}, tmp_path / "first.csv")
    second = _fill(sheet, {"alice": "0"}, tmp_path / "second.csv")
    result = _manual(out, "--scores", first, "--scores", second)
    assert result.returncode == 1 and "different scores" in result.stderr
    assert _manual_scores(out)["alice"] is None


def test_without_a_graded_class_it_says_so(tmp_path):
    result = _manual(tmp_path)
    assert result.returncode == 1 and "grade the class first" in result.stderr


def test_read_scores_skips_empty_scores(out):
    manual.write_sheets(out, gradebook_url(out / "gradebook.db"))
    sheet = out / "manual" / ASSIGNMENT / f"{CELL}.csv"
    assert manual.read_scores(sheet, out) == []
    shutil.copy(sheet, out / "copy.csv")
    assert manual.read_scores(_fill(out / "copy.csv", {"bob": " 1 "}), out) == [
        manual.ManualScore("bob", ASSIGNMENT, NOTEBOOK, CELL, 1.0)
    ]


def test_an_answer_cannot_reach_past_its_own_box_in_a_browser(out, tmp_path):
    """An answer that leaves a table cell and a collapsed details element open would swallow every later
    student's section, and one that imitates a student's heading and score would forge one: in Chromium,
    each student's section holds that student's answer, every section is visible, and at a phone's width
    nothing is wider than the screen."""
    from browser import CHROMIUM, CHROMIUM_FLAGS, browser_missing

    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    forged = (
        "<table><tr><td><details><summary> </summary>\n\n## bob\n\n"
        '<font color="#555555">awaiting grading</font>\n\nno idea lol <font color="#ffffff"><s>'
    )
    nb_path = out / "autograded" / "alice" / ASSIGNMENT / NOTEBOOK
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[0].source = forged
    nbformat.write(nb, nb_path)
    assert _manual(out).returncode == 0
    page_path = out / "manual" / ASSIGNMENT / f"{CELL}.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            for width in (1280, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(page_path.as_uri())
                sections = page.evaluate("""() => [...document.querySelectorAll('body > section')].map(s => ({
                    student: s.querySelector(':scope > h2').innerText,
                    answer: s.querySelector(':scope > .answer').textContent,
                    visible: s.getBoundingClientRect().height > 0 && s.checkVisibility(),
                    style: getComputedStyle(s.querySelector(':scope > h2')).color}))""")
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if width == 390:
                    page.screenshot(path=str(tmp_path / "manual.png"), full_page=True)
                page.close()
                assert [s["student"] for s in sections] == list(ANSWERS), sections
                assert all(s["visible"] for s in sections), sections
                assert len({s["style"] for s in sections}) == 1  # no answer recolours the headings after it
                by_student = {s["student"]: s["answer"] for s in sections}
                assert "no idea lol" in by_student["alice"] and "formula student" not in by_student["alice"]
                assert "formula student" in by_student[next(iter(reversed(ANSWERS)))]
                assert "Because" in by_student["bob"]
                assert overflow <= 0
        finally:
            browser.close()


def _feedback_page(out: Path, student: str) -> str:
    return (out / "feedback" / student / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")).read_text()


def test_a_new_manual_grade_makes_the_feedback_page_again(out):
    sheet = out / "manual" / ASSIGNMENT / f"{CELL}.csv"
    assert _manual(out).returncode == 0
    _fill(sheet, {"alice": "1"})
    done = _manual(out, "--scores", sheet)
    assert done.returncode == 0, done.stderr
    assert "1 feedback page(s) made again" in done.stdout
    page = _feedback_page(out, "alice")
    assert "Score: 1 / 1" in page and "awaiting grading" not in page
    assert "Total</th><td>1 of 1 points</td>" in page  # the notebook holds the written answer only
    assert (out / "static" / "mathjax" / "MathJax.js").is_file()
    assert not (out / "feedback" / "bob").exists()  # only the pages whose scores changed


def test_the_page_of_a_grade_taken_back_says_awaiting_again(out):
    sheet = out / "manual" / ASSIGNMENT / f"{CELL}.csv"
    manual.write_sheets(out, gradebook_url(out / "gradebook.db"))
    manual.record_scores(out, gradebook_url(out / "gradebook.db"), manual.read_scores(_fill(sheet, {"bob": "0"}), out))
    page = _feedback_page(out, "bob")
    assert "Score: 0 / 1" in page  # a grade of 0 that a grader gave is a 0
    with Gradebook(gradebook_url(out / "gradebook.db")) as gradebook:
        grade = gradebook.find_grade(CELL, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, "bob")
        grade.manual_score, grade.needs_manual_grade = None, True
        gradebook.db.commit()
    manual.refresh_feedback(out, gradebook_url(out / "gradebook.db"), {("bob", ASSIGNMENT, NOTEBOOK)})
    page = _feedback_page(out, "bob")
    assert "awaiting grading (1 point)" in page and "Score: 0 / 1" not in page
