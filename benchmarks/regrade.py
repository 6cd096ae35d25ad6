"""A rerun with nothing changed against the first grading of the same class, in the same run.

A class of `--students` submissions of one assignment (solved and one-mistake notebooks, from
autograder.commands.demo) is graded once into OUT, then graded again into the same OUT: every submission's
inputs are unchanged, so the rerun only reads the submissions and writes OUT's files (no kernel starts: the
preflight runs only when something is to be graded).
Then one student's notebook changes and the class is graded a third time. Printed: the three wall times
and their ratios to the first.

    python benchmarks/regrade.py [--students 6] [--assignment 01_databases] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.commands import demo as sample_class
from autograder.layout import REPO, notebooks


def grade(submissions: Path, out: Path, assignment: str, workers: int) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(submissions),
            "--out",
            str(out),
            "--assignment",
            assignment,
            "--workers",
            str(workers),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--assignment", default="01_databases")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    notebook = notebooks(args.assignment)[0]
    function, wrong_code = sample_class.WRONG_ANSWERS[args.assignment]
    versions = {
        "perfect": sample_class.solved(args.assignment, notebook),
        "one_wrong": sample_class.solved(args.assignment, notebook, replace={function: wrong_code}),
    }
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for i in range(args.students):
            path = root / "class" / f"s{i:03d}" / args.assignment / notebook
            path.parent.mkdir(parents=True)
            nbformat.write(versions["perfect" if i % 2 == 0 else "one_wrong"], path)
        first, _ = grade(root / "class", root / "out", args.assignment, args.workers)
        unchanged, said = grade(root / "class", root / "out", args.assignment, args.workers)
        assert f"{args.students} notebook(s) unchanged" in said, said
        nbformat.write(versions["perfect"], root / "class" / "s001" / args.assignment / notebook)
        one_changed, said = grade(root / "class", root / "out", args.assignment, args.workers)
        assert f"{args.students - 1} notebook(s) unchanged" in said, said
    print(f"{'run':<34} {'wall (s)':>9} {'ratio to first':>15}")
    for name, seconds in (
        ("first grading", first),
        ("rerun, nothing changed", unchanged),
        ("rerun, one notebook changed", one_changed),
    ):
        print(f"{name:<34} {seconds:>9.1f} {seconds / first:>15.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
