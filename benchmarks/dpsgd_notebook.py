"""Wall time of notebook 06 (DP-SGD) run top to bottom with nbclient, in fast mode and optionally in full mode.

Run: `python benchmarks/dpsgd_notebook.py [--repeats N] [--full]` from the repository root (data from
DP_COURSE_DATA, default ./data).

- baseline: the notebook's cells up to its first helper cell (setup, imports, helpers): starting a kernel and
  importing torch, Opacus and medmnist, the fixed cost every run pays;
- fast:     the whole source notebook with DP_COURSE_FAST=1, hidden tests included, as the test suite and the
  autograder run it (the course asks for well under 60 s on 2 cores);
- full:     (with --full, once) the default student mode that produces the numbers quoted in the text.

Baseline and fast runs alternate, `--repeats` times each, so load on the machine hits both alike; the table
reports medians, the ratio to the baseline's median, and the load average before and after. The slowest cells
of the fast runs (median over repeats) show where the time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "source" / "06_dpsgd" / "06_dpsgd.ipynb"


def run(cells, fast: bool) -> tuple[float, list[float]]:
    """Execute `cells` in a fresh kernel; return (total wall seconds including kernel start, seconds per cell)."""
    os.environ["MPLBACKEND"] = "Agg"
    if fast:
        os.environ["DP_COURSE_FAST"] = "1"
    else:
        os.environ.pop("DP_COURSE_FAST", None)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.from_dict(dict(cell)) for cell in cells])
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": tempfile.mkdtemp()}}
    )
    per_cell = []
    started = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            cell_started = time.perf_counter()
            client.execute_cell(cell, index)  # raises on the first error
            per_cell.append(time.perf_counter() - cell_started)
    return time.perf_counter() - started, per_cell


def describe(cell) -> str:
    first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
    return f"{cell.get('id', '?')}: {first[:60]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also run the full (student) mode once")
    arguments = parser.parse_args()
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    first_helper = next(i for i, c in enumerate(cells) if c.metadata.get("dp_course", {}).get("generated") == "helpers")
    load_before = os.getloadavg()
    baseline, fast, fast_cells = [], [], []
    for _ in range(arguments.repeats):
        baseline.append(run(cells[: first_helper + 1], fast=True)[0])
        total, per_cell = run(cells, fast=True)
        fast.append(total)
        fast_cells.append(per_cell)
    rows = [("baseline (setup, imports, helpers)", baseline), ("fast mode (DP_COURSE_FAST=1)", fast)]
    if arguments.full:
        rows.append(("full mode (once)", [run(cells, fast=False)[0]]))
    load_after = os.getloadavg()
    reference = statistics.median(baseline)
    print(f"notebook: {NOTEBOOK.name}, {arguments.repeats} repeats, {os.cpu_count()} CPUs")
    print(
        f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"{'run':<36} {'median s':>9} {'min s':>7} {'max s':>7} {'x baseline':>11}")
    for name, times in rows:
        median = statistics.median(times)
        print(f"{name:<36} {median:>9.1f} {min(times):>7.1f} {max(times):>7.1f} {median / reference:>11.2f}")
    medians = [statistics.median(run_times) for run_times in zip(*fast_cells)]
    print("\nslowest cells in fast mode (median s):")
    for index in sorted(range(len(cells)), key=lambda i: -medians[i])[:6]:
        print(f"  {medians[index]:6.1f}  {describe(cells[index])}")


if __name__ == "__main__":
    main()
