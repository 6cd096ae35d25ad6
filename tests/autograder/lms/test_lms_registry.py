"""A new LMS is one new module of autograder/lms: export and course.toml find it by its name."""

import csv
import sys

import pytest

import autograder.lms
from autograder.commands import export as exporting
from autograder.term import late

ANOTHER_LMS = """
from autograder.lms import register
from autograder.lms.base import LmsFormat, RosterLayout


@register
class Blackboard(LmsFormat):
    name = "blackboard"
    title = "Blackboard"

    def write(self, grades, students, dest, summary):
        kept = [f"{s},{a},{g.score}\\n" for (s, a), g in sorted(grades.items()) if g.exportable]
        summary.exported += len(kept)
        dest.write_text("".join(kept))

    def layout(self, roster, header):
        return RosterLayout(header.index("Username"))

    def roster_id(self, info, layout):
        return info["student"]
"""


@pytest.fixture
def another_lms(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "blackboard.py").write_text(ANOTHER_LMS)
    monkeypatch.setattr(autograder.lms, "__path__", [*autograder.lms.__path__, str(folder)])
    yield
    autograder.lms._REGISTERED.pop("blackboard", None)
    sys.modules.pop("autograder.lms.blackboard", None)


def test_the_course_formats_are_registered():
    assert list(autograder.lms.formats()) == ["canvas", "csv", "moodle"]


def test_a_new_module_is_a_new_export_format(out, tmp_path, another_lms):
    course = tmp_path / "course.toml"
    course.write_text('[course]\ntime_zone = "UTC"\n[lms.blackboard.columns]\n"01_databases" = "Databases"\n')
    config = late.load_config(course)
    assert config.lms_columns["blackboard"] == {"01_databases": "Databases"}
    dest = tmp_path / "blackboard.csv"
    summary = exporting.export(out, "blackboard", dest, config=config)
    assert summary.exported > 0 and dest.read_text().count("\n") == summary.exported
    roster = tmp_path / "roster.csv"
    roster.write_text("Username,Databases\nada,\n")
    filled = tmp_path / "filled.csv"
    exporting.export(out, "blackboard", filled, roster=roster, config=config)
    rows = list(csv.reader(filled.open()))
    assert rows[0] == ["Username", "Databases"] + rows[0][2:] and rows[1][0] == "ada" and rows[1][1] != ""


def test_an_unknown_format_names_the_registered_ones(out, tmp_path):
    with pytest.raises(ValueError, match="canvas, csv, moodle"):
        exporting.export(out, "sakai", tmp_path / "x.csv")
