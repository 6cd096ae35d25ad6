"""The hostile-submission corpus (tests/hostile_corpus.py), graded in one batch through the CLI with two
workers: every case gets its expected grade and reason, the innocent students graded beside the attackers
keep every point, the batch completes, no student process survives it, and nothing changed outside OUT."""

import csv
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

import pytest
from cli import run_grade
from hostile_corpus import ALL_ZERO, ASSIGNMENT, CASES, FIRST_IN_LINE, GRADING_OPTIONS, MARKER, NOTEBOOK

from autograder.commands.grade import graded_cells
from autograder.layout import REPO, SOURCE
from autograder.sandbox.bubblewrap import UID_BASE

# Slow: a class of 61 submissions, two of them timing out.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]
SHARED_FOLDERS = [Path(p) for p in ("/tmp", "/dev/shm", "/var/tmp", "/run/lock")]


def _listing() -> dict[Path, set[str]]:
    return {folder: set(os.listdir(folder)) for folder in SHARED_FOLDERS if folder.is_dir()}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _repository_state() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", ".", ":!build"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout


def _student_processes() -> list[str]:
    """Processes still running as a sandbox's uid, or carrying the corpus's marker.

    A zombie (state Z) has exited and runs nothing; in a container whose first process reaps late, the
    sandbox's bwrap can stay one for a moment after the batch.
    """
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            uid = entry.stat().st_uid
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":
            continue
        if uid >= UID_BASE or MARKER in command:
            found.append(f"{entry.name} (uid {uid}): {command[:120]}")
    return found


@pytest.fixture(scope="module")
def listener():
    """A TCP server on loopback: a submission that reaches it has network access."""
    server = socket.create_server(("127.0.0.1", 0))
    connections = []

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connections.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], connections
    server.close()


@pytest.fixture(scope="module")
def graded(listener):
    port, connections = listener
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    for case in CASES:
        case.build(root / "class" / case.name, port)
    before = _listing(), _tree_digest(root / "class"), _repository_state()
    result = run_grade(
        str(root / "class"),
        str(root / "out"),
        "--assignment",
        ASSIGNMENT,
        "--workers",
        "2",
        *GRADING_OPTIONS,
        timeout=3000,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after = _listing(), _tree_digest(root / "class"), _repository_state()
    root_survivors = _student_processes()
    rows = defaultdict(dict)
    with open(root / "out" / "grades.csv", newline="") as file:
        for row in csv.DictReader(file):
            rows[row["student"]][row["cell"]] = row
    yield rows, root, connections, before, after, root_survivors, result.stdout
    shutil.rmtree(root, ignore_errors=True)


def _outcome_matches(case, cells) -> list[str]:
    problems = []
    auto = [c for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "auto"]
    for cell in auto:
        row = cells[cell.name]
        score, reason = float(row["score"]), row["reason"]
        expected_phrase = case.lost.get(ALL_ZERO, case.lost.get(cell.name))
        if expected_phrase is None:
            if score != cell.max_score:
                problems.append(f"{cell.name}: expected full marks, got {score} ({reason})")
        elif score != 0 or expected_phrase not in reason or not reason:
            problems.append(
                f"{cell.name}: expected 0 with a reason containing {expected_phrase!r}, got {score} ({reason!r})"
            )
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_gets_its_expected_grade(graded, case):
    rows = graded[0]
    problems = _outcome_matches(case, rows[case.name])
    assert not problems, "\n".join(problems)


def test_nothing_escaped(graded):
    _, root, connections, before, after, survivors, _ = graded
    assert not connections, "a submission opened a connection to the loopback listener"
    for target in (REPO / "course" / "lib" / "hacked.py", REPO.parent / "hacked-by-student"):
        assert not target.exists(), f"a submission wrote {target}"
    assert not survivors, f"student processes outlived the batch: {survivors}"
    (listing_before, class_before, repository_before), (listing_after, class_after, repository_after) = before, after
    assert class_after == class_before, "the submissions folder changed"
    assert repository_after == repository_before, "the repository changed"
    for folder, names in listing_after.items():
        new = names - listing_before.get(folder, set())
        leaked = sorted(n for n in new if MARKER in n or n.startswith(("dpg-", "dpc-", "dpk-")))
        assert not leaked, f"left behind in {folder}: {leaked}"


def test_grades_are_complete(graded):
    rows, root, *_ = graded
    cells = {c.name for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK)}
    for case in CASES:
        assert set(rows[case.name]) == cells, f"{case.name}: rows for {sorted(rows[case.name])}"
        assert all(r["sandbox"] == "on" for r in rows[case.name].values())
        feedback = root / "out" / "feedback" / case.name / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
        assert feedback.is_file(), f"no feedback for {case.name}"
    assert not any(r["reason"].startswith("grading error") for cells in rows.values() for r in cells.values())
    # Reasons quote submissions; none reaches grades.csv (and so the terminal of `report`) with a control,
    # format (bidi, zero-width) or line-separator character.
    unprintable = [
        (name, r["cell"]) for name, cells in rows.items() for r in cells.values() if not r["reason"].isprintable()
    ]
    assert not unprintable, unprintable


def test_no_submission_writes_past_the_output_limit(graded):
    """Whatever a kernel sent (floods, display updates, widget state), its autograded notebook and its
    feedback page stay within the default output limit of 32 MB plus the notebook's own size."""
    root = graded[1]
    bound = 32 * 2**20 + 2 * 2**20
    for case in CASES:
        for page in (
            root / "out" / "autograded" / case.name / ASSIGNMENT / NOTEBOOK,
            root / "out" / "feedback" / case.name / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html"),
        ):
            assert not page.is_file() or page.stat().st_size < bound, f"{case.name}: {page.stat().st_size} bytes"


def test_feedback_of_a_notebook_naming_the_markers(graded):
    root = graded[1]
    page = (root / "out" / "feedback" / "a_marker_in_comment" / ASSIGNMENT / "01_databases.html").read_text()
    assert "BEGIN HIDDEN TESTS (a student" in page and "no feedback page" not in page


def test_extra_files_are_reported(graded):
    root = graded[1]
    notes = (root / "out" / "intake.csv").read_text()
    assert "extra_files" in notes and "notes.txt" in notes and "scratch.ipynb" in notes


def test_the_first_submission_cannot_stop_a_one_process_batch(listener, tmp_path):
    """With one worker the first kernel stands in for the preflight's: an attacker graded first cannot pass
    for a broken grading kernel, stop the batch, or break the kernels of the students graded after it."""
    port, connections = listener
    for case in FIRST_IN_LINE:
        case.build(tmp_path / "class" / case.name, port)
    result = run_grade(
        str(tmp_path / "class"),
        str(tmp_path / "out"),
        "--assignment",
        ASSIGNMENT,
        "--workers",
        "1",
        *GRADING_OPTIONS,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = defaultdict(dict)
    with open(tmp_path / "out" / "grades.csv", newline="") as file:
        for row in csv.DictReader(file):
            rows[row["student"]][row["cell"]] = row
    for case in FIRST_IN_LINE:
        problems = _outcome_matches(case, rows[case.name])
        assert not problems, f"{case.name}: " + "\n".join(problems)
    assert not any(r["reason"].startswith("grading error") for cells in rows.values() for r in cells.values())
    assert not _student_processes() and not connections
