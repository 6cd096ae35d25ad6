"""The autograde round trip through the instructor CLI on a sample class: full marks for the solutions, zero
for the untouched release, exactly one function's points lost for one mistake, and a reason (never a crash)
for malformed and missing notebooks, from a folder and from an LMS zip."""

import csv
import os
import shutil
import zipfile
from collections import defaultdict

import pytest
from cli import run_cli
from nbgrader.utils import is_solution

from autograder.commands import demo as sample_class
from autograder.commands.grade import graded_cells
from autograder.layout import SOURCE, assignments, notebooks

pytestmark = pytest.mark.slow  # every test here starts a kernel, a browser or a server


def _run(*args):
    # As the README's instructor does it: nothing exported, the data found at its one default (REPO/data).
    environment = {name: value for name, value in os.environ.items() if name != "DP_COURSE_DATA"}
    return run_cli(*args, timeout=1500, env=environment)


def _rows(out):
    with open(out / "grades.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    sample_class.build(root / "submissions")
    # A student who handed in only the first assignment.
    first = assignments()[0]
    shutil.copytree(root / "submissions" / "perfect" / first, root / "submissions" / "partial" / first)
    result = _run("grade", str(root / "submissions"), "--out", str(root / "out"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    (root / "terminal.txt").write_text(result.stdout + result.stderr)
    return root / "out", _rows(root / "out")


def test_the_terminal_gets_a_progress_bar_and_a_summary_not_a_log(graded):
    out, _ = graded
    terminal = (out.parent / "terminal.txt").read_text()
    assert "notebook(s) of 5 student(s)" in terminal and "grading:" in terminal, terminal[-2000:]
    for noise in (":INFO:", "INFO", "Nanny", "Scheduler", "CRITICAL", "exchange"):
        assert noise not in terminal, f"{noise!r} reached the terminal:\n{terminal[-3000:]}"


def _auto(rows, student):
    by_assignment = defaultdict(list)
    for row in rows:
        if row["student"] == student and row["kind"] == "auto":
            by_assignment[row["assignment"]].append(row)
    return by_assignment


def test_csv_has_the_contract_columns(graded):
    out, rows = graded
    assert {"student", "assignment", "cell", "kind", "score", "max_score", "reason"} <= set(rows[0])
    expected_cells = sum(len(graded_cells(SOURCE / a / nb)) for a in assignments() for nb in notebooks(a))
    assert len(rows) == 5 * expected_cells  # every student gets every cell, graded or not


def test_solutions_earn_every_automatic_point(graded):
    _, rows = graded
    for cells in _auto(rows, "perfect").values():
        for row in cells:
            assert float(row["score"]) == float(row["max_score"]) and row["reason"] == "", row


def test_untouched_release_earns_zero(graded):
    _, rows = graded
    for cells in _auto(rows, "untouched").values():
        for row in cells:
            # Missing code raises NotImplementedError; later cells that use its results fail with NameError.
            assert float(row["score"]) == 0 and (
                "NotImplementedError" in row["reason"] or "NameError" in row["reason"]
            ), row


def test_one_wrong_function_loses_exactly_its_points(graded):
    _, rows = graded
    for assignment, cells in _auto(rows, "one_wrong").items():
        wrong_function = sample_class.WRONG_ANSWERS[assignment][0]
        for row in cells:
            if row["cell"] == f"test_{wrong_function}":
                assert float(row["score"]) == 0 and row["reason"], row
            else:
                assert float(row["score"]) == float(row["max_score"]), row


def test_class_gradebook_holds_every_automatic_score(graded):
    from nbgrader.api import Gradebook

    out, rows = graded
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        for row in rows:
            if row["kind"] == "auto":
                grade = gradebook.find_grade(
                    row["cell"], row["notebook"].removesuffix(".ipynb"), row["assignment"], row["student"]
                )
                assert grade.auto_score == float(row["score"]), row


def test_manual_cells_wait_for_a_grader(graded):
    _, rows = graded
    manual = [r for r in rows if r["kind"] == "manual" and r["student"] == "perfect"]
    assert manual and all(r["score"] == "" for r in manual)


def test_malformed_and_missing_notebooks_get_zero_and_a_reason(graded):
    _, rows = graded
    for row in rows:
        if row["student"] == "broken":
            assert row["score"] == "0" and row["reason"].startswith("malformed notebook"), row
        if row["student"] == "partial" and row["assignment"] != assignments()[0]:
            assert row["score"] == "0" and row["reason"].startswith("missing notebook"), row


def test_feedback_for_every_notebook_without_test_code(graded):
    out, rows = graded
    for student, assignment, notebook in {(r["student"], r["assignment"], r["notebook"]) for r in rows}:
        page = out / "feedback" / student / assignment / notebook.replace(".ipynb", ".html")
        text = page.read_text()
        for secret in ("BEGIN HIDDEN TESTS", "course.grading", ".check_", "Traceback (most recent call last)"):
            assert secret not in text, f"{page} shows {secret!r}"
    wrong = sample_class.WRONG_ANSWERS[assignments()[0]][0]
    page = (out / "feedback" / "one_wrong" / assignments()[0] / notebooks(assignments()[0])[0]).with_suffix(".html")
    reason = next(r["reason"] for r in rows if r["student"] == "one_wrong" and r["cell"] == f"test_{wrong}")
    assert reason.split(": ", 1)[-1][:30] in page.read_text().replace("&gt;", ">").replace("&#x27;", "'")


def test_report_summarises_the_class(graded):
    out, _ = graded
    result = _run("report", str(out))
    assert result.returncode == 0, result.stderr
    assert "perfect" in result.stdout and "pass" in result.stdout
    assert (out / "report.png").stat().st_size > 1000


def test_lms_zip_is_graded_like_a_folder(tmp_path):
    assignment = assignments()[0]
    notebook = notebooks(assignment)[0]
    nb_path = tmp_path / "perfect.ipynb"
    import nbformat

    nbformat.write(sample_class.solved(assignment, notebook), nb_path)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(nb_path, f"course-export/alice/{assignment}/{notebook}")
    result = _run("grade", str(archive), "--out", str(tmp_path / "out"), "--assignment", assignment)
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "out")
    assert {r["student"] for r in rows} == {"alice"}
    lost = [(r["cell"], r["score"], r["reason"]) for r in rows if r["kind"] == "auto" and r["score"] != r["max_score"]]
    assert not lost


def test_unknown_assignment_is_a_clear_error(tmp_path):
    result = _run("grade", str(tmp_path), "--out", str(tmp_path / "out"), "--assignment", "99_nothing")
    assert result.returncode != 0 and "unknown assignment" in result.stderr


def test_a_hung_notebook_is_stopped_and_the_batch_goes_on(tmp_path):
    import nbformat

    assignment = assignments()[0]
    notebook = notebooks(assignment)[0]
    first_function = next(
        c.metadata.nbgrader["grade_id"]
        for c in nbformat.read(SOURCE / assignment / notebook, 4).cells
        if is_solution(c) and c.cell_type == "code"
    )
    hung = sample_class.solved(assignment, notebook, replace={first_function: "while True:\n    pass"})
    for student, nb in (("hung", hung), ("fine", sample_class.solved(assignment, notebook))):
        path = tmp_path / "class" / student / assignment / notebook
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    result = _run(
        "grade",
        str(tmp_path / "class"),
        "--out",
        str(tmp_path / "out"),
        "--assignment",
        assignment,
        "--timeout",
        "120",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "out")
    assert all(r["score"] == "0" and r["reason"].startswith("timeout") for r in rows if r["student"] == "hung")
    assert all(r["score"] == r["max_score"] for r in rows if r["student"] == "fine" and r["kind"] == "auto")
