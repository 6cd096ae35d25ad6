"""What grading costs over running the notebook: one submission alone, one inside a batch, a whole course.

Baseline, measured in the same run: the same solved notebook executed by nbclient alone in grading mode
(`NBGRADER_EXECUTION` set, so the notebook runs in fast mode as the grader runs it; no sandbox, no hidden
tests, no nbgrader). Three costs are compared with it (medians of `--repeats`):

- alone: `python -m autograder grade` on one submission, start to finish (imports, preflight, bundle,
  grading, gradebook, feedback), timed in pairs with the baseline (baseline, then alone, `--repeats`
  times); `ratio` is the ratio of the medians, `paired` the median of the pairs' ratios;
- in a batch: one more submission graded by a warm grading process (`grade_submission`, as a Dask worker
  runs it), which is what each submission of a class costs;
- the course: one student's seven notebooks through one `grade` run on one worker, against the sum of the
  seven baselines.

`--compare-with DIR` also times `python -m autograder grade` of another checkout (for example an older
commit: `git worktree add DIR COMMIT`) on the same submissions, for a before/after table.

    python benchmarks/grade_submission.py [--repeats 3] [--assignment 01_databases ...] [--course]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.batch import bundles, submission
from autograder.commands import demo as sample_class
from autograder.layout import REPO, SOURCE, assignments, notebooks
from autograder.settings import load_grading


def time_cli(submissions: Path, out: Path, ids: list[str], repository: Path = REPO) -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out)]
    for assignment in ids:
        command += ["--assignment", assignment]
    subprocess.run(
        command, cwd=repository, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(repository)}
    )
    return time.perf_counter() - start


def time_plain(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def time_in_batch(path: Path, assignment: str, scratch: Path, repeats: int) -> list[float]:
    """Per submission in a warm grading process: the first call pays the imports and is not counted."""
    bundle = bundles.make_bundle(SOURCE, assignment, f"sqlite:///{scratch / 'class.db'}", scratch)
    limits = load_grading()
    job = submission.Job("student", assignment, path.name, path.read_bytes(), seed=1)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        result = submission.grade_submission(job, bundle, limits)
        times.append(time.perf_counter() - start)
        assert not result.grading_error, result.grading_error
    return times[1:]


def write_submission(root: Path, assignment: str) -> Path:
    notebook = notebooks(assignment)[0]
    path = root / "submissions" / "student" / assignment / notebook
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(sample_class.solved(assignment, notebook), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--assignment", action="append", dest="ids")
    parser.add_argument("--course", action="store_true", help="also grade all seven notebooks in one run")
    parser.add_argument("--compare-with", type=Path, metavar="DIR", help="another checkout to time alone")
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    os.environ["NBGRADER_EXECUTION"] = "autograde"  # the baseline runs as the grader runs the notebook
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    header = (
        f"{'assignment':<24} {'baseline (s)':>12} {'alone (s)':>10} {'ratio':>6} {'paired':>7} "
        f"{'in batch (s)':>13} {'ratio':>6}"
    )
    print(header + (f" {'other checkout alone (s)':>25} {'ratio':>6}" if args.compare_with else ""))
    baselines = {}
    for assignment in args.ids or assignments():
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            path = write_submission(root, assignment)
            plain, alone = [], []
            for i in range(args.repeats):  # in pairs, so that a slow spell of the machine hits both alike
                plain.append(time_plain(path))
                alone.append(time_cli(root / "submissions", root / f"out{i}", [assignment]))
            batch = time_in_batch(path, assignment, root, args.repeats)
            other = (
                [
                    time_cli(root / "submissions", root / f"other{i}", [assignment], args.compare_with)
                    for i in range(args.repeats)
                ]
                if args.compare_with
                else []
            )
        p, a, b = statistics.median(plain), statistics.median(alone), statistics.median(batch)
        baselines[assignment] = p
        paired = statistics.median(x / y for x, y in zip(alone, plain))
        line = f"{assignment:<24} {p:>12.1f} {a:>10.1f} {a / p:>6.2f} {paired:>7.2f} {b:>13.1f} {b / p:>6.2f}"
        if other:
            o = statistics.median(other)
            line += f" {o:>25.1f} {o / p:>6.2f}"
        print(line, flush=True)
    if args.course:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            for assignment in assignments():
                write_submission(root, assignment)
                baselines.setdefault(
                    assignment, time_plain(root / "submissions" / "student" / assignment / notebooks(assignment)[0])
                )
            course = time_cli(root / "submissions", root / "out", assignments())
        total = sum(baselines[a] for a in assignments())
        print(
            f"whole course, one student, one worker: {course:.1f} s for {total:.1f} s of baselines "
            f"(ratio {course / total:.2f})"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
