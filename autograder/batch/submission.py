"""Grade one submission and return its result as data: `grade_submission(job, bundle, settings)`.

This is the task a Dask worker runs. It takes bytes, not paths: the submitted notebook, and the assignment's
`Bundle` (its source files and gradebook template). It lays them out in a fresh private folder (mode 700,
outside any sandbox's view), autogrades there with nbgrader (autograder.pipeline.autograde) under a time limit
(its sandbox's CPU time, with a wall-clock backstop: autograder.sandbox.timelimits) kept by a watchdog that kills
the sandbox, reads the grader's own verdicts, and returns a `SubmissionResult`: per-cell scores and
reasons, the autograded notebook and the feedback HTML. The folder is removed afterwards, whatever the
kernel left in it (autograde.release_sandbox); a failure to remove it is logged, never the result. Only the
client process writes OUT and the class gradebook. nbgrader runs in the calling process, so its imports
(nbgrader, torch, the hidden checks) are paid once per worker, not once per submission.

Faults are classified. What the submission caused (a failed test, a timeout, a dead kernel) scores 0 with
the reason. What the grader or its environment caused (the kernel did not start, the disk is full, the
grading process crashed) is a grading error: an empty score and a reason starting `grading error:`, so that
a rerun regrades it. A failure to make the feedback costs no points: the scores stand without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook
from nbgrader.utils import is_grade, is_solution

from autograder.pipeline import autograde
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.timelimits import Expiry, TimeLimit
from autograder.settings import GradingSettings

GRADING_ERROR = "grading error: "
# A terminal's control sequence (CSI, as in colours, or OSC, as in window titles), removed whole.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?)")
# The marker, letter by letter, where any letter outside ASCII may stand in for one (a look-alike), after
# anything but an ASCII letter (invisible letters too, such as the Hangul fillers).
_LIKE_THE_MARKER = re.compile(
    r"[^a-z]*"
    + "".join(rf"[{letter}\ufffd]" if letter != " " else r"[^a-z\ufffd]*" for letter in GRADING_ERROR.strip())
)


@dataclass(frozen=True)
class Bundle:
    """An assignment as the grader needs it: its source files and its gradebook template, as bytes."""

    assignment: str
    files: dict[str, bytes]  # path relative to source/<assignment> -> content
    gradebook: bytes  # an nbgrader gradebook (SQLite) that knows the assignment's cells

    @property
    def digest(self) -> str:
        hasher = hashlib.sha256(self.assignment.encode())
        for name in sorted(self.files):
            hasher.update(name.encode() + b"\0" + self.files[name])
        return hasher.hexdigest()


@dataclass(frozen=True)
class GradedCell:
    """A cell that carries points, as the source notebook defines it."""

    name: str
    kind: str  # "auto" | "manual"
    max_score: float


@dataclass
class Job:
    student: str
    assignment: str
    notebook: str  # file name, e.g. "01_databases.ipynb"
    content: bytes | None  # the submitted file; None when it cannot be graded (see problem)
    problem: str = ""  # why the submission cannot be graded (missing, duplicate...): the student's zeros
    seed: int = 0  # the hidden checks' seed (autograder.batch.seeds), derived by the client


@dataclass
class CellResult:
    name: str
    kind: str
    score: float | None  # None: a manual cell not graded yet, or a grading error
    max_score: float
    reason: str


@dataclass
class SubmissionResult:
    student: str
    assignment: str
    notebook: str
    cells: list[CellResult]
    feedback: bytes = b""  # the feedback HTML (empty when it could not be made)
    autograded: bytes = b""  # the autograded notebook
    grading_error: str = ""  # '' or why the grader failed (every score is then empty)
    kernel_failed: bool = False  # the kernel did not start or failed its probe: before any student code ran
    feedback_error: str = ""
    log: str = ""
    details: dict = field(default_factory=dict)
    seconds: float | None = None  # wall-clock seconds its grading took; None: not graded in this run
    cpu_seconds: float | None = None  # CPU seconds of its sandbox, where cgroups count them

    def as_dict(self) -> dict:
        return asdict(self)


def graded_cells(notebook: nbformat.NotebookNode) -> list[GradedCell]:
    """The graded cells of a source notebook, in order: tests are 'auto', written answers 'manual'."""
    cells = []
    for cell in notebook.cells:
        if is_grade(cell):
            kind = "auto" if cell.cell_type == "code" and not is_solution(cell) else "manual"
            cells.append(
                GradedCell(cell.metadata.nbgrader["grade_id"], kind, float(cell.metadata.nbgrader.get("points", 0)))
            )
    return cells


def bundle_cells(bundle: Bundle, notebook: str) -> list[GradedCell]:
    return graded_cells(nbformat.reads(bundle.files[notebook].decode(), as_version=4))


def grade_submission(job: Job, bundle: Bundle, settings: GradingSettings) -> SubmissionResult:
    """Grade one submission; never raises: every outcome is a SubmissionResult."""
    cells = bundle_cells(bundle, job.notebook)
    if job.problem:
        return failed(job, cells, job.problem, settings.reason_limit)
    # What nbformat and nbgrader warn about a submitted file (duplicate cell ids, say) goes into its log,
    # not into the grader's terminal.
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _autograde(job, bundle, cells, settings)
        except Exception as error:  # noqa: BLE001 (a fault of the grader: never a student's zero)
            reason = f"{GRADING_ERROR}{type(error).__name__}: {error}"
            result = failed(job, cells, reason, settings.reason_limit, grading_error=True)
    result.log += "".join(f"[WARNING] {w.category.__name__}: {w.message}\n" for w in caught)
    result.seconds = time.monotonic() - started
    return result


def is_grading_error(row: dict) -> bool:
    """Whether a grades.csv row records the grader's own failure: an empty score and the marker."""
    return row["score"] == "" and row["reason"].startswith(GRADING_ERROR)


def reason_text(reason: str, limit: int, grading_error: bool = False) -> str:
    """A reason as grades.csv, the summary and `report` show it: one line of printable text, at most `limit`
    characters (Grading.reason_limit).

    Most reasons quote the submission (its errors' names and messages), which could hold terminal control
    sequences, characters that reorder or hide text (bidi overrides, zero-width characters, line separators),
    or read like the grader's own failure: only the grader's reasons start with the marker, and a reason from
    the submission that starts like it, even in look-alike letters, is shown as `submission: ...`.
    """
    normalised = unicodedata.normalize("NFKC", _ESCAPE_SEQUENCE.sub("", reason))
    parts = "".join(ch if ch.isprintable() else "\0" for ch in normalised).split("\0")
    text = " ".join(part.strip() for part in parts if part.strip())
    if not grading_error and _looks_like_the_marker(text):
        text = f"submission: {text}"
    if reason.strip() and not text:
        text = "(a reason without printable text)"
    return text[:limit]


def _looks_like_the_marker(text: str) -> bool:
    skeleton = "".join(ch if ch.isascii() or not ch.isalpha() else "\ufffd" for ch in text[:60].casefold())
    return bool(_LIKE_THE_MARKER.match(skeleton))


def failed(
    job: Job,
    cells: list[GradedCell],
    reason: str,
    limit: int,
    grading_error: bool = False,
    log: str = "",
    kernel_failed: bool = False,
) -> SubmissionResult:
    """Every cell without points: 0 with the reason, or empty scores for a grading error."""
    score = None if grading_error else 0.0
    rows = [CellResult(c.name, c.kind, score, c.max_score, reason_text(reason, limit, grading_error)) for c in cells]
    return SubmissionResult(
        job.student,
        job.assignment,
        job.notebook,
        rows,
        grading_error=reason if grading_error else "",
        log=log,
        kernel_failed=kernel_failed,
    )


def _autograde(job: Job, bundle: Bundle, cells: list[GradedCell], settings: GradingSettings) -> SubmissionResult:
    # Short and private: the kernel's Unix socket paths (about 100 characters at most) live under it.
    base = Path(tempfile.mkdtemp(prefix="dpg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    uid = autograde.sandbox_uid() if settings.sandbox else None
    watchdog = _Watchdog(base, uid, settings)
    try:
        result = _grade_in(base, uid, watchdog, job, bundle, cells, settings)
        result.cpu_seconds = watchdog.cpu_seconds()
    finally:
        watchdog.stop()
        try:  # a failure to clean up is logged, never the result
            problems = autograde.release_sandbox(base, uid)
        except Exception as error:  # noqa: BLE001 (release_sandbox reports rather than raises; belt and braces)
            problems = [f"{type(error).__name__}: {error}"]
    result.log += "".join(f"[WARNING] cleanup: {problem}\n" for problem in problems)
    return result


def _grade_in(
    base: Path,
    uid: int | None,
    watchdog: _Watchdog,
    job: Job,
    bundle: Bundle,
    cells: list[GradedCell],
    settings: GradingSettings,
) -> SubmissionResult:
    base.chmod(0o711)
    course = base / "course"
    source = course / "source" / job.assignment
    for name, content in bundle.files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(content)
    (course / "gradebook.db").write_bytes(bundle.gradebook)
    submitted = course / "submitted" / job.student / job.assignment / job.notebook
    submitted.parent.mkdir(parents=True)
    assert job.content is not None, "a job without a problem holds its file (grade_submission)"
    submitted.write_bytes(job.content)
    course.chmod(0o700)
    watchdog.start()
    outcome = autograde.run_nbgrader(base, course, settings, job.assignment, job.student, job.seed, uid)
    watchdog.stop()
    if watchdog.expiry is not None:
        if watchdog.expiry.overloaded:
            return failed(
                job,
                cells,
                f"{GRADING_ERROR}{watchdog.expiry.message}; the notebook was stopped and is regraded by the next run",
                settings.reason_limit,
                grading_error=True,
                log=_log_of(outcome),
            )
        reason = f"timeout: {watchdog.expiry.message}; it was stopped"
        return failed(job, cells, reason, settings.reason_limit, log=_log_of(outcome))
    return _read_result(job, cells, course, base, outcome, settings.reason_limit)


class _Watchdog:
    """The notebook's time limit (autograder.sandbox.timelimits): when it passes, the sandbox is killed, and
    nbgrader's execution ends with a dead kernel."""

    POLL = 0.5  # seconds between two looks at the clocks

    def __init__(self, base: Path, uid: int | None, settings: GradingSettings):
        self.base, self.settings = base, settings
        self.cpu_clock = sandbox.cpu_clock(uid) if settings.sandbox else None
        self.waits = sandbox.waits(uid) if settings.sandbox else None
        self.sandboxes_clock = sandbox.all_sandboxes_cpu_clock(uid) if settings.sandbox else None
        self.expiry: Expiry | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="notebook-timeout", daemon=True)

    def start(self) -> None:
        self._limit = TimeLimit(
            self.settings.notebook_timeout,
            self.cpu_clock,
            autograde.sandbox_cores(self.settings),
            self.settings.wall_clock_factor,
            what="the notebook",
            waits=self.waits,
            sandboxes_clock=self.sandboxes_clock,
        )
        self._thread.start()

    def cpu_seconds(self) -> float | None:
        """CPU seconds the sandbox used since `start`, where its cgroup counts them."""
        return self._limit.cpu_seconds() if hasattr(self, "_limit") else None

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(min(self.POLL, self._limit.remaining_wall() + 0.01)):
            expiry = self._limit.check()
            if expiry is not None:
                self.expiry = expiry
                if (self.base / "spec.json").exists():
                    sandbox.kill(self.base / "spec.json")
                return


def _log_of(outcome: dict) -> str:
    return "".join((part.get("log") or "") + (part.get("error") or "") for part in outcome.values())


def _read_result(
    job: Job, cells: list[GradedCell], course: Path, base: Path, outcome: dict, limit: int
) -> SubmissionResult:
    log = _log_of(outcome)
    record_file = base / "verdicts.json"  # TrustedExecute's, in the grader's private folder
    record: dict[str, Any] = (
        json.loads(record_file.read_text()) if record_file.is_file() else {"cells": {}, "kernel_error": ""}
    )
    if record["kernel_error"]:  # before the submission's first cell, so never its fault
        return failed(
            job,
            cells,
            f"{GRADING_ERROR}{record['kernel_error']}",
            limit,
            grading_error=True,
            log=log,
            kernel_failed=True,
        )
    if record.get("overloaded"):  # a cell's time limit fired because the machine was overloaded
        return failed(
            job,
            cells,
            f"{GRADING_ERROR}{record['overloaded']}; regraded by the next run",
            limit,
            grading_error=True,
            log=log,
        )
    if not outcome["autograde"]["success"]:
        if "DeadKernelError" in log:
            return failed(
                job,
                cells,
                "the kernel died while running the notebook (it crashed, exited or ran "
                "out of memory); every cell scores 0",
                limit,
                log=log,
            )
        return failed(job, cells, "autograding failed: " + _root_cause(log), limit, log=log)
    verdicts = record["cells"]
    name = job.notebook.removesuffix(".ipynb")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grades = {
            g.name: (g.auto_score, g.manual_score)
            for g in gradebook.find_submission_notebook(name, job.assignment, job.student).grades
        }
    rows = []
    for cell in cells:
        auto_score, manual_score = grades.get(cell.name, (None, None))
        if cell.kind == "manual":
            rows.append(
                CellResult(
                    cell.name,
                    cell.kind,
                    manual_score,
                    cell.max_score,
                    "awaiting manual grading" if manual_score is None else "",
                )
            )
            continue
        passed, reason = verdicts.get(cell.name, (False, "the hidden test never ran"))
        score = cell.max_score if passed else 0.0
        rows.append(
            CellResult(cell.name, cell.kind, score, cell.max_score, "" if passed else reason_text(reason, limit))
        )
    autograded = course / "autograded" / job.student / job.assignment / job.notebook
    feedback = course / "feedback" / job.student / job.assignment / f"{name}.html"
    result = SubmissionResult(
        job.student, job.assignment, job.notebook, rows, log=log, autograded=_read_plain_file(autograded)
    )
    if outcome.get("feedback", {}).get("success") and feedback.is_file():
        result.feedback = _read_plain_file(feedback)
    else:
        result.feedback_error = "feedback could not be generated: " + _root_cause(
            (outcome.get("feedback", {}).get("log") or "") + (outcome.get("feedback", {}).get("error") or "")
        )
    return result


def _read_plain_file(path: Path) -> bytes:
    """A file the grader wrote, refused if anything made it a link."""
    if path.is_symlink() or not path.is_file():
        return b""
    return path.read_bytes()


def _root_cause(log: str) -> str:
    """The last exception line of nbgrader's log that is not nbgrader's generic wrapper."""
    causes = [
        line.strip()
        for line in log.splitlines()
        if re.match(r"^\s*[\w.]+(Error|Exception|Exit)\b.*:", line) and "NbGraderException" not in line
    ]
    return causes[-1] if causes else _last_line(log)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no details"
