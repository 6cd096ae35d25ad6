"""Every place a kernel can write is bounded by the one disk limit, and cleaned up without fail
(autograder.sandbox.bubblewrap's socket folder tmpfs, autograder.sandbox.cleanup, autograde.release_sandbox).

A submission that writes a tree thousands of levels deep, tens of thousands of files and files past the
limit into every writable place still gets its grade (never a grading error), the innocent graded beside
it keeps every point, and nothing of either private folder stays on the host."""

import csv
import os
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from cli import run_grade
from hostile_corpus import ASSIGNMENT, LITTER, MARKER, NOTEBOOK, cell_by_grade_id, solved

from autograder.batch import bundles, submission
from autograder.commands.grade import graded_cells
from autograder.layout import SOURCE
from autograder.pipeline import autograde
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox import cleanup
from autograder.settings import load_grading

needs_sandbox = pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=sandbox.unavailable_reason() or "ok")
DISK_LIMIT = 64 * 2**20


def _littering() -> nbformat.NotebookNode:
    nb = solved()
    cell = cell_by_grade_id(nb, "create_db")
    cell.source = LITTER.replace("{limit}", str(DISK_LIMIT)) + "\n" + cell.source
    return nb


def _private_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines() if " /tmp/dpg-" in line]


def _left_behind(students: list[str]) -> list[str]:
    """What stays in /tmp of the private folders in which `students` were graded (other gradings may run on
    this machine meanwhile: their folders are told apart by the students in them), and of their mounts."""
    left = []
    for folder in Path("/tmp").glob("dpg-*"):
        try:
            ours = any((folder / "course" / "submitted" / student).exists() for student in students)
        except OSError:
            continue
        if ours:
            left.append(str(folder))
            left += [line for line in _private_mounts() if f" {folder}/" in line]
    return left + [str(p) for p in Path("/tmp").glob(f"*{MARKER}*")]


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_littering_submission_keeps_its_grade_and_leaves_nothing(tmp_path):
    token = os.urandom(4).hex()
    students = [f"a_litterer_{token}", f"b_innocent_{token}"]
    for student in students:
        (tmp_path / "class" / student / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(
            _littering() if student.startswith("a_") else solved(), tmp_path / "class" / student / ASSIGNMENT / NOTEBOOK
        )
    result = run_grade(
        str(tmp_path / "class"),
        str(tmp_path / "out"),
        "--assignment",
        ASSIGNMENT,
        "--workers",
        "2",
        f"--Grading.disk_limit={DISK_LIMIT}",
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    rows = defaultdict(dict)
    with open(tmp_path / "out" / "grades.csv", newline="") as file:
        for row in csv.DictReader(file):
            rows[row["student"]][row["cell"]] = row
    auto = [c for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "auto"]
    for student in students:  # the litter costs no point: it broke nothing it may not
        problems = [
            f"{c.name}: {rows[student][c.name]['score']!r} ({rows[student][c.name]['reason']})"
            for c in auto
            if float(rows[student][c.name]["score"] or -1) != c.max_score
        ]
        assert not problems, f"{student}: {problems}"
    left = _left_behind(students)
    assert not left, f"left behind: {left}"


@needs_sandbox
def test_the_socket_folder_holds_a_few_pages_and_inodes(tmp_path):
    """As root the kernel's socket folder, the one writable host folder in its view, is a tmpfs of its own
    whose pages come out of the disk limit; without root it is a host folder (see docs/GRADING.md)."""
    if autograde.sandbox_uid() is None:
        pytest.skip("without root the socket folder is a host folder: see docs/GRADING.md")
    base = tmp_path / "base"
    (base / "course").mkdir(parents=True)
    limits = load_grading(disk_limit=DISK_LIMIT)
    uid = autograde.sandbox_uid()
    try:
        autograde.prepare_sandbox(base, base / "course", limits, uid)
        info = os.statvfs(base / "k")
        assert info.f_blocks * info.f_frsize <= sandbox.SOCKET_FOLDER_BYTES
        assert info.f_files <= sandbox.SOCKET_FOLDER_INODES
        spec = sandbox.Spec.read(base / "spec.json")
        scratch = sandbox.bwrap_arguments(spec, {}, 0, 0, ["true"])
        size = int(scratch[scratch.index("--size") + 1])
        assert size + spec.socket_folder_bytes == DISK_LIMIT, "the two writable places exceed the disk limit"
    finally:
        assert autograde.release_sandbox(base, uid) == []
    assert not base.exists() and not any(str(base) in line for line in _private_mounts())


def test_cleanup_removes_a_deep_wide_hostile_tree_without_following_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("the grader's")
    victim = tmp_path / "dpg-victim"
    victim.mkdir()
    fd = os.open(victim, os.O_RDONLY)
    for _ in range(5000):  # deeper than any recursion limit, and than the descriptors a process may hold
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.symlink(outside, "outside", dir_fd=fd)
    os.close(fd)
    for index in range(20_000):
        (victim / f"f{index}").touch()
    (victim / "up").symlink_to("..")
    (victim / "outside").symlink_to(outside)
    (victim / "dangling").symlink_to("/nonexistent")
    os.mkfifo(victim / "fifo")
    (victim / "shut").mkdir()
    (victim / "shut" / "inside").write_text("x")
    os.chmod(victim / "shut", 0)
    assert cleanup.remove_tree(victim) == []
    assert not victim.exists()
    assert (outside / "keep").read_text() == "the grader's" and sorted(os.listdir(tmp_path)) == ["outside"]


def test_cleanup_of_what_is_not_there_or_not_a_folder(tmp_path):
    assert cleanup.remove_tree(tmp_path / "missing") == []
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    assert cleanup.remove_tree(tmp_path / "link") == [] and (tmp_path / "file").exists()
    assert cleanup.remove_tree(tmp_path / "file") == [] and not (tmp_path / "file").exists()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("bundle")
    return bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{scratch / 'class.db'}", scratch)


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_failed_cleanup_is_logged_and_never_the_result(bundle, monkeypatch):
    remove_tree, defeated = cleanup.remove_tree, []

    def defeated_cleanup(path):
        defeated.append(path)
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cleanup, "remove_tree", defeated_cleanup)
    job = submission.Job("student", ASSIGNMENT, NOTEBOOK, nbformat.writes(solved()).encode())
    result = submission.grade_submission(job, bundle, load_grading())
    monkeypatch.undo()
    for path in defeated:  # what the defeated cleanup left
        assert remove_tree(path) == []
    assert defeated and not result.grading_error, result.grading_error
    assert all(c.score == c.max_score for c in result.cells if c.kind == "auto"), result.cells
    assert "cleanup: RecursionError" in result.log
