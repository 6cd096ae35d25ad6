"""Wall time to grade a synthetic class of N submissions of one assignment (default: 200 of 01_databases).

The class mixes what an instructor gets: half solved notebooks, a quarter untouched release notebooks and a
quarter with one typical mistake (autograder.commands.demo). One `python -m autograder grade` run grades it
with --workers W (default 2); the grades are checked (solved: full marks; untouched: nothing; one mistake:
exactly that function's points lost) so that the time is that of real grading. Printed: wall time,
submissions per minute and wall time per submission, with the machine's cores and load.

    python benchmarks/class_of_200.py [--students 200] [--workers 2] [--assignment 01_databases] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of grading_throughput.py
from grading_throughput import add_common_options, extra_args, machine, rows, time_grade, write_class  # noqa: E402

from autograder.commands import demo as sample_class  # noqa: E402
from autograder.layout import RELEASE, REPO, notebooks  # noqa: E402

# The class's mix, repeated in this order: 2 solved, 1 untouched, 1 with one mistake out of every 4.
MIX = ("perfect", "untouched", "perfect", "one_wrong")


def build(target: Path, assignment: str, n: int) -> dict[str, str]:
    """N submissions of `assignment` under student ids s0000..., mixed as MIX; return {student: kind}."""
    notebook = notebooks(assignment)[0]
    wrong = sample_class.WRONG_ANSWERS[assignment]
    versions = {
        "perfect": sample_class.solved(assignment, notebook),
        "untouched": nbformat.read(RELEASE / assignment / notebook, as_version=4),
        "one_wrong": sample_class.solved(assignment, notebook, replace=dict([wrong])),
    }
    kinds = {f"s{i:04d}": MIX[i % len(MIX)] for i in range(n)}
    write_class(target, {student: {assignment: versions[kind]} for student, kind in kinds.items()})
    return kinds


def unexpected(out: Path, assignment: str, kinds: dict[str, str]) -> list[dict]:
    """Automatic rows whose score is not what the student's kind of submission deserves."""
    wrong_cell = f"test_{sample_class.WRONG_ANSWERS[assignment][0]}"
    bad = []
    for row in rows(out):
        if row["kind"] != "auto":
            continue
        kind, full = kinds[row["student"]], row["score"] == row["max_score"]
        expected_full = kind == "perfect" or (kind == "one_wrong" and row["cell"] != wrong_cell)
        if full != expected_full:
            bad.append(row)
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=200, help="submissions in the class (default 200)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--assignment", default="01_databases")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build and grade in DIR and keep it")
    add_common_options(parser)
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    print(machine())
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        kinds = build(root / "submissions", args.assignment, args.students)
        mix = {k: list(kinds.values()).count(k) for k in dict.fromkeys(MIX)}
        print(
            f"class: {args.students} submissions of {args.assignment} ({mix}); workers {args.workers}; "
            f"sandbox {'on' if args.sandbox else 'off'}"
        )
        out = root / "out"
        wall = time_grade(root / "submissions", out, [args.assignment], args.workers, extra_args(args))
        bad = unexpected(out, args.assignment, kinds)
    print(f"\n{'submissions':>11} {'workers':>7} {'wall (s)':>9} {'submissions/min':>16} {'wall/submission (s)':>20}")
    print(
        f"{args.students:>11} {args.workers:>7} {wall:>9.1f} {args.students / (wall / 60):>16.2f} "
        f"{wall / args.students:>20.2f}"
    )
    if bad:
        print(f"warning: {len(bad)} automatic cell(s) scored unlike their submission's kind, e.g. {bad[0]}")
    else:
        print("grades as expected for every submission")
    print(machine())


if __name__ == "__main__":
    main()
