"""Every assignment graded alone through the CLI (one perfect student), and a preflight that breaks.

Grading one assignment alone in one process runs the preflight (whose dataset check imports torchvision or
medmnist) and the warm-up thread (which imports torch and the hidden checks) side by side in the grader's
start; 06 alone once stopped there with "module 'medmnist' has no attribute 'PneumoniaMNIST'", an import
race. Each run here records which thread imports what (a finder placed first on sys.meta_path) and checks
that no thread imports a package the warm-up thread imports while it runs, unless it holds
autograder.imports.LOCK.
"""

import json
import subprocess
import sys

import nbformat
import pytest

from autograder.batch import preflight
from autograder.commands import cli
from autograder.commands.demo import solved
from autograder.commands.grade import graded_cells
from autograder.layout import REPO, SOURCE, assignments, notebooks
from autograder.sandbox import bubblewrap as sandbox
from autograder.sinks.safe_text import read_rows

WARM_UP_THREAD = "warm-up"
SPIED_GRADE = """
import json, sys, threading, time
from autograder import imports
events = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        events.append((threading.current_thread().name, name, time.perf_counter(), imports.LOCK._is_owned()))

sys.meta_path.insert(0, Spy())
from autograder.commands.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as file:
        json.dump(events, file)
sys.exit(code)
"""


def _unlocked_imports_beside_the_warm_up(events) -> list[str]:
    warm = [(moment, name) for thread, name, moment, _ in events if thread.startswith(WARM_UP_THREAD)]
    if not warm:
        return []
    start, end = min(m for m, _ in warm), max(m for m, _ in warm)
    packages = {name.partition(".")[0] for _, name in warm}
    return sorted(
        {
            f"{thread}: {name}"
            for thread, name, moment, locked in events
            if not thread.startswith(WARM_UP_THREAD)
            and start <= moment <= end
            and not locked
            and name.partition(".")[0] in packages
        }
    )


@pytest.mark.slow  # about 4 minutes for the seven on 2 busy cores (05 to 07 train small models)
@pytest.mark.timeout(900)
@pytest.mark.parametrize("assignment", assignments())
def test_assignment_graded_alone(assignment, tmp_path):
    submissions, out, spied = tmp_path / "class", tmp_path / "out", tmp_path / "imports.json"
    for notebook in notebooks(assignment):
        path = submissions / "perfect" / assignment / notebook
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(solved(assignment, notebook), path)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SPIED_GRADE,
            str(spied),
            "grade",
            str(submissions),
            "--out",
            str(out),
            "--assignment",
            assignment,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Please install" not in result.stdout
    assert f"graded {len(notebooks(assignment))} notebook(s) of 1 student(s)" in result.stdout
    rows = read_rows(out / "grades.csv")
    for notebook in notebooks(assignment):
        expected = {c.name: c.max_score for c in graded_cells(SOURCE / assignment / notebook) if c.kind == "auto"}
        scored = {
            r["cell"]: (float(r["score"]), r["reason"])
            for r in rows
            if r["notebook"] == notebook and r["kind"] == "auto"
        }
        assert scored == {cell: (points, "") for cell, points in expected.items()}, notebook
    events = json.loads(spied.read_text())
    assert any(thread.startswith(WARM_UP_THREAD) for thread, *_ in events)  # the warm-up ran, and was spied on
    assert not _unlocked_imports_beside_the_warm_up(events)


@pytest.fixture
def one_submission(tmp_path):
    path = tmp_path / "class" / "perfect" / "01_databases" / notebooks("01_databases")[0]
    path.parent.mkdir(parents=True)
    nbformat.write(solved("01_databases", path.name), path)
    return tmp_path / "class", tmp_path / "out"


@pytest.mark.parametrize(
    "where, error",
    [
        ("_check_disk", AttributeError("module 'medmnist' has no attribute 'PneumoniaMNIST'")),
        ("_check_datasets", KeyError("pneumonia")),
    ],
)
def test_a_preflight_that_breaks_is_an_error_line(one_submission, monkeypatch, capsys, where, error):
    """Whatever a check raises, `grade` prints one `error:` line, exits 1 and grades nothing."""

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(preflight, where, broken)
    submissions, out = one_submission
    assert cli.main(["grade", str(submissions), "--out", str(out), "--assignment", "01_databases"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: the preflight failed: {type(error).__name__}: ")
    assert str(error) in captured.err and len(captured.err.splitlines()) == 1
    assert not (out / "grades.csv").exists()


def test_a_sandbox_probe_that_breaks_is_an_error_line(one_submission, monkeypatch, capsys):
    def broken():
        raise OSError("bwrap: \x1b]0;odd\x07 output")

    monkeypatch.setattr(sandbox, "unavailable_reason", broken)
    submissions, out = one_submission
    assert cli.main(["grade", str(submissions), "--out", str(out), "--assignment", "01_databases"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the preflight failed: OSError: bwrap: \\x1b]0;odd\\x07 output")
    assert "\x1b" not in err


def test_the_import_spy_sees_an_unlocked_import():
    """The check above can fail: an import of torch by the grading thread while the warm-up imports it."""
    events = [
        ["warm-up_0", "torch", 1.0, True],
        ["MainThread", "torch.nn", 1.5, False],
        ["MainThread", "sqlalchemy", 1.6, False],
        ["warm-up_0", "torch.nn.functional", 2.0, True],
        ["MainThread", "torch.fx", 2.5, False],
    ]
    assert _unlocked_imports_beside_the_warm_up(events) == ["MainThread: torch.nn"]
    events[1][3] = True
    assert not _unlocked_imports_beside_the_warm_up(events)
