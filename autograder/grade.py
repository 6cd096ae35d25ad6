"""`python -m autograder grade SUBMISSIONS --out OUT`: autograde a class, never stopping at a bad submission.

Each submitted notebook is graded by nbgrader in its own course directory (OUT/work/<student>/<assignment>)
with its own copy of the assignment's gradebook, in a child process with a wall-clock limit. So a
submission that hangs, crashes or corrupts its files affects only its own rows, and submissions are graded
in parallel on Dask (a LocalCluster of `workers` processes, or an existing scheduler) without sharing a
database. The grader process alone then writes every result into the class gradebook (OUT/gradebook.db, or
any nbgrader database URL such as PostgreSQL), so there are no concurrent writers. Outputs: one row per
graded cell in OUT/grades.csv, one HTML feedback file per notebook in OUT/feedback/<student>/<assignment>/,
and OUT/intake.csv listing files that were found but not graded.
"""
from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from dask.distributed import Client, LocalCluster
from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning

from . import intake
from .config import gradebook_url
from .paths import SOURCE, assignments as all_assignments, notebooks
from .release import generate

# Wall-clock limit for one notebook (nbgrader limits single cells: see nbgrader_config.py).
NOTEBOOK_TIMEOUT = 600
COLUMNS = ["student", "assignment", "notebook", "cell", "kind", "score", "max_score", "reason"]
MAX_REASON = 400
# Messages in nbgrader's log that explain a failed autograde better than its last line does.
KNOWN_FAILURES = {
    "DeadKernelError": "the kernel died while running the notebook (it crashed, exited or ran out of memory); "
                       "every cell scores 0",
    "Kernel didn't respond": "the notebook's kernel did not start; every cell scores 0",
}


@dataclass
class Row:
    student: str
    assignment: str
    notebook: str
    cell: str
    kind: str  # "auto" | "manual"
    score: float | None  # None: a manual cell not graded yet
    max_score: float
    reason: str


@dataclass(frozen=True)
class GradedCell:
    """A cell that carries points, as the source notebook defines it."""

    name: str
    kind: str
    max_score: float


def graded_cells(notebook_path: Path) -> list[GradedCell]:
    """The graded cells of a source notebook, in order: tests are 'auto', written answers 'manual'."""
    cells = []
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            kind = "auto" if cell.cell_type == "code" and not meta.get("solution") else "manual"
            cells.append(GradedCell(meta["grade_id"], kind, float(meta.get("points", 0))))
    return cells


def grade(submissions: Path, out: Path, assignment_ids: list[str] | None = None, workers: int = 1,
          source: Path = SOURCE, timeout: float = NOTEBOOK_TIMEOUT, scheduler: str | None = None,
          gradebook: str | None = None, student_regexp: str = intake.CANVAS_FILE, sandbox: bool = True) -> list[Row]:
    """Grade every submission found; write OUT/grades.csv, OUT/intake.csv and OUT/feedback; return the rows.

    `scheduler`: address of a running Dask scheduler (its workers must see OUT and the submissions);
    default: a LocalCluster with `workers` processes. `gradebook`: the class gradebook's URL or SQLite path
    (default OUT/gradebook.db). `sandbox`: start student kernels through autograder.sandbox (limits, no
    network, hidden files, no root).
    """
    ids = assignment_ids or all_assignments(source)
    unknown = sorted(set(ids) - set(all_assignments(source)))
    if unknown:
        raise ValueError(f"unknown assignment(s) {unknown}; known: {all_assignments(source)}")
    out, source = Path(out).resolve(), Path(source).resolve()
    out.mkdir(parents=True, exist_ok=True)
    class_gradebook = gradebook_url(gradebook or out / "gradebook.db")
    expected = {a: notebooks(a, source) for a in all_assignments(source)}
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        root = intake.unpack(Path(submissions).resolve(), Path(scratch), student_regexp)
        found, notes = intake.collect(root, ids, expected, source, student_regexp)
        templates = {a: _prepare_template(out / "work" / "_templates" / a, source, a, class_gradebook)
                     for a in sorted({s.assignment for s in found})}
        jobs = [(s, templates[s.assignment], out, source, timeout, sandbox) for s in found]
        batches = _run_on_dask(jobs, workers, scheduler)
    rows = _merge_into_gradebook(found, batches, class_gradebook)
    write_csv(rows, out / "grades.csv")
    _write_notes(notes, out / "intake.csv")
    return rows


def _run_on_dask(jobs: list[tuple], workers: int, scheduler: str | None) -> list[list[Row]]:
    """Grade every job on Dask; a job whose task fails becomes rows with the reason, never a lost result."""
    if not jobs:
        return []
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        # Processes, one thread each: the real work happens in each job's child process and kernel.
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=0)
        client = Client(cluster)
    try:
        futures = client.map(_grade_job, jobs, pure=False)
        return [_result_or_reason(future, job) for future, job in zip(futures, jobs)]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _grade_job(job: tuple) -> list[Row]:
    return _grade_one(*job)


def _result_or_reason(future, job: tuple) -> list[Row]:
    submission, _, out, source, *_ = job
    try:
        return future.result()
    except Exception as error:  # the task itself died: still one row per cell, with the reason
        cells = graded_cells(source / submission.assignment / submission.notebook)
        return _all_failed(submission, cells, f"grading crashed: {type(error).__name__}: {error}",
                           _feedback_path(out, submission))


def _merge_into_gradebook(found: list[intake.Submission], batches: list[list[Row]], url: str) -> list[Row]:
    """Record every automatic score in the class gradebook; take manual scores a grader already gave from it.

    Only this process writes, one submission after another, so the database sees no concurrent writers.
    """
    rows = []
    with warnings.catch_warnings(), Gradebook(url) as gradebook:
        # nbgrader's own session handling triggers harmless SQLAlchemy autoflush warnings here.
        warnings.simplefilter("ignore", SAWarning)
        for submission, batch in zip(found, batches):
            gradebook.update_or_create_student(submission.student)
            gradebook.update_or_create_submission(submission.assignment, submission.student)
            name = submission.notebook.removesuffix(".ipynb")
            for row in batch:
                grade = gradebook.find_grade(row.cell, name, submission.assignment, submission.student)
                if row.kind == "auto":
                    grade.auto_score = row.score
                    grade.needs_manual_grade = False
                elif grade.manual_score is not None and not submission.problem:
                    row.score, row.reason = grade.manual_score, ""
                rows.append(row)
            gradebook.db.commit()
    return rows


def _write_notes(notes: list[intake.Note], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "file", "note"])
        writer.writerows((n.student, n.file, n.note) for n in notes)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["score"] = "" if row.score is None else f"{row.score:g}"
            record["max_score"] = f"{row.max_score:g}"
            writer.writerow(record)


def _prepare_template(template: Path, source: Path, assignment: str, class_gradebook: str) -> Path:
    """A course directory holding the assignment's source and a gradebook that knows its cells.

    The class gradebook learns the assignment's cells too, so that the results can be merged into it.
    """
    if template.exists():
        shutil.rmtree(template)
    (template / "source").mkdir(parents=True)
    shutil.copytree(source / assignment, template / "source" / assignment)
    generate(template, [assignment], gradebook=template / "gradebook.db")
    generate(template, [assignment], gradebook=class_gradebook)
    return template


def _grade_one(submission: intake.Submission, template: Path, out: Path, source: Path, timeout: float,
               sandbox: bool) -> list[Row]:
    cells = graded_cells(source / submission.assignment / submission.notebook)
    feedback = _feedback_path(out, submission)
    if submission.problem:
        return _all_failed(submission, cells, submission.problem, feedback)
    workdir = out / "work" / submission.student / submission.assignment
    _prepare_workdir(workdir, template, submission, sandbox)
    problem = _run_worker(workdir, submission, timeout)
    if problem:
        return _all_failed(submission, cells, problem, feedback)
    shutil.copyfile(workdir / "feedback" / submission.student / submission.assignment / feedback.name, feedback)
    return _read_scores(workdir, submission, cells)


def _feedback_path(out: Path, submission: intake.Submission) -> Path:
    path = out / "feedback" / submission.student / submission.assignment / submission.notebook.replace(".ipynb", ".html")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _prepare_workdir(workdir: Path, template: Path, submission: intake.Submission, sandbox: bool) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(template / "source", workdir / "source")
    if sandbox:
        _install_sandbox_kernel(workdir)
    shutil.copyfile(template / "gradebook.db", workdir / "gradebook.db")
    submitted = workdir / "submitted" / submission.student / submission.assignment
    submitted.mkdir(parents=True)
    shutil.copyfile(submission.path, submitted / submission.notebook)


def _install_sandbox_kernel(workdir: Path) -> None:
    """A `python3` kernelspec, private to this submission, that starts the kernel through autograder.sandbox."""
    spec = workdir / ".jupyter" / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({
        "argv": [sys.executable, "-m", "autograder.sandbox", str(workdir), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)", "language": "python"}))


def _run_worker(workdir: Path, submission: intake.Submission, timeout: float) -> str:
    """Autograde in a child process; return why it failed, or '' on success."""
    # JUPYTER_PATH comes first in Jupyter's search, so this submission's own `python3` kernelspec (the
    # sandbox, when installed) wins over the environment's.
    jupyter = workdir / ".jupyter"
    env = dict(os.environ, JUPYTER_PATH=str(jupyter), JUPYTER_DATA_DIR=str(jupyter),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"))
    command = [sys.executable, "-m", "autograder.worker", str(workdir), submission.assignment, submission.student]
    with open(workdir / "worker.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the kernel is in the same session: it goes too
            process.wait()
            return f"timeout: the notebook ran for more than {timeout:g} s and was stopped"
    try:
        outcome = json.loads((workdir / "worker.json").read_text())
    except (OSError, ValueError):
        return f"grading crashed (exit status {process.returncode}); see {workdir / 'worker.log'}"
    if not outcome["autograde"]["success"]:
        log = (outcome["autograde"].get("log") or "") + (outcome["autograde"].get("error") or "")
        for marker, reason in KNOWN_FAILURES.items():
            if marker in log:
                return reason
        return "autograding failed: " + _root_cause(log)
    if not outcome.get("feedback", {}).get("success"):
        return "feedback generation failed: " + _last_line(outcome.get("feedback", {}).get("error"))
    return ""


def _read_scores(workdir: Path, submission: intake.Submission, cells: list[GradedCell]) -> list[Row]:
    name = submission.notebook.removesuffix(".ipynb")
    autograded = workdir / "autograded" / submission.student / submission.assignment / submission.notebook
    errors = _errors_by_cell(nbformat.read(autograded, as_version=4))
    with Gradebook(f"sqlite:///{workdir / 'gradebook.db'}") as gradebook:
        grades = {g.name: (g.auto_score, g.manual_score)
                  for g in gradebook.find_submission_notebook(name, submission.assignment, submission.student).grades}
    rows = []
    for cell in cells:
        auto_score, manual_score = grades.get(cell.name, (None, None))
        if cell.kind == "manual":
            score = manual_score
            reason = "awaiting manual grading" if score is None else ""
        else:
            score = manual_score if manual_score is not None else (auto_score or 0.0)
            reason = "" if score >= cell.max_score else (errors.get(cell.name) or "the test cell did not pass")
        rows.append(Row(submission.student, submission.assignment, submission.notebook, cell.name, cell.kind,
                        score, cell.max_score, reason))
    return rows


def _errors_by_cell(nb) -> dict[str, str]:
    """grade_id -> 'ExceptionName: message' of the first error the cell showed."""
    errors = {}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and grade_id:
                message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip().rstrip(":")
                errors.setdefault(grade_id, message[:MAX_REASON])
    return errors


def _all_failed(submission: intake.Submission, cells: list[GradedCell], reason: str, feedback: Path) -> list[Row]:
    feedback.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(submission.notebook)}</title></head>"
        f"<body><h1>{html.escape(submission.assignment)} / {html.escape(submission.notebook)}</h1>"
        f"<p>This notebook could not be graded: {html.escape(reason)}</p>"
        "<p>Every graded cell scores 0. Submit the notebook again or ask your instructor.</p></body></html>")
    return [Row(submission.student, submission.assignment, submission.notebook, cell.name, cell.kind, 0.0,
                cell.max_score, reason[:MAX_REASON]) for cell in cells]


def _root_cause(log: str) -> str:
    """The last exception line of nbgrader's log that is not nbgrader's generic wrapper."""
    causes = [line.strip() for line in log.splitlines()
              if re.match(r"^\s*[\w.]+(Error|Exception|Exit)\b.*:", line) and "NbGraderException" not in line]
    return (causes[-1] if causes else _last_line(log))[:MAX_REASON]


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no details")[:MAX_REASON]
