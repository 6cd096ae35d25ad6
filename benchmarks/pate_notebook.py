"""Wall time of the PATE notebook (source/05_pate, solutions and hidden tests included), run with nbclient.

    python benchmarks/pate_notebook.py [--repeats 3] [--full] [--save DIR]

Fast mode (DP_COURSE_FAST=1, what the test suite and the autograder run; the budget is 60 s on 2 cores) runs
`--repeats` times and reports the median. `--full` also runs the default (student) mode once; its budget is
10 minutes. Baseline, measured in the same run and mode: the notebook cut after its data-loading cell (kernel
start, imports, helper cells and MNIST loading), so the ratio shows how much of the time is the notebook's own
work. The slowest cells of the last run are listed, and the 1-minute load average is printed with every run,
because other jobs on a shared machine slow everything down. `--save DIR` keeps the last executed notebook of
each mode (DIR/05_pate_fast.ipynb, DIR/05_pate_full.ipynb) to read its outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.layout import REPO, SOURCE

NOTEBOOK = SOURCE / "05_pate" / "05_pate.ipynb"
DATA_LOADING_CALL = "load_mnist_splits(DATA_ROOT)"
BUDGET_SECONDS = {"fast": 60, "full": 600}


def execute(nb: nbformat.NotebookNode, fast: bool) -> float:
    """Run `nb` in place in a fresh kernel; return the wall time in seconds (kernel start included)."""
    if fast:
        os.environ["DP_COURSE_FAST"] = "1"
    else:
        os.environ.pop("DP_COURSE_FAST", None)
    with tempfile.TemporaryDirectory() as scratch:
        client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": scratch}})
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start


def startup_part(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook up to and including the cell that loads MNIST."""
    cut = next(i for i, cell in enumerate(nb.cells) if DATA_LOADING_CALL in cell.source)
    part = nbformat.from_dict(nb)
    part.cells = part.cells[: cut + 1]
    return part


def slowest_cells(nb: nbformat.NotebookNode, count: int = 4) -> list[tuple[float, str]]:
    """(seconds, first line) of the `count` slowest code cells, from nbclient's recorded timings."""
    timed = []
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            seconds = (
                datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
                - datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            ).total_seconds()
            timed.append((seconds, cell.source.strip().splitlines()[0][:60]))
    return sorted(timed, reverse=True)[:count]


def measure(mode: str, repeats: int, save: Path | None) -> None:
    fast = mode == "fast"
    totals, baselines = [], []
    for repeat in range(repeats):
        nb = nbformat.read(NOTEBOOK, as_version=4)
        load_before = os.getloadavg()[0]
        baselines.append(execute(startup_part(nb), fast))
        totals.append(execute(nb, fast))
        print(
            f"  {mode} run {repeat + 1}/{repeats}: notebook {totals[-1]:.1f} s, startup baseline "
            f"{baselines[-1]:.1f} s (load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after)",
            flush=True,
        )
    total, baseline = statistics.median(totals), statistics.median(baselines)
    verdict = "within" if total < BUDGET_SECONDS[mode] else "OVER"
    print(
        f"{mode:<5} {repeats:>7} {total:>16.1f} {baseline:>22.1f} {total / baseline:>6.1f}   "
        f"{verdict} the {BUDGET_SECONDS[mode]} s budget"
    )
    for seconds, first_line in slowest_cells(nb):
        print(f"        {seconds:6.1f} s  {first_line}")
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save / f"05_pate_{mode}.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fast-mode repeats (median reported)")
    parser.add_argument("--full", action="store_true", help="also run the default (full) mode once")
    parser.add_argument("--save", type=Path, help="folder for the executed notebooks")
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    print(f"{NOTEBOOK.relative_to(REPO)} on {os.cpu_count()} CPU cores")
    print(f"{'mode':<5} {'repeats':>7} {'median total (s)':>16} {'median baseline (s)':>22} {'ratio':>6}")
    measure("fast", args.repeats, args.save)
    if args.full:
        measure("full", 1, args.save)


if __name__ == "__main__":
    main()
