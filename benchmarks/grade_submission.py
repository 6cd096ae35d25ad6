"""Time `python -m autograder grade` on one perfect submission per assignment.

Baseline, measured in the same run: executing the same solved notebook with nbclient alone (kernel start and
the notebook's own code, no nbgrader). The ratio is the grading pipeline's overhead.

    python benchmarks/grade_submission.py [--repeats 3] [--assignment 01_databases ...]
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

from autograder import sample_class
from autograder.paths import REPO, assignments, notebooks


def time_grade(submissions: Path, out: Path, assignment: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out),
                    "--assignment", assignment], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def time_plain_execution(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--assignment", action="append", dest="ids")
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    os.environ["DP_COURSE_FAST"] = "1"  # the baseline runs in the same fast mode as autograding
    print(f"{'assignment':<18} {'grade median (s)':>17} {'plain run median (s)':>21} {'ratio':>6}")
    for assignment in args.ids or assignments():
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            notebook = notebooks(assignment)[0]
            path = root / "submissions" / "student" / assignment / notebook
            path.parent.mkdir(parents=True)
            nbformat.write(sample_class.solved(assignment, notebook), path)
            grade = [time_grade(root / "submissions", root / f"out{i}", assignment) for i in range(args.repeats)]
            plain = [time_plain_execution(path) for _ in range(args.repeats)]
        g, p = statistics.median(grade), statistics.median(plain)
        print(f"{assignment:<18} {g:>17.1f} {p:>21.1f} {g / p:>6.1f}")


if __name__ == "__main__":
    main()
