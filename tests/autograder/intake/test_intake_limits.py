"""Every input is bounded before it is parsed: a notebook's size and cell count, a zip's members and sizes.

A student controls the size and shape of the notebook (about 100 times smaller zipped when its cells are
empty); the grader must refuse what is over the limits before it builds anything, and grade the innocent
students beside it as usual.
"""

import json
import time
import tracemalloc
import zipfile

import nbformat
import pytest
from cli import run_grade
from hostile_corpus import ASSIGNMENT, NOTEBOOK, solved

from autograder.intake import submissions as intake
from autograder.layout import SOURCE, assignments, notebooks
from autograder.settings import Grading, load_grading

EXPECTED = {a: notebooks(a) for a in assignments()}
EMPTY_CELL = '{"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": []}'


def _many_cells(count: int, key: str = '"cells"', extra: str = "") -> bytes:
    cells = ", ".join([EMPTY_CELL] * count)
    return (f'{{{extra}"metadata": {{}}, "nbformat": 4, "nbformat_minor": 5, {key}: [{cells}]}}').encode()


def _class(root, hostile: bytes, name: str = NOTEBOOK):
    """ada (innocent, solved) and eve, whose notebook is `hostile`."""
    for student in ("ada", "eve"):
        (root / student / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(solved(), root / "ada" / ASSIGNMENT / NOTEBOOK)
    (root / "eve" / ASSIGNMENT / name).write_bytes(hostile)
    return root


def _collect(root, limits=None):
    limits = limits or load_grading()
    found, notes = intake.collect(root, [ASSIGNMENT], EXPECTED, SOURCE, time_zone="UTC", limits=limits)
    return {s.student: s for s in found}, notes


def _collect_measured(root):
    """What intake found, the CPU seconds it took and the most memory its Python objects held at once.

    CPU seconds of this process, not wall-clock ones: other jobs on a shared machine slow the clock, not the
    work intake does, and a parser that builds what it should refuse costs CPU either way."""
    tracemalloc.start()
    started = time.process_time()
    try:
        found, _ = _collect(root)
        return found, time.process_time() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_defaults_are_grading_settings_and_fit_the_course():
    settings = Grading()
    largest = max(
        (SOURCE.parent / "release" / a / nb for a in assignments() for nb in notebooks(a)),
        key=lambda path: path.stat().st_size,
    )
    cells = len(json.loads(largest.read_text())["cells"])
    assert largest.stat().st_size * 100 < settings.notebook_size_limit and cells * 100 < settings.notebook_cell_limit


def test_200000_empty_cells_are_refused_in_seconds_without_building_them(tmp_path):
    """17.6 MB of empty cells took nbformat 340 s and 2 GB; now they are counted by a streaming scan that
    stops at the limit, and the innocent student is graded as usual."""
    hostile = _many_cells(200_000)
    assert 17_000_000 < len(hostile) < 19_000_000  # about 88 bytes a cell
    root = _class(tmp_path / "class", hostile)
    found, elapsed, peak = _collect_measured(root)
    assert elapsed < 10, f"intake took {elapsed:.1f} s"
    assert peak < 64 * 1024**2, f"intake built {peak / 1024**2:.0f} MB of Python objects"
    # 200,000 cells are also more than a million JSON values, the cap the byte scan meets first.
    assert found["eve"].problem.startswith("malformed notebook: more than 1,000,000 JSON values")
    assert "Grading.notebook_value_limit" in found["eve"].problem and found["eve"].path is not None
    assert found["ada"].problem == "" and found["ada"].path is not None


@pytest.mark.parametrize("shape", ["escaped key", "NaN first", "nbformat 3"])
def test_the_cell_count_cannot_be_hidden_from_the_scan(tmp_path, shape):
    """A key spelled with a JSON escape, a NaN (Python's json reads it, a strict parser stops there), an
    old-format notebook: each still counts as too many cells."""
    if shape == "escaped key":
        hostile = _many_cells(10_001, key='"\\u0063ells"')
    elif shape == "NaN first":
        hostile = _many_cells(10_001, extra='"x": NaN, ')
    else:
        cells = ", ".join(
            '{"cell_type": "code", "input": [], "outputs": [], "language": "python"}' for _ in range(10_001)
        )
        hostile = (
            f'{{"metadata": {{}}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{{"cells": [{cells}]}}]}}'.encode()
        )
    found, _ = _collect(_class(tmp_path / "class", hostile))
    assert "Grading.notebook_cell_limit" in found["eve"].problem, found["eve"].problem
    assert found["ada"].problem == ""


def test_a_notebook_under_the_cell_limit_with_a_nan_is_still_read(tmp_path):
    nb = json.loads(nbformat.writes(solved()))
    nb["metadata"]["x"] = float("nan")
    found, _ = _collect(_class(tmp_path / "class", json.dumps(nb).encode()))
    assert found["eve"].problem == ""


def test_a_notebook_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    read = []
    original = intake._read_quietly
    monkeypatch.setattr(intake, "_read_quietly", lambda path: read.append(path.parent.parent.name) or original(path))

    def read_submitted():  # not the source notebooks
        return [name for name in read if name in ("ada", "eve")]

    # Renamed, so that only its cell ids could say which notebook it is: they are not read either.
    root = _class(tmp_path / "class", nbformat.writes(solved()).encode() + b" " * 200_000, name=f"eve_{NOTEBOOK}")
    limits = load_grading(notebook_size_limit=150_000)
    found, notes = _collect(root, limits)
    assert (
        found["eve"].problem.startswith("malformed notebook: ")
        and "Grading.notebook_size_limit" in found["eve"].problem
    )
    assert "150,000 bytes" in found["eve"].problem and notes == []
    assert read_submitted() == ["ada"]  # nbformat never saw eve's notebook
    assert found["ada"].problem == ""


def _zipped(archive, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return archive


def test_a_zip_bomb_member_is_not_extracted(tmp_path):
    """A member of 64 MB of spaces (64 KB compressed): its size is read from the zip's directory and it is
    never written; the student's notebook scores 0 as malformed, the others are graded."""
    bomb = nbformat.writes(solved()).encode() + b" " * (64 * 1024**2)
    archive = _zipped(
        tmp_path / "class.zip",
        [
            (f"eve/{ASSIGNMENT}/{NOTEBOOK}", bomb),
            (f"ada/{ASSIGNMENT}/{NOTEBOOK}", nbformat.writes(solved())),
            ("eve/data.bin", b"\0" * (40 * 1024**2)),
        ],
    )
    assert archive.stat().st_size < 1024**2
    root = intake.unpack(archive, tmp_path / "scratch")
    assert (root / "eve" / ASSIGNMENT / NOTEBOOK).stat().st_size == 0 and (
        root / "eve" / "data.bin"
    ).stat().st_size == 0
    found, notes = _collect(root)
    assert found["eve"].problem.startswith("malformed notebook: 67,")
    assert "over Grading.notebook_size_limit" in found["eve"].problem and "not extracted" in found["eve"].problem
    assert [n.file for n in notes] == ["eve/data.bin"] and "not extracted" in notes[0].note
    assert found["ada"].problem == ""


@pytest.mark.parametrize(
    "limits, message",
    [
        (load_grading(zip_member_limit=3), "Grading.zip_member_limit"),
        (load_grading(zip_size_limit=1000), "Grading.zip_size_limit"),
    ],
)
def test_a_zip_over_its_limits_is_refused_before_extraction(tmp_path, limits, message):
    archive = _zipped(tmp_path / "class.zip", [(f"s{i}/{NOTEBOOK}", b"x" * 300) for i in range(4)])
    with pytest.raises(ValueError, match=message):
        intake.unpack(archive, tmp_path / "scratch", limits=limits)
    assert not (tmp_path / "scratch").exists()


def test_members_compressed_unlike_an_lms_are_not_extracted(tmp_path):
    """bzip2 can expand a few bytes into gigabytes in memory before zipfile cuts it at the declared size."""
    archive = _zipped(
        tmp_path / "class.zip", [(f"eve/{ASSIGNMENT}/{NOTEBOOK}", nbformat.writes(solved()))], zipfile.ZIP_BZIP2
    )
    found, _ = _collect(intake.unpack(archive, tmp_path / "scratch"))
    assert "compressed with method 12" in found["eve"].problem


def test_a_damaged_member_is_listed_and_the_batch_goes_on(tmp_path):
    archive = _zipped(
        tmp_path / "class.zip",
        [
            (f"eve/{ASSIGNMENT}/{NOTEBOOK}", nbformat.writes(solved())),
            (f"ada/{ASSIGNMENT}/{NOTEBOOK}", nbformat.writes(solved())),
        ],
    )
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"eve/{ASSIGNMENT}/{NOTEBOOK}")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10 : start + 20] = b"\xff" * 10  # corrupt eve's deflated data
    archive.write_bytes(bytes(data))
    found, _ = _collect(intake.unpack(archive, tmp_path / "scratch"))
    assert "could not be extracted" in found["eve"].problem and found["ada"].problem == ""


@pytest.mark.slow  # starts a kernel
def test_grade_refuses_a_200000_cell_notebook_and_grades_the_class(tmp_path):
    """Through the CLI: eve's notebook scores 0 with the cap as its reason, the run stays fast and small,
    and the innocent student beside her is graded as usual."""
    import csv
    import os
    import resource

    from autograder.layout import REPO

    root = _class(tmp_path / "class", _many_cells(200_000))
    started = time.perf_counter()
    result = run_grade(
        str(root),
        str(tmp_path / "out"),
        "--assignment",
        ASSIGNMENT,
        timeout=600,
        env={**os.environ, "DP_COURSE_DATA": os.environ.get("DP_COURSE_DATA", str(REPO / "data"))},
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "out" / "grades.csv", newline="")))
    eve = [r for r in rows if r["student"] == "eve"]
    assert eve and all(
        r["score"] in ("0", "") and "Grading.notebook_value_limit" in r["reason"] for r in eve if r["kind"] == "auto"
    )
    ada = [r for r in rows if r["student"] == "ada" and r["kind"] == "auto"]
    assert ada and all(r["score"] == r["max_score"] for r in ada), ada
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child so far
    print(f"\ngrade with a 200,000-cell notebook: {elapsed:.1f} s, largest process {peak / 1024**2:.0f} MB")
    assert elapsed < 150 and peak < 2 * 1024**3  # nbformat alone took 340 s and 2 GB for it


def test_deep_nesting_is_refused_before_any_parser_sees_it(tmp_path):
    """A streaming parser keeps a path per level, so 30,000 levels (60 KB) took 2.3 GB and 3 million levels
    (6 MB) exhausted the host; the bytes are measured first, in bounded memory."""
    hostile = b'{"metadata": {"x": ' + b"[" * 3_000_000 + b"]" * 3_000_000 + b'}, "cells": []}'
    root = _class(tmp_path / "class", hostile)
    found, elapsed, peak = _collect_measured(root)
    assert elapsed < 20, f"intake took {elapsed:.1f} s"
    assert peak < 200 * 1024**2, f"intake used {peak / 1024**2:.0f} MB"
    assert "more than 100 levels deep, over Grading.notebook_depth_limit" in found["eve"].problem
    assert found["ada"].problem == ""


def test_many_empty_outputs_are_refused_before_nbformat_builds_them(tmp_path):
    """The cell limit does not bound outputs: 100,000 empty outputs in one cell (318 KB) cost nbformat 136 s
    and 4.6 GB. They count as JSON values, measured from the bytes."""
    nb = json.loads(nbformat.writes(solved()))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{}] * 1_000_001
    root = _class(tmp_path / "class", json.dumps(nb).encode())
    started = time.perf_counter()
    found, _ = _collect(root)
    assert time.perf_counter() - started < 20
    assert "Grading.notebook_value_limit" in found["eve"].problem
    assert found["ada"].problem == ""


def test_the_json_shape_ignores_brackets_and_commas_inside_strings():
    assert intake.json_shape(b'{"a": "[[[,,,{{{\\"]]]", "b": [1, 2, [3]]}', 100, 10) == (7, 3)
    assert intake.json_shape(b'["\\\\", "]"]', 100, 10) == (3, 1)  # an escaped backslash ends before the quote
    assert intake.json_shape(b"[" + b"0," * 200 + b"0]", 100, 10)[0] == 101  # the scan stops past the limit
    assert intake.json_shape(b"[" * 50 + b"]" * 50, 100, 10) == (12, 11)


def test_a_zip_member_whose_name_can_be_no_file_is_listed_and_the_batch_goes_on(tmp_path):
    """A name over the file system's 255 bytes (70 emoji are 280) made extraction raise and stopped every
    student's grading; now that member is a note and the others are graded."""
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"ada/{ASSIGNMENT}/{NOTEBOOK}", nbformat.writes(solved()))
        long_name = "\U0001f600" * 70 + ".ipynb"
        zipped.writestr(f"eve/{ASSIGNMENT}/{long_name}", nbformat.writes(solved()))
    root = intake.unpack(archive, tmp_path / "scratch")
    found, notes = _collect(root)
    assert found["ada"].problem == "" and found["ada"].path is not None
    assert any("could not be a file here" in n.note and "not extracted" in n.note for n in notes), notes
