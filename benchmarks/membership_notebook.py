"""Wall time of notebook 07 (membership inference), run top to bottom with nbclient like the test suite does.

    python benchmarks/membership_notebook.py [--repeats 3] [--full]

Fast mode (DP_COURSE_FAST=1, what the test suite and autograding run; the course asks for well under a minute on
2 CPU cores) is timed `--repeats` times and reported as the median. Baseline, measured in the same run: a
notebook holding only the setup, imports and generated helper cells of notebook 07 (kernel start and the
imports of torch, opacus and medmnist), so the ratio shows how much of the run is the notebook's own work.
`--full` also times the default (student) mode once. The 1-minute load average is printed with every timing,
since other jobs on a shared machine slow every run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import nbformat
from nbclient import NotebookClient

from autograder.layout import REPO

NOTEBOOK = REPO / "source" / "07_membership" / "07_membership.ipynb"
IMPORT_CELLS = 4  # the generated setup cell, the imports and the two generated helper cells


def _is_startup(cell) -> bool:
    return cell.cell_type == "code" and ("dp_course" in cell.metadata or cell.source.startswith("import "))


def run(fast: bool, startup_only: bool = False) -> tuple[float, float]:
    """Execute the notebook (or only its start-up cells) once; return (wall seconds, 1-minute load average)."""
    if fast:
        os.environ["DP_COURSE_FAST"] = "1"
    else:
        os.environ.pop("DP_COURSE_FAST", None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if startup_only:
        nb.cells = [cell for cell in nb.cells if _is_startup(cell)]
        assert len(nb.cells) == IMPORT_CELLS, f"expected {IMPORT_CELLS} start-up cells, found {len(nb.cells)}"
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": scratch}}).execute()
        seconds = time.perf_counter() - start
    return seconds, os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time the default (student) mode once")
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    os.environ["MPLBACKEND"] = "Agg"
    baseline = [run(fast=True, startup_only=True) for _ in range(args.repeats)]
    fast = [run(fast=True) for _ in range(args.repeats)]
    base_median = statistics.median(seconds for seconds, _ in baseline)
    fast_median = statistics.median(seconds for seconds, _ in fast)
    print(f"{'run':<34} {'median (s)':>10} {'runs (s)':>24} {'load avg':>16} {'ratio':>6}")
    for name, runs, median in (
        ("start-up cells only (baseline)", baseline, base_median),
        ("whole notebook, fast mode", fast, fast_median),
    ):
        times = ", ".join(f"{seconds:.1f}" for seconds, _ in runs)
        loads = ", ".join(f"{load:.1f}" for _, load in runs)
        print(f"{name:<34} {median:>10.1f} {times:>24} {loads:>16} {median / base_median:>6.2f}")
    if args.full:
        seconds, load = run(fast=False)
        print(
            f"{'whole notebook, default mode':<34} {seconds:>10.1f} {seconds:>24.1f} {load:>16.1f} "
            f"{seconds / base_median:>6.2f}"
        )


if __name__ == "__main__":
    main()
