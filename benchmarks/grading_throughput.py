"""Class grading throughput, in submissions per minute, with 1 and with 2 Dask workers, in the same run.

A class of K students, each handing in the solved notebook of every assignment (all 7 by default; they run in
their fast mode under grading), is graded end to end by `python -m autograder grade --workers N` for each N:
start-up, templates, every notebook, the merge into the gradebook and grades.csv. Scaling efficiency is
throughput(2) / (2 * throughput(1)): 1.0 would be perfect use of the second worker. The machine is shared and
noisy, so its core count and load average are printed with the results.

    python benchmarks/grading_throughput.py [--students 2] [--workers 1 2] [--repeats 1] [--assignment ID ...]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.commands import demo as sample_class
from autograder.layout import REPO, assignments, notebooks


def machine() -> str:
    """Cores and load average, for reading timings taken on a shared machine."""
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cores: {os.cpu_count()} (usable here: {len(os.sched_getaffinity(0))}); load average 1/5/15 min: {load}"


def write_class(target: Path, students: dict[str, dict[str, object]]) -> int:
    """Write {student: {assignment: notebook node}} as <student>/<assignment>/<notebook>; return the count."""
    count = 0
    for student, handed_in in students.items():
        for assignment, nb in handed_in.items():
            path = target / student / assignment / notebooks(assignment)[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
            count += 1
    return count


def time_grade(submissions: Path, out: Path, ids: list[str], workers: int, extra: list[str]) -> float:
    """Seconds for one whole `autograder grade` run, as an instructor would start it."""
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(submissions),
        "--out",
        str(out),
        "--workers",
        str(workers),
        *extra,
    ]
    for assignment in ids:
        command += ["--assignment", assignment]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"grading failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed


def rows(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as file:
        return list(csv.DictReader(file))


def lost_points(out: Path, students: set[str]) -> list[dict]:
    """Automatic cells of `students` (who handed in solutions) that did not get full marks."""
    return [r for r in rows(out) if r["student"] in students and r["kind"] == "auto" and r["score"] != r["max_score"]]


def extra_args(args) -> list[str]:
    extra = [] if args.sandbox else ["--no-sandbox"]
    return extra + (["--gradebook", args.gradebook] if args.gradebook else [])


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        help="grade without autograder.sandbox.bubblewrap (the CLI's default is with it)",
    )
    parser.add_argument("--gradebook", metavar="URL", help="class gradebook URL (default: SQLite in OUT)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2, help="students, each with every assignment solved")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--assignment", action="append", dest="ids")
    add_common_options(parser)
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    ids = args.ids or assignments()
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        solved = {a: sample_class.solved(a, notebooks(a)[0]) for a in ids}
        students = {f"student{i:03d}": solved for i in range(args.students)}
        count = write_class(root / "submissions", students)
        print(
            f"class: {args.students} student(s) x {len(ids)} assignment(s) = {count} submissions; "
            f"sandbox {'on' if args.sandbox else 'off'}"
        )
        results = {}
        # Alternate worker counts within each repeat, so that drifting machine load hits both alike.
        for repeat in range(args.repeats):
            for workers in args.workers:
                out = root / f"out-w{workers}-r{repeat}"
                seconds = time_grade(root / "submissions", out, ids, workers, extra_args(args))
                lost = lost_points(out, set(students))
                if lost:
                    print(f"warning: {len(lost)} solved cell(s) lost points, e.g. {lost[0]}")
                results.setdefault(workers, []).append(seconds)
                print(f"  workers {workers}, run {repeat + 1}: {seconds:.1f} s")
    print(f"\n{'workers':>7} {'median wall (s)':>16} {'submissions/min':>16} {'s/submission':>13}")
    throughput = {}
    for workers, times in results.items():
        wall = statistics.median(times)
        throughput[workers] = count / (wall / 60)
        print(f"{workers:>7} {wall:>16.1f} {throughput[workers]:>16.2f} {wall / count:>13.1f}")
    if 1 in throughput and 2 in throughput:
        print(f"scaling efficiency throughput(2) / (2 * throughput(1)): {throughput[2] / (2 * throughput[1]):.2f}")
    print(machine())


if __name__ == "__main__":
    main()
