"""Intake: folders, LMS zips (Canvas names, Moodle folders), renamed, duplicate and extra notebooks."""

import json
import zipfile
from datetime import UTC, datetime

import nbformat

from autograder.intake import submissions as intake
from autograder.layout import RELEASE, SOURCE, assignments, notebooks

FIRST = assignments()[0]
NOTEBOOK = notebooks(FIRST)[0]
EXPECTED = {a: notebooks(a) for a in assignments()}


def _collect(root, **kwargs):
    return intake.collect(root, [FIRST], EXPECTED, SOURCE, **kwargs)


def _write(path, nb=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb or nbformat.read(RELEASE / FIRST / NOTEBOOK, as_version=4), path)


def test_standard_layout(tmp_path):
    _write(tmp_path / "ada" / FIRST / NOTEBOOK)
    found, notes = _collect(tmp_path)
    assert [(s.student, s.assignment, s.path.name, s.problem) for s in found] == [("ada", FIRST, NOTEBOOK, "")]
    assert notes == []


def test_renamed_and_misplaced_notebook_is_matched_by_its_cell_ids(tmp_path):
    _write(tmp_path / "ada" / "my homework (1).ipynb")
    found, notes = _collect(tmp_path)
    assert found[0].path.name == "my homework (1).ipynb" and not found[0].problem and notes == []


def test_duplicates_are_reported_not_guessed(tmp_path):
    _write(tmp_path / "ada" / FIRST / NOTEBOOK)
    _write(tmp_path / "ada" / "copy of it.ipynb")
    found, _ = _collect(tmp_path)
    assert found[0].path is None and found[0].problem.startswith("duplicate notebooks")
    assert "copy of it.ipynb" in found[0].problem


def test_extra_files_are_noted(tmp_path):
    _write(tmp_path / "ada" / FIRST / NOTEBOOK)
    (tmp_path / "ada" / "notes.txt").write_text("scratch")
    _write(tmp_path / "ada" / "unrelated.ipynb", nbformat.v4.new_notebook())
    found, notes = _collect(tmp_path)
    assert not found[0].problem
    assert sorted(n.file for n in notes) == ["ada/notes.txt", "ada/unrelated.ipynb"]


def test_other_assignments_are_not_extra(tmp_path):
    second = assignments()[1]
    _write(tmp_path / "ada" / FIRST / NOTEBOOK)
    nb = nbformat.read(RELEASE / second / notebooks(second)[0], as_version=4)
    _write(tmp_path / "ada" / second / notebooks(second)[0], nb)
    _, notes = _collect(tmp_path)
    assert notes == []


def test_missing_and_malformed(tmp_path):
    (tmp_path / "bob" / FIRST).mkdir(parents=True)
    (tmp_path / "bob" / FIRST / NOTEBOOK).write_text("{not json")
    (tmp_path / "cy").mkdir()
    found, _ = _collect(tmp_path)
    problems = {s.student: s.problem for s in found}
    assert problems["bob"].startswith("malformed notebook") and problems["cy"].startswith("missing notebook")


def test_canvas_flat_zip_with_wrapper_folder(tmp_path):
    _write(tmp_path / "nb.ipynb")
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "nb.ipynb", f"export/ada_LATE_1234_5678_{NOTEBOOK}")
        zf.write(tmp_path / "nb.ipynb", "export/bob_2345_6789_renamed.ipynb")
    root = intake.unpack(archive, tmp_path / "scratch")
    found, notes = _collect(root)
    assert {s.student: (s.name, bool(s.path)) for s in found} == {"1234": ("ada", True), "2345": ("bob", True)}
    assert notes == []


def test_moodle_folders_and_custom_regexp(tmp_path):
    _write(tmp_path / "moodle" / "Ada Lovelace_991_assignsubmission_file_" / NOTEBOOK)
    found, _ = _collect(tmp_path / "moodle")
    assert [(s.student, s.name, s.lms_id, s.lms) for s in found] == [
        ("participant_991", "Ada Lovelace", "991", "moodle")
    ]
    _write(tmp_path / "flat" / f"{NOTEBOOK[:-6]}-by-ada.ipynb")
    found, _ = _collect(tmp_path / "flat", student_regexp=r".*-by-(?P<student_id>\w+)\.ipynb$")
    assert [s.student for s in found] == ["ada"]


def test_notebook_saved_by_colab_keeps_its_identity(tmp_path):
    nb = json.loads((RELEASE / FIRST / NOTEBOOK).read_text())
    nb["metadata"] = {"colab": {"provenance": []}, "kernelspec": {"name": "python3", "display_name": "Python 3"}}
    for cell in nb["cells"]:
        cell.pop("id", None)
    path = tmp_path / "ada" / "Copy of notebook.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))
    found, _ = _collect(tmp_path)
    assert found[0].path == path


# Canvas names uploads <sortable name>_[LATE_]<user id>_<attachment id>_<file> (canvas-lms lib/content_zipper.rb).
def _zip(archive, members):
    """members: (name in the zip, source file, zip time as a 6-tuple)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for name, source, when in members:
            info = zipfile.ZipInfo(name, date_time=when)
            zf.writestr(info, source.read_bytes())


def test_canvas_ids_late_marker_and_zip_time_in_the_course_zone(tmp_path):
    _write(tmp_path / "nb.ipynb")
    archive = tmp_path / "submissions.zip"
    _zip(
        archive,
        [
            (f"export/lovelaceada_LATE_1234_5678_{NOTEBOOK}", tmp_path / "nb.ipynb", (2027, 3, 2, 9, 30, 0)),
            ("export/babbagebob_2345_6789_renamed.ipynb", tmp_path / "nb.ipynb", (2027, 7, 1, 12, 0, 0)),
        ],
    )
    root = intake.unpack(archive, tmp_path / "scratch")
    found, notes = _collect(root, time_zone="Europe/Zurich")
    by_student = {s.student: s for s in found}
    ada, bob = by_student["1234"], by_student["2345"]
    assert (ada.name, ada.lms, bob.name) == ("lovelaceada", "canvas", "babbagebob")
    assert (ada.lms_id, ada.late_marker, bob.lms_id, bob.late_marker) == ("1234", True, "2345", False)
    assert ada.timestamp == datetime(2027, 3, 2, 8, 30, tzinfo=UTC) and ada.timestamp_source == "zip"
    assert bob.timestamp == datetime(2027, 7, 1, 10, 0, tzinfo=UTC)  # summer time: UTC+2
    assert notes == []


def test_same_canvas_name_two_user_ids_are_two_students(tmp_path):
    _write(tmp_path / "root" / f"smithjo_111_1_{NOTEBOOK}")
    _write(tmp_path / "root" / f"smithjo_222_2_{NOTEBOOK}")
    found, _ = _collect(tmp_path / "root")
    assert sorted((s.student, s.lms_id, s.name, bool(s.path)) for s in found) == [
        ("111", "111", "smithjo", True),
        ("222", "222", "smithjo", True),
    ]


def test_anonymous_canvas_names(tmp_path):
    _write(tmp_path / "root" / f"anon_X7k2p_5678_{NOTEBOOK}")
    _write(tmp_path / "root" / f"LATE_anon_Q9z1a_5679_{NOTEBOOK}")
    found, _ = _collect(tmp_path / "root")
    assert sorted((s.student, s.lms_id, s.late_marker) for s in found) == [
        ("anon_Q9z1a", "anon_Q9z1a", True),
        ("anon_X7k2p", "anon_X7k2p", False),
    ]


def test_regexp_timestamp_beats_zip_and_timestamp_txt_is_never_read(tmp_path):
    """A timestamp.txt in a student's folder is the student's own file: the zip's time counts, and the note
    says why the file was not read."""
    _write(tmp_path / "nb.ipynb")
    archive = tmp_path / "class.zip"
    (tmp_path / "stamp.txt").write_text("2027-03-01 21:00:00.000000 UTC\n")
    when = (2027, 3, 5, 0, 0, 0)
    _zip(
        archive,
        [
            (f"ada/{FIRST}/{NOTEBOOK}", tmp_path / "nb.ipynb", when),
            (f"ada/{FIRST}/timestamp.txt", tmp_path / "stamp.txt", when),
            (f"bob/{FIRST}/{NOTEBOOK}", tmp_path / "nb.ipynb", when),
        ],
    )
    found, notes = _collect(intake.unpack(archive, tmp_path / "scratch"), time_zone="UTC")
    by_student = {s.student: s for s in found}
    assert by_student["ada"].timestamp == datetime(2027, 3, 5, tzinfo=UTC)
    assert by_student["ada"].timestamp_source == "zip"
    assert by_student["bob"].timestamp == datetime(2027, 3, 5, tzinfo=UTC)
    assert [(n.student, n.file) for n in notes] == [("ada", f"ada/{FIRST}/timestamp.txt")]
    assert notes[0].note.startswith("not read") and not by_student["ada"].problem
    flat = tmp_path / "flat"
    _write(flat / f"{NOTEBOOK[:-6]}-by-cy-at-2027-03-02-10-00-00.ipynb")
    found, _ = _collect(
        flat, time_zone="UTC", student_regexp=r".*-by-(?P<student_id>\w+)-at-(?P<timestamp>[\d-]+)\.ipynb$"
    )
    assert found[0].timestamp == datetime(2027, 3, 2, 10, tzinfo=UTC)
    assert found[0].timestamp_source == "file name"


def test_folder_has_no_time(tmp_path):
    _write(tmp_path / "ada" / FIRST / NOTEBOOK)
    (tmp_path / "ada" / FIRST / "timestamp.txt").write_text("2020-01-01 00:00:00 UTC")
    _write(tmp_path / "bob" / FIRST / NOTEBOOK)
    found, notes = _collect(tmp_path, time_zone="UTC")
    assert [s.timestamp for s in found] == [None, None]
    assert len(notes) == 1 and "not read" in notes[0].note and notes[0].student == "ada"


def test_write_students(tmp_path):
    _write(tmp_path / "root" / f"lovelaceada_LATE_1234_5678_{NOTEBOOK}")
    _write(tmp_path / "root" / "Grace Hopper_77_assignsubmission_file_" / NOTEBOOK)
    found, _ = _collect(tmp_path / "root")
    intake.write_students(found, tmp_path / "students.csv")
    rows = intake.read_students(tmp_path / "students.csv")
    assert rows == [
        {"student": "1234", "lms_id": "1234", "email": "", "name": "lovelaceada", "lms": "canvas"},
        {"student": "participant_77", "lms_id": "77", "email": "", "name": "Grace Hopper", "lms": "moodle"},
    ]
    flat = tmp_path / "flat"
    _write(flat / f"ada.lovelace@example.edu--Ada--Lovelace--{NOTEBOOK}")
    found, _ = _collect(
        flat,
        student_regexp=r"^(?P<email>(?P<student_id>[^@]+)@[^-]+)--(?P<first_name>\w+)--"
        r"(?P<last_name>\w+)--(?P<file_id>.+)$",
    )
    intake.write_students(found, tmp_path / "students2.csv")
    assert intake.read_students(tmp_path / "students2.csv") == [
        {
            "student": "ada.lovelace",
            "lms_id": "",
            "email": "ada.lovelace@example.edu",
            "name": "Ada Lovelace",
            "lms": "",
        }
    ]
