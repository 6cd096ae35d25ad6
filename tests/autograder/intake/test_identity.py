"""Who a student is, and when they submitted, come from the LMS, never from what a student controls.

Zips are laid out as the LMSs write them: Moodle's "Download all submissions" puts each participant's files in
`<full name>_<participant id>_assignsubmission_file_/` (mod/assign, download_submissions), with each file's
upload time as its zip time; Canvas's names each file `<sortable name>_[LATE_]<user id>_<attachment id>_<file>`
(canvas-lms lib/content_zipper.rb).
"""

import csv
import hashlib
import os
import zipfile
from datetime import UTC, datetime

import nbformat
import pytest
from cli import run_grade
from hostile_corpus import ASSIGNMENT, NOTEBOOK, WRONG_THRESHOLD, cell_by_grade_id, solved, untouched

from autograder.batch import seeds
from autograder.commands import export as exporting
from autograder.intake import submissions as intake
from autograder.layout import REPO, SOURCE, assignments, notebooks
from autograder.lms.moodle import NO_ID_NUMBER
from autograder.term import late

EXPECTED = {a: notebooks(a) for a in assignments()}
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\u202eevil\u200b"  # title, clear screen, colour, bidi, zero-width


def _zip(archive, members):
    """members: (name in the zip, notebook or bytes, zip time as a 6-tuple)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content, when in members:
            data = content if isinstance(content, bytes) else nbformat.writes(content).encode()
            zf.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return archive


def _collect(archive, scratch, **kwargs):
    root = intake.unpack(archive, scratch, **{k: v for k, v in kwargs.items() if k == "student_regexp"})
    return intake.collect(root, [ASSIGNMENT], EXPECTED, SOURCE, time_zone="UTC", **kwargs)


def _course(tmp_path, text):
    path = tmp_path / "course.toml"
    path.write_text('[course]\ntime_zone = "UTC"\n[late]\nplugin = "autograder.term.late.PerDayPenalty"\n' + text)
    return late.load_config(path)


WHEN = (2027, 3, 2, 10, 0, 0)


def test_moodle_namesakes_stay_two_students(tmp_path):
    """Two participants called John Smith (one renamed himself after the other) are two students; neither
    notebook is a "duplicate"."""
    archive = _zip(
        tmp_path / "moodle.zip",
        [
            (f"John Smith_101_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN),
            (f"John Smith_102_assignsubmission_file_/{NOTEBOOK}", untouched(), WHEN),
            (f"Ada Lovelace_103_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN),
        ],
    )
    found, notes = _collect(archive, tmp_path / "scratch")
    by_student = {s.student: s for s in found}
    assert sorted(by_student) == ["participant_101", "participant_102", "participant_103"]
    assert all(s.path is not None and not s.problem for s in found), [s.problem for s in found]
    assert [by_student[f"participant_{i}"].name for i in (101, 102, 103)] == [
        "John Smith",
        "John Smith",
        "Ada Lovelace",
    ]
    assert notes == []


def test_a_canvas_namesake_changes_nobody_elses_id_seed_or_extension(tmp_path):
    """smithjohn's id, seed and extension are the same whether or not a second smithjohn submits."""
    config = _course(
        tmp_path, '[due]\n"01_databases" = "2027-03-01 23:00"\n[extensions.1234]\n"01_databases" = "2027-03-03 23:00"\n'
    )
    secret = b"a test secret"
    late_time = (2027, 3, 2, 12, 0, 0)  # late, but within John's extension
    alone = _zip(tmp_path / "first.zip", [(f"smithjohn_1234_777_{NOTEBOOK}", solved(), late_time)])
    both = _zip(
        tmp_path / "second.zip",
        [
            (f"smithjohn_1234_777_{NOTEBOOK}", solved(), late_time),
            (f"smithjohn_LATE_5001_778_{NOTEBOOK}", solved(), late_time),
        ],
    )
    first, _ = _collect(alone, tmp_path / "a")
    intake.write_students(first, tmp_path / "students.csv")
    second, _ = _collect(both, tmp_path / "b")
    intake.check_ids_unchanged(tmp_path / "students.csv", second)  # nothing renamed
    (john_alone,) = first
    john, namesake = sorted(second, key=lambda s: s.student)
    assert john.student == john_alone.student == "1234" and namesake.student == "5001"
    assert john.name == namesake.name == "smithjohn"
    assert seeds.derive_seed(secret, john.student, ASSIGNMENT) == seeds.derive_seed(secret, "1234", ASSIGNMENT)
    assert late.assess(john, 5.0, 5.0, config).penalty == 0  # his extension still applies
    assert late.assess(namesake, 5.0, 5.0, config).penalty == pytest.approx(0.5)  # no extension: one day late


@pytest.mark.slow  # starts a kernel
def test_an_out_graded_under_the_old_ids_is_refused_with_a_message(tmp_path):
    """Earlier versions named Canvas students by sortable name and Moodle ones by full name: grading into
    such an OUT would orphan their rows and manual grades, so it stops and says what to do."""
    (tmp_path / "students.csv").write_text("student,lms_id,email,name\nsmithjohn,1234,,\nAda Lovelace,,,Ada Lovelace\n")
    canvas = _zip(tmp_path / "c.zip", [(f"smithjohn_1234_777_{NOTEBOOK}", solved(), WHEN)])
    found, _ = _collect(canvas, tmp_path / "c")
    with pytest.raises(ValueError, match=r"'smithjohn' -> 1234.*new OUT folder"):
        intake.check_ids_unchanged(tmp_path / "students.csv", found)
    moodle = _zip(tmp_path / "m.zip", [(f"Ada Lovelace_103_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN)])
    found, _ = _collect(moodle, tmp_path / "m")
    with pytest.raises(ValueError, match="'Ada Lovelace' -> participant_103"):
        intake.check_ids_unchanged(tmp_path / "students.csv", found)


@pytest.mark.parametrize("layout", ["moodle", "folders"])
def test_an_uploaded_timestamp_txt_does_not_remove_a_late_penalty(tmp_path, layout):
    """A late student uploads timestamp.txt saying "yesterday": the LMS's own time (the zip's) still counts."""
    config = _course(tmp_path, '[due]\n"01_databases" = "2027-03-01 23:00"\n')
    yesterday = b"2027-03-01 12:00:00.000000 UTC\n"
    late_time = (2027, 3, 4, 12, 0, 0)
    folder = {"moodle": "Eve Late_201_assignsubmission_file_", "folders": f"eve/{ASSIGNMENT}"}[layout]
    innocent = {"moodle": "Ada Lovelace_202_assignsubmission_file_", "folders": f"ada/{ASSIGNMENT}"}[layout]
    archive = _zip(
        tmp_path / "class.zip",
        [
            (f"{folder}/{NOTEBOOK}", solved(), late_time),
            (f"{folder}/timestamp.txt", yesterday, late_time),
            (f"{innocent}/{NOTEBOOK}", solved(), (2027, 3, 1, 20, 0, 0)),
        ],
    )
    found, notes = _collect(archive, tmp_path / "scratch")
    eve, ada = sorted(found, key=lambda s: s.name or s.student, reverse=True)
    assert eve.timestamp == datetime(2027, 3, 4, 12, tzinfo=UTC) and eve.timestamp_source == "zip"
    assert late.assess(eve, 10.0, 10.0, config).penalty == pytest.approx(3.0)  # 3 started days x 10%
    assert late.assess(ada, 10.0, 10.0, config).penalty == 0
    assert [n.file.rsplit("/", 1)[-1] for n in notes] == ["timestamp.txt"] and "not read" in notes[0].note


def _out(tmp_path, found, scores):
    """An OUT as grade writes it, for `found` (intake's submissions) and {student: score of 01_databases}."""
    out = tmp_path / "out"
    out.mkdir()
    intake.write_students(found, out / "students.csv")
    with open(out / "grades.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "assignment", "notebook", "cell", "kind", "score", "max_score", "reason"])
        for student, score in scores.items():
            writer.writerow([student, ASSIGNMENT, NOTEBOOK, "test_a", "auto", score, 6, ""])
    return out


def test_a_participant_named_after_a_classmates_email_does_not_take_the_classmates_row(tmp_path):
    """Mallory calls himself bob@example.edu (and 1002, Bob's ID number) in Moodle. Neither the grade export
    nor the grading worksheet gives Bob's row Mallory's grade; Bob's own row gets Bob's."""
    archive = _zip(
        tmp_path / "moodle.zip",
        [
            (f"bob@example.edu_301_assignsubmission_file_/{NOTEBOOK}", untouched(), WHEN),
            (f"1002_302_assignsubmission_file_/{NOTEBOOK}", untouched(), WHEN),
            (f"Bob Babbage_303_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN),
        ],
    )
    found, _ = _collect(archive, tmp_path / "scratch")
    out = _out(tmp_path, found, {"participant_301": 0, "participant_302": 1, "participant_303": 6})
    config = _course(tmp_path, "")
    gradebook = tmp_path / "moodle_grades.csv"
    gradebook.write_text(
        "First name,Last name,ID number,Institution,Department,Email address,"
        "Assignment: 01_databases (Real)\n"
        "Bob,Babbage,1002,Example University,CS,bob@example.edu,-\n"
    )
    summary = exporting.export(out, "moodle", tmp_path / "import.csv", gradebook, config)
    rows = list(csv.reader(open(tmp_path / "import.csv", newline="")))
    assert rows[1][6] == "-" and summary.exported == 0  # Moodle's own value kept: no participant id matches it
    assert len(summary.not_on_roster) == 3
    worksheet = tmp_path / "worksheet.csv"
    worksheet.write_text(
        "Identifier,Full name,Email address,Status,Grade,Maximum Grade,Grade can be changed\n"
        "Participant 303,Bob Babbage,bob@example.edu,Submitted,,6.00,Yes\n"
        "Participant 301,bob@example.edu,mallory@example.edu,Submitted,,6.00,Yes\n"
        "Participant 302,1002,mallory2@example.edu,Submitted,,6.00,Yes\n"
    )
    summary = exporting.export(out, "moodle", tmp_path / "filled.csv", worksheet, config)
    grades = {row[0]: row[4] for row in csv.reader(open(tmp_path / "filled.csv", newline=""))}
    assert grades == {"Identifier": "Grade", "Participant 303": "6", "Participant 301": "0", "Participant 302": "1"}
    assert summary.exported == 3 and summary.not_on_roster == []


def test_moodle_export_needs_an_lms_id_not_an_email(tmp_path):
    """A roster with emails only cannot be matched; a Moodle participant has no ID number, so the plain
    Moodle file lists him rather than writing his participant id where an ID number belongs."""
    archive = _zip(tmp_path / "moodle.zip", [(f"Bob Babbage_303_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN)])
    found, _ = _collect(archive, tmp_path / "scratch")
    out = _out(tmp_path, found, {"participant_303": 6})
    emails = tmp_path / "emails.csv"
    emails.write_text("First name,Last name,Email address,Assignment: 01_databases (Real)\nBob,B,bob@x.edu,-\n")
    with pytest.raises(ValueError, match="not matched by email"):
        exporting.export(out, "moodle", tmp_path / "x.csv", emails, _course(tmp_path, ""))
    summary = exporting.export(out, "moodle", tmp_path / "plain.csv", None, _course(tmp_path, ""))
    assert list(csv.reader(open(tmp_path / "plain.csv", newline=""))) == [["ID number", "Email address", ASSIGNMENT]]
    assert summary.withheld == [("participant_303", ASSIGNMENT, NO_ID_NUMBER)]


def test_a_worksheet_is_one_assignments(tmp_path):
    archive = _zip(tmp_path / "moodle.zip", [(f"Bob Babbage_303_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN)])
    found, _ = _collect(archive, tmp_path / "scratch")
    out = _out(tmp_path, found, {"participant_303": 6})
    with open(out / "grades.csv", "a", newline="") as file:
        csv.writer(file).writerow(
            ["participant_303", "02_differencing", "02_differencing.ipynb", "t", "auto", 1, 1, ""]
        )
    worksheet = tmp_path / "worksheet.csv"
    worksheet.write_text("Identifier,Full name,Grade\nParticipant 303,Bob Babbage,\n")
    with pytest.raises(ValueError, match="grading worksheet"):
        exporting.export(out, "moodle", tmp_path / "x.csv", worksheet, _course(tmp_path, ""))


def test_canvas_roster_is_matched_by_user_id_only(tmp_path):
    """A Moodle participant id that equals a Canvas user id is not that Canvas student."""
    moodle = _zip(tmp_path / "m.zip", [(f"Ada_1001_assignsubmission_file_/{NOTEBOOK}", untouched(), WHEN)])
    canvas = _zip(tmp_path / "c.zip", [(f"lovelaceada_1002_9_{NOTEBOOK}", solved(), WHEN)])
    found = _collect(moodle, tmp_path / "m")[0] + _collect(canvas, tmp_path / "c")[0]
    out = _out(tmp_path, found, {"participant_1001": 0, "1002": 6})
    roster = tmp_path / "canvas.csv"
    roster.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,01_databases\n"
        '"Lovelace, Ada",1001,S1,ada,DP,\n"Babbage, Bob",1002,S2,bob,DP,\n'
    )
    exporting.export(out, "canvas", tmp_path / "filled.csv", roster, _course(tmp_path, ""))
    rows = {row[1]: row[5] for row in csv.reader(open(tmp_path / "filled.csv", newline=""))}
    assert rows["1001"] == "" and rows["1002"] == "6"


@pytest.mark.parametrize(
    "raw",
    [
        HOSTILE,
        "-rf",
        "..",
        "a\\b",
        "tab\there",
        "x" * 101,
        " padded",
        "line\u2028break",
        "nbsp\u00a0name",
        # formgrader prints the id as HTML; nbgrader globs the submitted folder
        "<img src=x onerror=alert(document.cookie)>",
        "Lee [2]",
        "a*b?",
        "@SUM(1)",
        # a stand-in's form, which would take the student it stands for
        "student_9adaa876a241",
    ],
)
def test_a_hostile_id_is_mapped_to_a_stable_safe_one(tmp_path, raw):
    """Folder names a terminal, a file system or a spreadsheet could misread become `student_<hash>`, the
    original kept as the name; the innocent student beside them keeps his id."""
    regexp = r"^(?P<student_id>.+)--(?P<file_id>.+)$"
    archive = _zip(
        tmp_path / "class.zip", [(f"{raw}--{NOTEBOOK}", solved(), WHEN), (f"ada--{NOTEBOOK}", solved(), WHEN)]
    )
    found, notes = _collect(archive, tmp_path / "scratch", student_regexp=regexp)
    again, _ = _collect(archive, tmp_path / "again", student_regexp=regexp)
    hostile, ada = sorted(found, key=lambda s: s.student != "ada", reverse=True)
    assert ada.student == "ada" and not ada.problem
    assert hostile.student.startswith("student_") and hostile.name == raw and not hostile.problem
    assert hostile.student != raw
    assert [s.student for s in again] == [s.student for s in found]  # the same id every run
    (note,) = notes
    assert note.student == hostile.student and note.note.startswith("student id ")
    assert all(ch.isprintable() for ch in note.note + note.file), note


def test_hostile_folder_names_are_mapped_and_hidden_folders_listed(tmp_path):
    for name in (HOSTILE, "-r", "ada"):
        path = tmp_path / "class" / name / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(solved(), path)
    (tmp_path / "class" / ".eve" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(solved(), tmp_path / "class" / ".eve" / ASSIGNMENT / NOTEBOOK)
    found, notes = intake.collect(tmp_path / "class", [ASSIGNMENT], EXPECTED, SOURCE, time_zone="UTC")
    assert sorted(s.name for s in found) == sorted(["", "-r", HOSTILE])
    assert all(s.student == "ada" or s.student.startswith("student_") for s in found)
    assert all(not s.problem for s in found)
    assert [n.file for n in notes if n.student == "(hidden folder)"] == [".eve"]
    assert all(ch.isprintable() for n in notes for ch in n.note + n.file)


@pytest.fixture(scope="module")
def graded_moodle_class(tmp_path_factory):
    """One real grading run: namesakes and a hostile name in a Moodle zip."""
    root = tmp_path_factory.mktemp("moodle_class")
    wrong = solved()
    cell_by_grade_id(wrong, "threshold_query").source = WRONG_THRESHOLD
    archive = _zip(
        root / "moodle.zip",
        [
            (f"John Smith_101_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN),
            (f"John Smith_102_assignsubmission_file_/{NOTEBOOK}", wrong, WHEN),
            (f"{HOSTILE}_103_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN),
        ],
    )
    environment = {**os.environ, "DP_COURSE_DATA": os.environ.get("DP_COURSE_DATA", str(REPO / "data"))}
    result = run_grade(
        str(archive),
        str(root / "out"),
        "--assignment",
        ASSIGNMENT,
        timeout=900,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out"


@pytest.mark.slow  # starts a kernel
def test_namesakes_graded_end_to_end_keep_their_own_grades(graded_moodle_class):
    rows = list(csv.DictReader(open(graded_moodle_class / "grades.csv", newline="")))
    auto = {}
    for row in rows:
        if row["kind"] == "auto":
            auto.setdefault(row["student"], {})[row["cell"]] = (float(row["score"]), float(row["max_score"]))
    assert sorted(auto) == ["participant_101", "participant_102", "participant_103"]
    for student in ("participant_101", "participant_103"):
        assert all(score == top for score, top in auto[student].values()), auto[student]
    lost = [cell for cell, (score, top) in auto["participant_102"].items() if score < top]
    assert lost == ["test_threshold_query"]
    assert not any("duplicate" in row["reason"] for row in rows)
    names = {row["student"]: row["name"] for row in intake.read_students(graded_moodle_class / "students.csv")}
    assert names["participant_101"] == names["participant_102"] == "John Smith"
    assert names["participant_103"] == HOSTILE  # kept, for display only
    assert (graded_moodle_class / "feedback" / "participant_103" / ASSIGNMENT).is_dir()


def test_moodle_files_without_folders_are_read_by_participant_id(tmp_path):
    """Without "download submissions in folders" Moodle names each file `<name>_<id>_assignsubmission_file_<file>`;
    a name has no underscore (Moodle makes them spaces), so a file named like another participant's changes
    nothing."""
    archive = _zip(
        tmp_path / "moodle.zip",
        [
            (f"Export/John Smith_101_assignsubmission_file_{NOTEBOOK}", solved(), WHEN),
            (f"Export/John Smith_102_assignsubmission_file_{NOTEBOOK}", untouched(), WHEN),
            (f"Export/Eve_103_assignsubmission_file_x_101_assignsubmission_file_{NOTEBOOK}", solved(), WHEN),
        ],
    )
    found, notes = _collect(archive, tmp_path / "scratch")
    assert sorted((s.student, s.name, bool(s.path), s.problem) for s in found) == [
        ("participant_101", "John Smith", True, ""),
        ("participant_102", "John Smith", True, ""),
        ("participant_103", "Eve", True, ""),
    ]
    assert notes == []


def test_a_moodle_participant_named_like_an_old_folder_student_does_not_stop_the_batch(tmp_path):
    """A row of the `<student>/...` layout (no LMS id, no name) is no earlier Moodle id."""
    (tmp_path / "students.csv").write_text("student,lms_id,email,name,lms\nada,,,,\n")
    archive = _zip(tmp_path / "m.zip", [(f"ada_104_assignsubmission_file_/{NOTEBOOK}", solved(), WHEN)])
    found, _ = _collect(archive, tmp_path / "m")
    intake.check_ids_unchanged(tmp_path / "students.csv", found)


def test_an_id_in_a_stand_ins_form_cannot_take_the_student_it_stands_for(tmp_path):
    """A student whose folder name needs a stand-in, and an attacker who names his folder after that
    stand-in (anyone can compute the hash): two students, the victim graded on his own notebook."""
    victim = "Ana Lima "  # a trailing space: mapped
    stand_in = "student_" + hashlib.sha256(victim.encode()).hexdigest()[:12]
    wrong = solved()
    cell_by_grade_id(wrong, "threshold_query").source = WRONG_THRESHOLD
    for name, nb in ((victim, solved()), (stand_in, wrong)):
        path = tmp_path / "class" / name / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    found, _ = intake.collect(tmp_path / "class", [ASSIGNMENT], EXPECTED, SOURCE, time_zone="UTC")
    by_name = {s.name or s.student: s for s in found}
    assert len(found) == 2 and not any(s.problem for s in found)
    assert by_name[victim].student == stand_in and by_name[stand_in].student not in (stand_in, victim)
    assert by_name[victim].path.parent.parent.name == victim
