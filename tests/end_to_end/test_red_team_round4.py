"""Red team, round 4: what a kernel's frames can make the grader's own process spend.

Ints (up to Grading.wire_int_bits_limit bits), floats, complex numbers and tuples hash without a salt, so a
kernel can send a set or dict whose keys all share one hash: each insertion then compares with every key
before it, and a frame well within the byte and value limits (1M keys, 13 MB) costs the grader hours of CPU,
in C code that holds the GIL, so the notebook's own watchdog cannot even stop it. The wire refuses such
frames: a dict of the frame itself may be keyed by str only, and a set or dict that `from_plain` rebuilds
may have few keys of one hash.
"""

from __future__ import annotations

import csv
import pickle
import time

import pytest
from cli import run_grade
from hostile_corpus import ASSIGNMENT, NOTEBOOK, _save, cell_by_grade_id, solved

from autograder.kernel_side import wire
from autograder.settings import load_grading

M = 2**61 - 1  # hash(n) == hash(n + k * M) for every int n
KEYS = 40_000  # about 9 s of grader CPU where nothing refuses them, a quick refusal otherwise
QUICK = 1.5  # seconds


def _codec() -> wire.Wire:
    return load_grading().wire


def _colliding_dict_frame(count: int) -> bytes:
    """A reply ("result", 1, ([], {k*M: None ...})) whose kwarg-states dict, a dict of the frame itself, has
    int keys that all share one hash (written by hand: building the dict to pickle it would be as slow)."""
    body = bytearray(b"\x80\x05" + pickle.SHORT_BINUNICODE + b"\x06result" + b"K\x01" + b"]" + b"}(")
    for i in range(1, count):
        key = (M * i).to_bytes(((M * i).bit_length() + 8) // 8, "little", signed=True)
        body += b"\x8a" + bytes([len(key)]) + key + b"N"
    return bytes(body + b"u\x86\x87.")


def _refused_quickly(action) -> None:
    started = time.perf_counter()
    with pytest.raises(wire.WireError):
        action()
    assert time.perf_counter() - started < QUICK


@pytest.mark.parametrize(
    "tree",
    [
        ("set", [M * i for i in range(1, KEYS)]),
        ("frozenset", [M * i for i in range(1, KEYS)]),
        ("dict", [(M * i, 0) for i in range(1, KEYS)]),
        # hash(complex(a, b)) == hash(a) + 1000003 * hash(b): 0 for every (1000003 i, -i)
        ("set", [("complex", 1000003.0 * i, -float(i)) for i in range(2, KEYS)]),
    ],
    ids=["set", "frozenset", "dict", "complex"],
)
def test_a_set_or_dict_of_colliding_keys_is_refused_before_it_is_built(tree):
    codec = _codec()
    frame = wire.dump_plain(("result", tree, ([], {})))
    assert len(frame) < codec.frame_bytes and 4 * KEYS < codec.values
    message = codec.load_plain(frame)
    _refused_quickly(lambda: codec.from_plain(message[1]))


def test_a_dict_of_the_frame_with_colliding_keys_is_refused_before_it_is_unpickled():
    codec = _codec()
    frame = _colliding_dict_frame(KEYS)
    assert len(frame) < codec.frame_bytes
    _refused_quickly(lambda: codec.load_plain(frame))


def test_plain_sets_and_dicts_still_cross():
    codec = _codec()
    value = {"a": {1, 2.5, (3, "x"), frozenset({-1, -2})}, 7: {M: 1, 2 * M + 5: 2}, (1, 2): [complex(1, -1)]}
    frame = wire.dump_plain(("result", codec.to_plain(value), ([None], {"rng": None, "x": None})))
    message = codec.load_plain(frame)
    assert codec.from_plain(message[1]) == value and message[2] == ([None], {"rng": None, "x": None})


ATTACK = """
import autograder.kernel_side.wire as _w
_plain = _w.dump_plain
def _crafted(count=150_000):
    M = 2**61 - 1
    body = bytearray(b"\\x80\\x05\\x8c\\x06resultK\\x01]}(")
    for i in range(1, count):
        key = (M * i).to_bytes(((M * i).bit_length() + 8) // 8, "little", signed=True)
        body += b"\\x8a" + bytes([len(key)]) + key + b"N"
    return bytes(body + b"u\\x86\\x87.")
def _dump(tree):
    return _crafted() if type(tree) is tuple and tree and tree[0] == "result" else _plain(tree)
_w.dump_plain = _dump
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_kernel_cannot_freeze_the_grader_with_colliding_keys(tmp_path):
    """Before the fix: a 2 MB reply held the grader's GIL for about 200 s, past the notebook's 80 s wall-clock
    backstop (its watchdog could not run), and a 13 MB one would hold it for hours."""
    submissions = tmp_path / "class"
    _save(solved(), submissions / "alice")
    attacker = solved()
    cell = cell_by_grade_id(attacker, "create_db")
    cell.source = ATTACK + "\n" + cell.source
    _save(attacker, submissions / "mallory")
    out = tmp_path / "out"
    started = time.monotonic()
    run_grade(submissions, out, "--assignment", ASSIGNMENT, "--timeout", "40", "--cell-timeout", "20", check=True)
    assert time.monotonic() - started < 200
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert {r["notebook"] for r in rows} == {NOTEBOOK}
    alice = [r for r in rows if r["student"] == "alice" and r["kind"] == "auto"]
    assert alice and all(r["score"] == r["max_score"] for r in alice)
    mallory = {r["cell"]: r for r in rows if r["student"] == "mallory"}
    assert mallory["test_create_db"]["score"] == "0"
    assert "key that is not a str" in mallory["test_create_db"]["reason"]
    seconds = {r["student"]: float(r["grading_seconds"]) for r in csv.DictReader((out / "inputs.csv").open())}
    assert seconds["mallory"] < 60


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_markdown_heading_cannot_take_the_anchor_of_a_graded_cell(tmp_path):
    """nbconvert gives a markdown heading the id of its text, so a student's `## cell-test_create_db` placed
    above the test cell took the summary's link `#cell-test_create_db` (the first id of a page wins): the
    instructor or student following "Failed cells" landed on the student's own words instead of the cell."""
    import nbformat

    submissions = tmp_path / "class"
    nb = solved()
    heading = nbformat.v4.new_markdown_cell("## cell-test_create_db\n\nThis test passed: 1 / 1.")
    nb.cells.insert(nb.cells.index(cell_by_grade_id(nb, "create_db")), heading)
    _save(nb, submissions / "mallory")
    out = tmp_path / "out"
    run_grade(submissions, out, "--assignment", ASSIGNMENT, check=True)
    page = (out / "feedback" / "mallory" / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")).read_text()
    assert page.count('id="cell-test_create_db"') == 1
