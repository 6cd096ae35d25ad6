"""LMS export from hand-written OUT files (tests/fixtures/lms): Canvas gradebook, Moodle import, wide CSV."""

import csv

import pytest
from locations import FIXTURES as ALL_FIXTURES  # noqa: E402

from autograder.commands import export as exporting
from autograder.term import late

FIXTURES = ALL_FIXTURES / "lms"
COURSE = """
[course]
time_zone = "UTC"
[due]
"01_databases" = "2027-03-01 22:59"
"02_differencing" = "2027-03-08 22:59"
[late]
plugin = "autograder.term.late.PerDayPenalty"
[late.options]
fraction_per_day = 0.1
[lms.canvas.columns]
"01_databases" = "Databases and reconstruction (48213)"
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "course.toml"
    path.write_text(COURSE)
    return late.load_config(path)


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_canvas_fills_the_gradebook_by_user_id(out, config, tmp_path):
    dest = tmp_path / "canvas_import.csv"
    summary = exporting.export(out, "canvas", dest, FIXTURES / "canvas_gradebook.csv", config)
    original, filled = _rows(FIXTURES / "canvas_gradebook.csv"), _rows(dest)
    header = filled[0]
    # Canvas's own header and rows are kept, in order; the new assignment is appended under its id.
    assert header[: len(original[0])] == original[0] and header[len(original[0]) :] == ["02_differencing"]
    assert [row[0] for row in filled] == [row[0] for row in original]
    assert filled[1][5] == "Manual Posting"
    db, new = header.index("Databases and reconstruction (48213)"), header.index("02_differencing")
    points = filled[2]
    assert points[0].strip() == "Points Possible" and points[db] == "6.00" and points[new] == "5"
    by_id = {row[1]: row for row in filled[3:]}
    assert by_id["1001"][db] == "6" and by_id["1001"][new] == "4"  # 30 h late: 2 started days x 10% of 5
    assert by_id["1001"][header.index("Quiz 1 (48300)")] == "9.00"  # other columns untouched
    assert by_id["1002"][db] == "" and by_id["1002"][new] == "3"  # written answer not graded: withheld
    assert by_id["1003"][db] == "6" and by_id["1003"][new] == ""  # grading error: withheld, never a zero
    assert summary.exported == 4
    assert ("bob", "01_databases", "awaiting manual grading") in summary.withheld
    assert ("cy", "02_differencing", "grading error") in summary.withheld
    assert summary.penalised == [("ada", "02_differencing", 1.0)]
    assert [s.split(" (")[0] for s in summary.not_submitted] == ["Noether, Emmy", "Student, Test"]
    assert summary.not_on_roster == ["dee (id 1999)"]
    text = summary.text()
    assert "Noether, Emmy" in text and "dee (id 1999)" in text
    assert "not exported, grading error (1): cy/02_differencing" in text


def test_canvas_needs_its_own_export(out, config, tmp_path):
    with pytest.raises(ValueError, match="needs --roster"):
        exporting.export(out, "canvas", tmp_path / "x.csv", None, config)
    with pytest.raises(ValueError, match='no "ID" column'):
        exporting.export(out, "canvas", tmp_path / "x.csv", FIXTURES / "moodle_grades.csv", config)
    with pytest.raises(ValueError, match="unknown export format"):
        exporting.export(out, "blackboard", tmp_path / "x.csv", None, config)


def test_moodle_roster_matched_by_id_number_then_email(out, config, tmp_path):
    dest = tmp_path / "moodle_import.csv"
    summary = exporting.export(out, "moodle", dest, FIXTURES / "moodle_grades.csv", config)
    filled = _rows(dest)
    header = filled[0]
    db = header.index("Assignment: 01_databases (Real)")
    assert header[-1] == "02_differencing" and len(filled) == 5
    by_email = {row[5]: row for row in filled[1:]}
    assert by_email["ada@example.edu"][db] == "6" and by_email["ada@example.edu"][-1] == "4"
    assert by_email["bob@example.edu"][db] == "-"  # withheld: Moodle's own value kept
    assert by_email["emmy@example.edu"][db] == "-"
    # cy has no ID number in Moodle and intake knew no email for cy: reported on both sides.
    assert [s.split(" (")[0] for s in summary.not_submitted] == ["Cy", "Emmy"]
    assert sorted(s.split(" ")[0] for s in summary.not_on_roster) == ["cy", "dee"]


def test_moodle_without_roster_writes_id_number_and_email(out, config, tmp_path):
    dest = tmp_path / "moodle.csv"
    exporting.export(out, "moodle", dest, None, config)
    rows = _rows(dest)
    assert rows[0] == ["ID number", "Email address", "01_databases", "02_differencing"]
    assert rows[1] == ["1001", "ada@example.edu", "6", "4"]
    assert rows[3] == ["1003", "", "6", ""]


def test_wide_csv_has_a_points_possible_row_and_no_zero_for_errors(out, config, tmp_path):
    dest = tmp_path / "grades_wide.csv"
    summary = exporting.export(out, "csv", dest, None, config)
    rows = _rows(dest)
    assert rows[0] == ["student", "lms_id", "email", "name", "01_databases", "02_differencing"]
    assert rows[1] == ["Points Possible", "", "", "", "6", "5"]
    table = {row[0]: row[4:] for row in rows[2:]}
    assert table == {"ada": ["6", "4"], "bob": ["", "3"], "cy": ["6", ""], "dee": ["1.5", "5"]}
    assert summary.exported == 6


def test_penalty_is_recomputed_not_stacked(out, config, tmp_path):
    """Exporting twice, or after late.csv's own penalty column changed, gives the same grades: the penalty
    comes from seconds late and the raw scores, never from an already penalised score."""
    first = _rows(exporting.export(out, "csv", tmp_path / "a.csv", None, config).dest)
    rows = _rows(out / "late.csv")
    rows[2][rows[0].index("penalty")] = "99"
    with open(out / "late.csv", "w", newline="") as file:
        csv.writer(file).writerows(rows)
    second = _rows(exporting.export(out, "csv", tmp_path / "b.csv", None, config).dest)
    assert first == second


def test_partial_exports_automatic_points_before_manual_grading(out, config, tmp_path):
    summary = exporting.export(out, "csv", tmp_path / "p.csv", None, config, partial=True)
    table = {row[0]: row[4:] for row in _rows(tmp_path / "p.csv")[2:]}
    assert table["bob"] == ["2", "3"] and table["cy"] == ["6", ""]  # the grading error is still withheld
    assert summary.partial == [("bob", "01_databases")]
    assert summary.withheld == [("cy", "02_differencing", "grading error")]
    assert "counted 0 (1): bob/01_databases" in summary.text()


def test_extension_granted_after_grading_counts(out, tmp_path):
    path = tmp_path / "extended.toml"
    path.write_text(COURSE.replace("[late]", '[extensions.ada]\n"02_differencing" = 2\n[late]'))
    summary = exporting.export(out, "csv", tmp_path / "x.csv", None, late.load_config(path))
    assert summary.penalised == [] and _rows(tmp_path / "x.csv")[2][4:] == ["6", "5"]


def test_no_due_date_no_penalty(out, tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text('[course]\ntime_zone = "UTC"\n')
    summary = exporting.export(out, "csv", tmp_path / "x.csv", None, late.load_config(path))
    assert summary.penalised == []  # nbgrader's default plugin (penalty_method 'none')


def test_cli_subcommand(out, config, tmp_path, capsys, monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    exporting.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(out), "--to", "csv", "--out", str(tmp_path / "c.csv")])
    monkeypatch.setattr(exporting.late_policy, "load_config", lambda: config)
    exporting.run(args)
    assert "wrote" in capsys.readouterr().out and (tmp_path / "c.csv").exists()
