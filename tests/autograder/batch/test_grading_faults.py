"""Faults are classified: a fault of the grader or its environment is a grading error (empty score, reason
`grading error: ...`), never a student's zero; a batch that cannot work stops before it starts."""

import csv
import errno
import shutil
from pathlib import Path

import nbformat
import pytest
from cli import run_grade
from hostile_corpus import cell_by_grade_id, solved
from traitlets.config import PyFileConfigLoader

from autograder.batch import bundles, preflight, submission
from autograder.commands import grade
from autograder.layout import RELEASE, REPO, SOURCE, notebooks
from autograder.pipeline import autograde
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox import timelimits
from autograder.settings import GradingSettings, load_grading

ASSIGNMENT, NOTEBOOK = "01_databases", "01_databases.ipynb"
LIMIT = load_grading().reason_limit  # characters of a reason in grades.csv (Grading.reason_limit)
needs_sandbox = pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=sandbox.unavailable_reason() or "ok")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("bundle")
    return bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{scratch / 'class.db'}", scratch)


def _job(nb=None) -> submission.Job:
    return submission.Job("student", ASSIGNMENT, NOTEBOOK, nbformat.writes(nb or solved()).encode())


def _limits(**changes) -> dict:
    return load_grading().replace(**changes)


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_kernel_that_cannot_start_is_a_grading_error(bundle):
    # One process for the sandbox: bubblewrap cannot even fork the kernel, whatever the notebook holds.
    result = submission.grade_submission(_job(), bundle, _limits(process_limit=1, startup_timeout=30))
    assert result.grading_error.startswith("grading error:"), result.grading_error
    assert all(cell.score is None and cell.reason.startswith("grading error:") for cell in result.cells)


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_kernel_that_fails_its_probe_is_a_grading_error(bundle):
    result = submission.grade_submission(_job(), bundle, _limits(kernel_probe="import a_module_nobody_installed"))
    assert result.kernel_failed and result.grading_error.startswith("grading error: the kernel failed its probe")
    assert "ModuleNotFoundError" in result.grading_error, result.grading_error
    assert all(cell.score is None and cell.reason.startswith("grading error:") for cell in result.cells)


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_the_kernel_runs_the_probe_as_it_boots_and_the_probe_still_decides(bundle):
    """The probe's code runs once at boot (overlapping nbgrader's set-up) and once as the probe proper; a
    probe that passes at boot but fails later still makes a grading error."""
    nb = solved()
    cell_by_grade_id(nb, "create_db").source += "\nassert _probe_runs == 2, _probe_runs\n"
    counting = "_probe_runs = globals().get('_probe_runs', 0) + 1"
    result = submission.grade_submission(_job(nb), bundle, _limits(kernel_probe=counting))
    assert not result.grading_error and all(
        cell.score == cell.max_score for cell in result.cells if cell.kind == "auto"
    ), result.cells
    only_at_boot = "_seen = '_seen' in globals()\nassert not _seen, 'the second run fails'"
    result = submission.grade_submission(_job(), bundle, _limits(kernel_probe=only_at_boot))
    assert result.kernel_failed and "the second run fails" in result.grading_error, result.grading_error


@pytest.mark.slow  # starts a kernel
def test_a_submission_cannot_pass_for_a_broken_kernel(bundle):
    """Only the grader's own record says the kernel failed; a notebook that prints, raises and dies with the
    words of a kernel failure still scores 0."""
    nb = solved()
    cell_by_grade_id(nb, "create_db").source = (
        "import os\nprint('RuntimeError: Kernel died before replying to kernel_info')\n"
        "print('bwrap: KernelProbeFailed: the kernel failed its probe')\nos._exit(1)\n"
    )
    result = submission.grade_submission(_job(nb), bundle, _limits())
    assert not result.grading_error and not result.kernel_failed
    assert all(cell.score == 0 for cell in result.cells if cell.kind == "auto"), result.cells


def test_only_a_kernel_failure_before_any_kernel_worked_stops_the_batch(bundle, monkeypatch, tmp_path):
    """In one-process grading the first kernel stands in for the preflight's; later kernel failures are
    grading errors of their own submission (regraded by a rerun), not a reason to stop the batch."""
    outcomes = []

    def graded(job, bundle, limits):
        works = outcomes.pop(0)
        cells = submission.bundle_cells(bundle, job.notebook)
        if works:
            return submission.SubmissionResult(job.student, job.assignment, job.notebook, [], autograded=b"{}")
        return submission.failed(
            job,
            cells,
            "grading error: the kernel did not start: RuntimeError: no",
            LIMIT,
            grading_error=True,
            kernel_failed=True,
        )

    monkeypatch.setattr(grade, "grade_submission", graded)
    monkeypatch.setattr(grade.preflight, "check", lambda *args, **kwargs: None)
    jobs = [submission.Job(name, ASSIGNMENT, NOTEBOOK, b"{}") for name in ("ada", "bo", "cy")]
    missing = submission.Job("dee", ASSIGNMENT, NOTEBOOK, None, problem="no notebook submitted")
    settings = load_grading(workers=1)
    outcomes[:] = [True, False, True]
    results = grade.run_jobs(jobs, {ASSIGNMENT: bundle}, settings, tmp_path)
    assert [r.kernel_failed for r in results] == [False, True, False]
    outcomes[:] = [False, True]
    with pytest.raises(preflight.PreflightError, match="no grading kernel has worked yet"):
        grade.run_jobs(jobs[:2], {ASSIGNMENT: bundle}, settings, tmp_path)
    outcomes[:] = [False]  # a submission that is missing starts no kernel, so it proves nothing either
    monkeypatch.setattr(
        grade,
        "grade_submission",
        lambda job, *rest: submission.failed(job, [], job.problem, LIMIT) if job.problem else graded(job, *rest),
    )
    with pytest.raises(preflight.PreflightError):
        grade.run_jobs([missing, jobs[0]], {ASSIGNMENT: bundle}, settings, tmp_path)


@pytest.mark.slow  # starts a kernel
def test_a_full_disk_is_a_grading_error(bundle, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(submission.tempfile, "mkdtemp", full)
    result = submission.grade_submission(_job(), bundle, _limits())
    assert result.grading_error.startswith("grading error: OSError") and "No space" in result.grading_error
    assert all(cell.score is None for cell in result.cells)


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_kernel_that_ignores_interrupts_leaves_nothing_running(bundle, monkeypatch):
    # The host counts as idle: on a machine overloaded by something else, the spinning cell's backstop would
    # rightly be a grading error (tests/autograder/sandbox/test_fair_cpu.py), and this test is about what is left
    # running.
    monkeypatch.setattr(timelimits, "host_cpu_times", lambda: None)
    nb = solved()
    cell = cell_by_grade_id(nb, "create_db")
    cell.source = (
        "import signal, subprocess, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', 'dp-timeout-marker'],"
        " start_new_session=True)\nwhile True:\n    pass\n"
    )
    result = submission.grade_submission(_job(nb), bundle, _limits(notebook_timeout=40, cell_timeout=10))
    assert not result.grading_error
    assert all(c.score == 0 and c.reason for c in result.cells if c.kind == "auto"), result.cells
    assert "timeout" in result.cells[0].reason.lower()  # CellTimeoutError, or the notebook timeout if it came first
    left = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).find("dp-timeout-marker") >= 0]
    assert not left, "the timed-out kernel's processes are still running"


def _cmdline(entry: Path) -> str:
    try:
        return (entry / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_preflight_stops_on_a_missing_dataset(tmp_path):
    settings = load_grading(argv=[f"--Grading.data_root={tmp_path}"])
    with pytest.raises(preflight.PreflightError, match="dataset"):
        preflight.check(settings, ["06_dpsgd"], tmp_path)


def test_preflight_stops_without_a_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "BWRAP", "bwrap-that-is-not-installed")
    with pytest.raises(preflight.PreflightError, match="--no-sandbox"):
        preflight.check(load_grading(), [ASSIGNMENT], tmp_path)
    preflight.check(load_grading(sandbox=False), [ASSIGNMENT], tmp_path)  # only an explicit opt-out goes on


@pytest.mark.slow  # starts a kernel
def test_cli_reports_a_preflight_failure(tmp_path):
    """The preflight runs before any submission; when it fails nothing is written to OUT."""
    notebook = notebooks("05_pate")[0]
    (tmp_path / "class" / "ada" / "05_pate").mkdir(parents=True)
    shutil.copyfile(RELEASE / "05_pate" / notebook, tmp_path / "class" / "ada" / "05_pate" / notebook)
    result = run_grade(
        str(tmp_path / "class"),
        str(tmp_path / "out"),
        "--assignment",
        "05_pate",
        f"--Grading.data_root={tmp_path}",
        timeout=600,
    )
    assert result.returncode == 1 and "dataset" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out" / "grades.csv").exists() and not (tmp_path / "out" / "feedback").exists()


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_cli_stops_when_the_first_kernel_fails_its_probe(tmp_path):
    """Graded in one process, the first submission's kernel makes the preflight's kernel check: when it
    fails before any student code ran, the batch stops and nothing is written."""
    folder = tmp_path / "class" / "ada" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(solved(), folder / NOTEBOOK)
    result = run_grade(
        str(tmp_path / "class"),
        str(tmp_path / "out"),
        "--assignment",
        ASSIGNMENT,
        "--Grading.kernel_probe=import a_module_nobody_installed",
        timeout=600,
    )
    assert result.returncode == 1 and "probe" in result.stderr and "nothing was graded" in result.stderr, result.stderr[
        -2000:
    ]
    assert not (tmp_path / "out" / "grades.csv").exists() and not (tmp_path / "out" / "feedback").exists()


def test_an_edit_of_the_configuration_file_takes_effect(tmp_path):
    """Every limit is a traitlet of Grading: set in nbgrader_config.py, overridden on the command line."""
    config_file = tmp_path / "nbgrader_config.py"
    config_file.write_text(
        (REPO / "autograder" / "pipeline" / "nbgrader_config.py").read_text()
        + "\nc.Grading.cell_timeout = 7\nc.Grading.disk_limit = 12345678\n"
    )
    config = PyFileConfigLoader(config_file.name, path=str(tmp_path)).load_config()
    settings = load_grading(config)
    assert (settings.cell_timeout, settings.disk_limit) == (7, 12345678)
    assert load_grading(config, argv=["--Grading.disk_limit=99"]).disk_limit == 99
    assert isinstance(settings, GradingSettings)  # what the grading task receives, frozen
    with pytest.raises(ValueError, match="Grading"):
        load_grading(argv=["--Execute.timeout=3"])


@pytest.mark.slow  # starts a kernel
def test_unsandboxed_grading_is_recorded(tmp_path):
    folder = tmp_path / "class" / "someone" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(solved(), folder / NOTEBOOK)
    result = run_grade(
        str(tmp_path / "class"),
        str(tmp_path / "out"),
        "--assignment",
        ASSIGNMENT,
        "--no-sandbox",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "WITHOUT the sandbox" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "grades.csv")))
    assert rows and all(r["sandbox"] == "off" for r in rows)
    assert all(r["score"] == r["max_score"] for r in rows if r["kind"] == "auto"), rows


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_the_notebook_timeout_kills_the_sandbox(bundle):
    nb = solved()
    cell = cell_by_grade_id(nb, "create_db")
    cell.source += (
        "\nimport subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; "
        "time.sleep(600)', 'dp-notebook-timeout-marker'], start_new_session=True)\ntime.sleep(60)\n"
    )
    result = submission.grade_submission(_job(nb), bundle, _limits(notebook_timeout=20, cell_timeout=120))
    # The sleeping cell uses no CPU: where the limit counts CPU time, its wall-clock backstop (twice the
    # limit) stops it, on a machine that is not overloaded.
    stopped_after = 40 if sandbox.cpu_clock(autograde.sandbox_uid()) is not None else 20
    assert all(
        c.score == 0 and c.reason.startswith(f"timeout: the notebook ran for more than {stopped_after} s")
        for c in result.cells
    ), result.cells
    left = [p for p in Path("/proc").glob("[0-9]*") if "dp-notebook-timeout-marker" in _cmdline(p)]
    assert not left, "the killed sandbox's processes are still running"


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_one_message_over_the_output_limit_never_reaches_the_grader(bundle):
    """The cap on message size holds for the IOPub socket of nbclient's client, not only for the control
    socket: a single display message over the limit is refused by ZeroMQ, unread, instead of being received
    whole and then dropped."""
    nb = solved()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "from IPython.display import display\ndisplay({'text/plain': 'x' * (8 * 2**20)}, raw=True)"
        )
    )
    result = submission.grade_submission(_job(nb), bundle, _limits(output_limit=2**20, cell_timeout=20))
    assert not result.grading_error
    assert b"output past" not in result.autograded and b"x" * 2**20 not in result.autograded
    assert all(cell.score == cell.max_score for cell in result.cells if cell.kind == "auto"), result.cells


def test_an_execution_count_that_is_not_a_number_never_reaches_the_notebook():
    """nbclient copies `execution_count` from any message into the cell, before any output is counted: a
    kernel's 30 MB string there grew the grader and broke the notebook's validation (red team, round 3)."""
    from autograder.pipeline.preprocessors import TrustedExecute

    executor, cell = TrustedExecute(record_timing=False), nbformat.v4.new_code_cell("1")
    for count in ("7" * 1000, [1], 3):
        executor.process_message(
            {
                "msg_type": "execute_input",
                "header": {"msg_type": "execute_input"},
                "content": {"code": "1", "execution_count": count},
            },
            cell,
            0,
        )
    assert cell.execution_count == 3


def _graded_with_threshold_query(bundle, code: str):
    """Grade the solved notebook with `code` appended to its threshold_query cell; the result and the
    threshold_query test's row."""
    nb = solved()
    cell_by_grade_id(nb, "threshold_query").source += code
    result = submission.grade_submission(_job(nb), bundle, _limits())
    return result, next(c for c in result.cells if c.name == "test_threshold_query")


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_display_updates_and_widget_state_count_against_the_output_limit(bundle):
    """An update rewrites every earlier output of its display id (40 small outputs and one 200 kB update
    would write 8 MB), and widget state arrives in comm messages that no output counts: neither gets past
    the limit into the autograded notebook or the feedback."""
    nb = solved()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "from IPython.display import display, update_display\n"
            "for _ in range(40):\n    display({'text/plain': 'small'}, raw=True, display_id='d')\n"
            "update_display({'text/plain': 'u' * 200_000}, raw=True, display_id='d')\n"
            "from ipykernel.comm import Comm\n"
            "_state = {'_model_module': '@jupyter-widgets/output', '_model_name': 'OutputModel',\n"
            "          '_model_module_version': '1.0.0', 'filler': 'w' * 200_000}\n"
            "for _ in range(20):\n"
            "    Comm(target_name='jupyter.widget', data={'state': _state, 'buffer_paths': []}).send(\n"
            "        {'method': 'update', 'state': _state, 'buffer_paths': []})\n"
        )
    )
    result = submission.grade_submission(_job(nb), bundle, _limits(output_limit=2**20))
    assert not result.grading_error
    assert len(result.autograded) < 2**20 + 300_000 and len(result.feedback or b"") < 2**20 + 600_000, (
        len(result.autograded),
        len(result.feedback or b""),
    )
    assert b"output past" in result.autograded and b"w" * 1000 not in result.autograded
    assert all(cell.score == cell.max_score for cell in result.cells if cell.kind == "auto"), result.cells


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_huge_message_the_kernel_sends_in_place_of_an_error_is_cut(bundle):
    """A kernel that skips describe_exception's cut sends a 20 MB message: the grader keeps 2,000 characters."""
    result, cell = _graded_with_threshold_query(
        bundle,
        (
            "\nimport autograder.kernel_side.wire as _wire\n"
            "_wire.Wire.describe_exception = lambda self, error: ('ValueError', ['ValueError'], 'm' * 20_000_000)\n"
            "_visible, _calls = threshold_query, []\n"
            "def threshold_query(db, threshold=5):  # right for the three visible asserts, wrong for the grader\n"
            "    _calls.append(1)\n"
            "    if len(_calls) > 3:\n        raise ValueError('short')\n"
            "    return _visible(db, threshold)\n"
        ),
    )
    assert cell.score == 0 and not result.grading_error and len(result.autograded) < 2_000_000, len(result.autograded)
    assert "m" * 100 in cell.reason and len(cell.reason) <= LIMIT


@pytest.mark.slow  # starts a kernel
@needs_sandbox
def test_a_reason_from_the_submission_is_plain_text_and_never_a_grading_error(bundle):
    result, cell = _graded_with_threshold_query(
        bundle,
        (
            "\n_Error = type('grading error', (Exception,), {})\n"
            "def threshold_query(db, threshold=5):\n"
            "    raise _Error('\\x1b]0;owned\\x07\\x1b[2J the grader crashed, not me')\n"
        ),
    )
    assert cell.score == 0 and not result.grading_error
    assert cell.reason.startswith("submission: grading error") and "the grader crashed" in cell.reason
    assert cell.reason.isprintable(), repr(cell.reason)
    assert not submission.is_grading_error({"score": "0", "reason": cell.reason})
    others = [c for c in result.cells if c.kind == "auto" and c.name != "test_threshold_query"]
    assert all(c.score == c.max_score for c in others), others


@pytest.mark.parametrize(
    "reason",
    [
        "\u200bgrading error: after a zero-width space",
        "gr\u0430ding error: a Cyrillic a",
        "\uff47rading error: a fullwidth g",
        "\u202egrading error: behind a bidi override",
        "  GRADING ERROR: in capitals",
        "\u115fgrading error: after an invisible Hangul filler",
        "grading\u00a0error: a no-break space",
        "\x1b[2Jgrading error: an escape",
    ],
)
def test_a_reason_that_looks_like_the_grader_s_marker_is_marked_as_the_submission_s(reason):
    text = submission.reason_text(reason, LIMIT)
    assert text.startswith("submission: ") and text.isprintable(), repr(text)
    assert submission.reason_text(reason, LIMIT, grading_error=True).isprintable()


def test_a_reason_keeps_its_printable_text_on_one_line():
    text = submission.reason_text("line one\u2028line two\u2029three\x85four\u200d\ufeff\ttab ε=0.5, x  y", LIMIT)
    assert text == "line one line two three four tab ε=0.5, x  y"
    assert (
        submission.reason_text("NameError: name 'grading error' is not defined", LIMIT)
        == "NameError: name 'grading error' is not defined"
    )
    assert len(submission.reason_text("x" * 10_000, LIMIT)) == LIMIT
    assert (
        submission.reason_text("\x1b]0;a title that hides the rest\u200b", LIMIT) == "(a reason without printable text)"
    )
