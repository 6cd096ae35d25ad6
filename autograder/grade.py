"""`python -m autograder grade SUBMISSIONS --out OUT`: autograde a class, never stopping at a bad submission.

Each submitted notebook is graded by nbgrader in its own course directory (OUT/work/<student>/<assignment>)
with its own copy of the assignment's gradebook, in a child process with a wall-clock limit. So a
submission that hangs, crashes or corrupts its files affects only its own rows, and submissions can be
graded in parallel without sharing a database. The results are one row per graded cell in OUT/grades.csv
and one HTML feedback file per notebook in OUT/feedback/<student>/<assignment>/.
"""
from __future__ import annotations

import csv
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from . import intake
from .paths import SOURCE, assignments as all_assignments, notebooks
from .release import generate

# Wall-clock limit for one notebook (nbgrader limits single cells: see nbgrader_config.py).
NOTEBOOK_TIMEOUT = 600
COLUMNS = ["student", "assignment", "notebook", "cell", "kind", "score", "max_score", "reason"]
MAX_REASON = 400


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
          source: Path = SOURCE, timeout: float = NOTEBOOK_TIMEOUT) -> list[Row]:
    """Grade every submission found; write OUT/grades.csv and OUT/feedback; return the rows."""
    ids = assignment_ids or all_assignments(source)
    unknown = sorted(set(ids) - set(all_assignments(source)))
    if unknown:
        raise ValueError(f"unknown assignment(s) {unknown}; known: {all_assignments(source)}")
    out, source = Path(out).resolve(), Path(source).resolve()
    out.mkdir(parents=True, exist_ok=True)
    expected = {a: notebooks(a, source) for a in ids}
    with tempfile.TemporaryDirectory() as scratch:
        root = intake.unpack(Path(submissions), Path(scratch))
        found = intake.collect(root, ids, expected)
        templates = {a: _prepare_template(out / "work" / "_templates" / a, source, a)
                     for a in sorted({s.assignment for s in found})}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            batches = list(pool.map(lambda s: _grade_one(s, templates[s.assignment], out, source, timeout), found))
    rows = [row for batch in batches for row in batch]
    write_csv(rows, out / "grades.csv")
    return rows


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["score"] = "" if row.score is None else f"{row.score:g}"
            record["max_score"] = f"{row.max_score:g}"
            writer.writerow(record)


def _prepare_template(template: Path, source: Path, assignment: str) -> Path:
    """A course directory holding the assignment's source and a gradebook that knows its cells."""
    if template.exists():
        shutil.rmtree(template)
    (template / "source").mkdir(parents=True)
    shutil.copytree(source / assignment, template / "source" / assignment)
    generate(template, [assignment], gradebook=template / "gradebook.db")
    return template


def _grade_one(submission: intake.Submission, template: Path, out: Path, source: Path, timeout: float) -> list[Row]:
    cells = graded_cells(source / submission.assignment / submission.notebook)
    feedback = out / "feedback" / submission.student / submission.assignment / submission.notebook.replace(".ipynb", ".html")
    feedback.parent.mkdir(parents=True, exist_ok=True)
    if submission.problem:
        return _all_failed(submission, cells, submission.problem, feedback)
    workdir = out / "work" / submission.student / submission.assignment
    _prepare_workdir(workdir, template, submission)
    problem = _run_worker(workdir, submission, timeout)
    if problem:
        return _all_failed(submission, cells, problem, feedback)
    shutil.copyfile(workdir / "feedback" / submission.student / submission.assignment / feedback.name, feedback)
    return _read_scores(workdir, submission, cells)


def _prepare_workdir(workdir: Path, template: Path, submission: intake.Submission) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(template / "source", workdir / "source")
    shutil.copyfile(template / "gradebook.db", workdir / "gradebook.db")
    submitted = workdir / "submitted" / submission.student / submission.assignment
    submitted.mkdir(parents=True)
    shutil.copyfile(submission.path, submitted / submission.notebook)


def _run_worker(workdir: Path, submission: intake.Submission, timeout: float) -> str:
    """Autograde in a child process; return why it failed, or '' on success."""
    env = dict(os.environ, JUPYTER_DATA_DIR=str(workdir / ".jupyter"), JUPYTER_RUNTIME_DIR=str(workdir / ".jupyter" / "runtime"))
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
        return "autograding failed: " + _last_line(outcome["autograde"].get("error") or outcome["autograde"].get("log"))
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


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no details")[:MAX_REASON]
