"""`python -m autograder grade SUBMISSIONS --out OUT`: autograde a class, never stopping at a bad submission.

Before the batch, once, a preflight checks the sandbox, the datasets and the disk (autograder.batch.preflight).
Each submission is then graded by `autograder.batch.submission.grade_submission`, which takes the notebook's bytes
and the assignment's bundle and returns the result as data, on Dask (a LocalCluster of `workers`
processes, or an existing scheduler) or, for one worker, in this process. This process alone writes OUT and
the class gradebook (OUT/gradebook.db, or any nbgrader database URL such as PostgreSQL), one submission
after another. Outputs: one row per graded cell in OUT/grades.csv, the feedback in
OUT/feedback/<student>/<assignment>/<notebook>.html, the autograded notebooks in OUT/autograded/, and
OUT/intake.csv listing files that were found but not graded.
"""

from __future__ import annotations

import concurrent.futures
import csv
import gc
import hashlib
import html
import importlib
import json
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning
from tqdm.auto import tqdm

from autograder import imports
from autograder.batch import preflight, seeds
from autograder.batch.bundles import make_bundle
from autograder.batch.submission import (
    GRADING_ERROR,
    Bundle,
    CellResult,
    GradedCell,
    Job,
    SubmissionResult,
    grade_submission,
    is_grading_error,
)
from autograder.batch.submission import graded_cells as cells_of_notebook
from autograder.batch.version import VERSION
from autograder.intake import submissions as intake
from autograder.layout import OutFolder, notebooks
from autograder.layout import assignments as all_assignments
from autograder.pipeline import feedback, formgrader
from autograder.pipeline.config import gradebook_url
from autograder.settings import GradingSettings
from autograder.sinks import safe_text
from autograder.term import late

COLUMNS = ["student", "assignment", "notebook", "cell", "kind", "score", "max_score", "reason", "sandbox", "seed"]


@dataclass
class Row:
    student: str
    assignment: str
    notebook: str
    cell: str
    kind: str  # "auto" | "manual"
    score: float | None  # None: a manual cell not graded yet, or a grading error
    max_score: float
    reason: str
    sandbox: str = "on"  # "off" when graded with --no-sandbox
    seed: int = 0  # the hidden checks' seed of this submission (autograder.batch.seeds)


@dataclass
class Summary:
    submissions: int
    students: int
    grading_errors: list[tuple[str, str, str]]  # (student, notebook, reason)
    feedback_missing: list[tuple[str, str, str]]
    sandboxed: bool
    unchanged: int = 0  # submissions whose grade was kept: their inputs had not changed


def graded_cells(notebook_path: Path) -> list[GradedCell]:
    """The graded cells of a source notebook file (see autograder.batch.submission.graded_cells)."""
    return cells_of_notebook(nbformat.read(notebook_path, as_version=4))


def grade_class(
    submissions: Path,
    out: Path,
    assignment_ids: list[str] | None,
    source: Path,
    gradebook: str | None,
    student_regexp: str,
    settings: GradingSettings,
    progress: bool = False,
    students: list[str] | None = None,
    force: bool = False,
) -> tuple[list[Row], Summary]:
    """Grade the class into OUT; return this run's rows and a summary.

    `students` restricts the run to those students. A submission whose inputs (notebook, assignment
    source, grading code and lock file, seed, due dates and penalty policy, grading settings) are unchanged
    since OUT last graded it keeps its grade and is not run again, unless `force`; grading errors are always
    redone. Rows of submissions outside this run stay in OUT's files as they were.
    """
    ids = assignment_ids or all_assignments(source)
    unknown = sorted(set(ids) - set(all_assignments(source)))
    if unknown:
        raise ValueError(f"unknown assignment(s) {unknown}; known: {all_assignments(source)}")
    out, source = Path(out).resolve(), Path(source).resolve()
    out.mkdir(parents=True, exist_ok=True)
    class_gradebook = gradebook_url(gradebook or OutFolder(out).gradebook)
    expected = {a: notebooks(a, source) for a in all_assignments(source)}
    term = late.load_config()
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        root = intake.unpack(Path(submissions).resolve(), Path(scratch), student_regexp, settings)
        found, notes = intake.collect(root, ids, expected, source, student_regexp, term.time_zone, settings)
        intake.check_ids_unchanged(OutFolder(out).students, found)
        if students is not None:
            unknown_students = sorted(set(students) - {s.student for s in found})
            if unknown_students:
                raise ValueError(f"no submissions of student(s) {unknown_students} in {submissions}")
            found = [s for s in found if s.student in students]
            notes = [n for n in notes if n.student in students]
        cache = settings.bundle_cache
        bundles = {
            a: make_bundle(source, a, class_gradebook, Path(scratch), cache)
            for a in sorted({s.assignment for s in found})
        }
        secret = seeds.course_secret(settings.secret_file)
        jobs = [
            Job(
                s.student,
                s.assignment,
                s.notebook,
                s.path.read_bytes() if s.path and not s.problem else None,
                s.problem,
                seeds.derive_seed(secret, s.student, s.assignment),
            )
            for s in found
        ]
    digests = [input_digest(job, bundles[job.assignment], settings, term) for job in jobs]
    previous = Previous.read(out)
    reuse = [not force and previous.unchanged(job, digest) for job, digest in zip(jobs, digests)]
    todo = [j for j, kept in zip(jobs, reuse) if not kept]
    fresh = iter(run_jobs(todo, bundles, settings, out, progress))
    results = [previous.result(job) if kept else next(fresh) for job, kept in zip(jobs, reuse)]
    rows = merge(found, jobs, results, class_gradebook, settings.sandbox)
    write_outputs(out, [r for r, kept in zip(results, reuse) if not kept])
    formgrader.write_config(out, class_gradebook)  # formgrader on OUT's sanitised notebooks (docs/INSTRUCTOR.md)
    in_run = {(j.student, j.assignment, j.notebook) for j in jobs}
    intake.write_students(found, OutFolder(out).students)
    previous.keep_others(OutFolder(out).students, "students.csv", {(j.student,) for j in jobs}, ("student",))
    write_csv(rows, OutFolder(out).grades)
    previous.keep_others(OutFolder(out).grades, "grades.csv", in_run)
    late.write_late([_assess_lateness(s, r, term) for s, r in zip(found, results)], OutFolder(out).late)
    previous.keep_others(OutFolder(out).late, "late.csv", in_run)
    _write_inputs(OutFolder(out).inputs, previous, jobs, results, digests, in_run)
    _write_notes(notes, OutFolder(out).intake)
    # Pages that need what only OUT knows (late penalties, written answers' scores), and MathJax beside them.
    feedback.finish_pages(out, class_gradebook)
    summary = Summary(
        len(results),
        len({r.student for r in results}),
        [(r.student, r.notebook, r.grading_error) for r in results if r.grading_error],
        [(r.student, r.notebook, r.feedback_error) for r in results if r.feedback_error],
        settings.sandbox,
        sum(reuse),
    )
    return rows, summary


def input_digest(job: Job, bundle: Bundle, settings: GradingSettings, term: late.CourseConfig) -> str:
    """Everything a submission's grade depends on, hashed: what an incremental regrade compares."""
    hasher = hashlib.sha256()
    for part in (
        job.content or b"",
        job.problem.encode(),
        bundle.digest.encode(),
        str(job.seed).encode(),
        VERSION["code"].encode(),
        VERSION["lock"].encode(),
        term.digest.encode(),
        json.dumps(settings.grade_inputs(), sort_keys=True).encode(),
    ):
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()


@dataclass
class Previous:
    """What OUT holds from earlier runs: rows of its CSV files and the input digest of each submission."""

    tables: dict[str, list[dict]]
    digests: dict[tuple[str, str, str], str]

    @classmethod
    def read(cls, out: Path) -> Previous:
        tables = {}
        for name in ("grades.csv", "late.csv", "students.csv", "inputs.csv"):
            path = out / name
            tables[name] = safe_text.read_rows(path) if path.is_file() else []
        digests = {(r["student"], r["assignment"], r["notebook"]): r["digest"] for r in tables["inputs.csv"]}
        return cls(tables, digests)

    def _rows_of(self, job: Job) -> list[dict]:
        return [
            r
            for r in self.tables["grades.csv"]
            if (r["student"], r["assignment"], r["notebook"]) == (job.student, job.assignment, job.notebook)
        ]

    def unchanged(self, job: Job, digest: str) -> bool:
        rows = self._rows_of(job)
        return (
            self.digests.get((job.student, job.assignment, job.notebook)) == digest
            and bool(rows)
            and not any(is_grading_error(r) for r in rows)
        )

    def result(self, job: Job) -> SubmissionResult:
        """The grade OUT already holds for an unchanged submission."""
        cells = [
            CellResult(
                r["cell"], r["kind"], float(r["score"]) if r["score"] else None, float(r["max_score"]), r["reason"]
            )
            for r in self._rows_of(job)
        ]
        return SubmissionResult(job.student, job.assignment, job.notebook, cells)

    def keep_others(self, path: Path, name: str, in_run: set[tuple], key=("student", "assignment", "notebook")) -> None:
        """Append to the file just written the earlier rows of everything outside this run."""
        others = [r for r in self.tables[name] if tuple(r[k] for k in key) not in in_run]
        if not others:
            return
        with open(path, newline="") as file:
            fields = next(csv.reader(file))
        with open(path, "a", newline="") as file:
            safe_text.DictWriter(file, fieldnames=fields, extrasaction="ignore", restval="").writerows(others)


def _write_inputs(
    path: Path,
    previous: Previous,
    jobs: list[Job],
    results: list[SubmissionResult],
    digests: list[str],
    in_run: set[tuple],
) -> None:
    """OUT/inputs.csv: the input digest of every submission graded without a grading error, and what its
    grading cost (wall-clock and, where cgroups count it, its sandbox's CPU seconds; kept from the run that
    graded it when this run reused its grade)."""
    earlier = {(r["student"], r["assignment"], r["notebook"]): r for r in previous.tables["inputs.csv"]}
    records = {
        key: [digest, *_costs(earlier.get(key))] for key, digest in previous.digests.items() if key not in in_run
    }
    for job, result, digest in zip(jobs, results, digests):
        key = (job.student, job.assignment, job.notebook)
        if not result.grading_error:
            costs = [_seconds(result.seconds), _seconds(result.cpu_seconds)]
            records[key] = [digest, *(costs if result.seconds is not None else _costs(earlier.get(key)))]
    with open(path, "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(["student", "assignment", "notebook", "digest", "grading_seconds", "cpu_seconds"])
        writer.writerows((*key, *values) for key, values in sorted(records.items()))


def _costs(row: dict | None) -> list[str]:
    return [row.get("grading_seconds", ""), row.get("cpu_seconds", "")] if row else ["", ""]


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _assess_lateness(found: intake.Submission, result: SubmissionResult, term: late.CourseConfig):
    """Lateness and penalty of one notebook, from scratch (a regrade never stacks penalties)."""
    score = None if result.grading_error else sum(c.score or 0.0 for c in result.cells)
    return late.assess(found, score, sum(c.max_score for c in result.cells), term)


def run_jobs(
    jobs: list[Job], bundles: dict[str, Bundle], settings: GradingSettings, out: Path, progress: bool = False
) -> list[SubmissionResult]:
    """Every job's result, in order: on Dask for several workers or a scheduler, else in this process.

    The preflight runs first (it raises PreflightError and nothing is graded): never beside a submission,
    which could starve it and so stop the whole batch. In this process the first submission's own kernel
    stands in for the preflight's: every kernel runs Grading.kernel_probe before the notebook's first cell,
    and until one kernel has got past it, a kernel that fails to start or fails the probe stops the batch.

    The preflight runs before the warm-up thread starts, so that its imports (torchvision, medmnist) never
    meet the warm-up's (torch, the hidden checks) half made: see autograder.imports.
    """
    if not jobs:
        return []
    in_process = settings.workers <= 1 and not settings.scheduler
    assignments = sorted({j.assignment for j in jobs})
    preflight.check(settings, assignments, out, kernel=not in_process)
    # Made before the warm-up starts: tqdm's lock imports multiprocessing, as torch does.
    bar = tqdm(total=len(jobs), desc="grading", unit="notebook", disable=not progress)
    warming = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warm-up")
    try:
        if in_process:  # this process runs the hidden checks: import them (and torch) while the first kernel boots
            imports.before_warm_up()
            warming.submit(_warm_up, assignments)
            return _grade_here(jobs, bundles, settings, bar.update)
        from autograder.batch import cluster  # Dask is imported only when it is used

        return cluster.run(jobs, bundles, settings, bar.update)
    finally:
        bar.close()
        warming.shutdown(wait=True)


def _grade_here(
    jobs: list[Job], bundles: dict[str, Bundle], settings: GradingSettings, graded
) -> list[SubmissionResult]:
    """Grade in this process, one job after another; until a kernel has worked, a kernel failure (which
    happens before any student code) stops the batch as the preflight would."""
    results, kernel_worked = [], False
    for job in jobs:
        result = grade_submission(job, bundles[job.assignment], settings)
        if result.kernel_failed and not kernel_worked:
            raise preflight.PreflightError(
                result.grading_error.removeprefix(GRADING_ERROR)
                + " (no grading kernel has worked yet; nothing was graded)"
            )
        kernel_worked = kernel_worked or bool(result.autograded)
        results.append(result)
        graded()
    return results


def _warm_up(assignments: list[str]) -> None:
    """Import the hidden checks (torch, scipy: seconds), then fill the feedback exporter's caches.

    The imports run without the cyclic collector and are frozen after: they create long-lived objects only, and
    the collector's passes over them cost a second of this process's interpreter lock while its main thread
    sets up nbgrader and relays the first kernel's messages. Frozen, they are skipped by every later pass too.
    It all runs under autograder.imports.LOCK, which the grading thread takes to import the same modules.
    """
    with imports.LOCK:
        gc.disable()
        try:
            for assignment in assignments:
                try:
                    importlib.import_module(f"course.grading.nb{assignment[:2]}")
                except ImportError:
                    pass  # the check server reports a missing check module as the grader's own error
        finally:
            gc.freeze()
            gc.enable()
        feedback.warm_up()


def merge(
    found: list[intake.Submission], jobs: list[Job], results: list[SubmissionResult], url: str, sandboxed: bool
) -> list[Row]:
    """Record every automatic score in the class gradebook; take manual scores a grader already gave from it.

    Only this process writes, one submission after another, so the database sees no concurrent writers. A
    grading error leaves the gradebook as it was.
    """
    rows = []
    sandbox = "on" if sandboxed else "off"
    with warnings.catch_warnings(), Gradebook(url) as gradebook:
        # nbgrader's own session handling triggers harmless SQLAlchemy autoflush warnings here.
        warnings.simplefilter("ignore", SAWarning)
        for submission, job, result in zip(found, jobs, results):
            gradebook.update_or_create_student(submission.student)
            gradebook.update_or_create_submission(submission.assignment, submission.student)
            name = submission.notebook.removesuffix(".ipynb")
            for cell in result.cells:
                row = Row(
                    result.student,
                    result.assignment,
                    result.notebook,
                    cell.name,
                    cell.kind,
                    cell.score,
                    cell.max_score,
                    cell.reason,
                    sandbox,
                    job.seed,
                )
                grade = gradebook.find_grade(cell.name, name, submission.assignment, submission.student)
                if result.grading_error:
                    pass
                elif cell.kind == "auto":
                    grade.auto_score = cell.score
                    grade.needs_manual_grade = False
                elif grade.manual_score is not None and not submission.problem:
                    row.score, row.reason = grade.manual_score, ""
                rows.append(row)
            gradebook.db.commit()
    return rows


def write_outputs(out: Path, results: list[SubmissionResult]) -> None:
    """Feedback and autograded notebooks into OUT, from the results' data (OUT is the grader's alone)."""
    for result in results:
        feedback = result.feedback or _no_feedback(result)
        _write(OutFolder(out).feedback(result.student, result.assignment, result.notebook), feedback)
        if result.autograded:
            _write(OutFolder(out).autograded(result.student, result.assignment, result.notebook), result.autograded)


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_bytes(content)


def _no_feedback(result: SubmissionResult) -> bytes:
    if result.grading_error:
        reason = result.grading_error
        what = "The grader failed, not your notebook: it will be graded again. No points were taken."
    elif result.feedback_error:
        reason = result.feedback_error
        what = "Your scores stand; only this page could not be made. Ask your instructor for the details."
    else:
        reason = result.cells[0].reason if result.cells else "no graded cells"
        what = "Every graded cell scores 0. Submit the notebook again or ask your instructor."
    title = html.escape(f"{result.assignment} / {result.notebook}")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>This notebook has no feedback page: {html.escape(reason)}</p><p>{html.escape(what)}</p>"
        "</body></html>"
    ).encode()


def _write_notes(notes: list[intake.Note], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = safe_text.writer(file)
        writer.writerow(["student", "file", "note"])
        writer.writerows((n.student, n.file, n.note) for n in notes)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = safe_text.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["score"] = "" if row.score is None else f"{row.score:g}"
            record["max_score"] = f"{row.max_score:g}"
            writer.writerow(record)
