"""The hostile-submission corpus (tests/hostile_corpus.py), graded in one batch through the CLI: every case
gets its expected grade and reason, the batch completes, and nothing escapes the sandbox."""
import csv
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from autograder.grade import graded_cells
from autograder.paths import REPO, SOURCE
from hostile_corpus import ALL_ZERO, ASSIGNMENT, CASES, NOTEBOOK


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
    # Under the repository, not pytest's private temporary folder, so the sandbox's `nobody` can reach it.
    (REPO / "build").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="hostile-", dir=REPO / "build"))
    root.chmod(0o755)
    for case in CASES:
        case.build(root / "class" / case.name, port)
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(root / "class"), "--out",
                             str(root / "out"), "--assignment", ASSIGNMENT, "--workers", "2"],
                            cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = defaultdict(dict)
    with open(root / "out" / "grades.csv", newline="") as file:
        for row in csv.DictReader(file):
            rows[row["student"]][row["cell"]] = row
    yield rows, root, connections
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
            problems.append(f"{cell.name}: expected 0 with a reason containing {expected_phrase!r}, "
                            f"got {score} ({reason!r})")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_gets_its_expected_grade(graded, case):
    rows, _, _ = graded
    problems = _outcome_matches(case, rows[case.name])
    assert not problems, "\n".join(problems)


def test_nothing_escaped(graded):
    _, root, connections = graded
    assert not connections, "a submission opened a connection to the loopback listener"
    for target in (REPO / "course" / "lib" / "hacked.py", REPO.parent / "hacked-by-student"):
        assert not target.exists(), f"a submission wrote {target}"


def test_extra_files_are_reported(graded):
    _, root, _ = graded
    notes = (root / "out" / "intake.csv").read_text()
    assert "extra_files" in notes and "notes.txt" in notes and "scratch.ipynb" in notes
