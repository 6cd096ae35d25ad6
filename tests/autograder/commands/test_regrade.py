"""Regrading only what changed: --student restricts a run, a rerun keeps the grades of unchanged submissions
(grading errors are always redone), --force regrades, and rows outside a run stay in OUT as they were."""

import csv

import nbformat
import pytest
from cli import run_cli, run_grade
from hostile_corpus import WRONG_THRESHOLD, cell_by_grade_id, solved
from nbgrader.api import Gradebook

from autograder.commands.grade import graded_cells
from autograder.layout import SOURCE
from autograder.sinks import safe_text

pytestmark = pytest.mark.slow  # every test here starts a kernel, a browser or a server

ASSIGNMENT, NOTEBOOK = "01_databases", "01_databases.ipynb"


def _grade(submissions, out, *options):
    result = run_grade(submissions, out, "--assignment", ASSIGNMENT, *options)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _rows(out):
    return {(r["student"], r["cell"]): r for r in csv.DictReader(open(out / "grades.csv", newline=""))}


def _write(folder, nb):
    (folder / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / ASSIGNMENT / NOTEBOOK)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("regrade")
    wrong = solved()
    cell_by_grade_id(wrong, "threshold_query").source = WRONG_THRESHOLD
    _write(root / "class" / "ada", solved())
    _write(root / "class" / "bob", wrong)
    first = _grade(root / "class", root / "out")
    return root, first, _rows(root / "out")


def test_an_unchanged_rerun_keeps_every_grade(graded):
    root, first, rows = graded
    assert "unchanged" not in first
    feedback = root / "out" / "feedback" / "ada" / ASSIGNMENT / "01_databases.html"
    stamp = feedback.stat().st_mtime_ns
    costs = safe_text.read_rows(root / "out" / "inputs.csv")
    assert all(float(r["grading_seconds"]) > 0 for r in costs), costs  # what each notebook cost, on record
    again = _grade(root / "class", root / "out")
    assert "2 notebook(s) unchanged" in again, again
    assert _rows(root / "out") == rows
    assert feedback.stat().st_mtime_ns == stamp, "an unchanged submission's feedback was rewritten"
    assert safe_text.read_rows(root / "out" / "inputs.csv") == costs  # the run that graded them, kept


def test_a_changed_notebook_is_regraded_alone(graded):
    root, _, rows = graded
    fixed = solved()
    _write(root / "class" / "bob", fixed)
    again = _grade(root / "class", root / "out")
    assert "1 notebook(s) unchanged" in again, again
    now = _rows(root / "out")
    assert now[("bob", "test_threshold_query")]["score"] == "1"
    assert all(now[key] == row for key, row in rows.items() if key[0] == "ada")


def test_one_student_with_force_leaves_the_others_in_place(graded):
    """... and keeps the manual grade a grader gave (in formgrader, or here through nbgrader's API)."""
    root, _, _ = graded
    before = _rows(root / "out")
    manual = next(c.name for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "manual")
    with Gradebook(f"sqlite:///{root / 'out' / 'gradebook.db'}") as gradebook:
        gradebook.find_grade(manual, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, "ada").manual_score = 0.5
        gradebook.db.commit()
    again = _grade(root / "class", root / "out", "--student", "ada", "--force")
    assert "graded 1 notebook(s) of 1 student(s)" in again and "unchanged" not in again, again
    after = _rows(root / "out")
    assert after[("ada", manual)]["score"] == "0.5", after[("ada", manual)]
    assert set(after) == set(before) and all(after[k] == before[k] for k in after if k[0] == "bob")
    assert {r["student"] for r in csv.DictReader(open(root / "out" / "students.csv"))} == {"ada", "bob"}
    assert {r["student"] for r in csv.DictReader(open(root / "out" / "late.csv"))} == {"ada", "bob"}


def test_an_unknown_student_is_an_error(graded):
    root, _, _ = graded
    result = run_grade(
        str(root / "class"),
        str(root / "out"),
        "--student",
        "nobody-here",
        timeout=600,
    )
    assert result.returncode == 1 and "nobody-here" in result.stderr


def test_manual_scores_from_the_manual_command_survive_a_rerun(graded, tmp_path):
    """`manual` on a real graded OUT: its sheet lists both students' written answer, the scores read back
    reach the nbgrader gradebook, and the next `grade` run keeps them in grades.csv."""
    import shutil

    from autograder.sinks import safe_text

    root, _, _ = graded
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    manual_cells = [c.name for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "manual"]
    assert run_cli("manual", out, timeout=300).returncode == 0
    sheet = out / "manual" / ASSIGNMENT / f"{manual_cells[0]}.csv"
    rows = safe_text.read_rows(sheet)
    assert sorted(r["student"] for r in rows) == ["ada", "bob"] and all(r["answer"] for r in rows)
    for row in rows:
        row["score"] = {"ada": row["max_score"], "bob": "0"}[row["student"]]
    with open(sheet, "w", newline="") as file:
        writer = safe_text.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = run_cli("manual", out, "--scores", sheet, timeout=300)
    assert result.returncode == 0, result.stderr
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        given = {
            s: gradebook.find_grade(manual_cells[0], NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, s).manual_score
            for s in ("ada", "bob")
        }
    assert given == {"ada": float(rows[0]["max_score"]), "bob": 0.0}
    _grade(root / "class", out)
    after = _rows(out)
    assert after["ada", manual_cells[0]]["score"] == rows[0]["max_score"]
    assert after["bob", manual_cells[0]]["score"] == "0" and after["bob", manual_cells[0]]["reason"] == ""
