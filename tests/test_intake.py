"""Intake: folders, LMS zips (Canvas names, Moodle folders), renamed, duplicate and extra notebooks."""
import json
import zipfile

import nbformat

from autograder import intake
from autograder.paths import RELEASE, SOURCE, assignments, notebooks

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
    assert {s.student: bool(s.path) for s in found} == {"ada": True, "bob": True} and notes == []


def test_moodle_folders_and_custom_regexp(tmp_path):
    _write(tmp_path / "moodle" / "Ada Lovelace_991_assignsubmission_file_" / NOTEBOOK)
    found, _ = _collect(tmp_path / "moodle")
    assert [s.student for s in found] == ["Ada Lovelace"]
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
