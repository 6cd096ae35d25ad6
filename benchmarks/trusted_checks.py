"""Cost of running hidden tests in the grader's process instead of the student's kernel.

For every hidden check of the course, with the reference implementation as the "student": the median time
of the check called in-process (as before autograder.pipeline.check_server existed) and through a CheckServer with
the function living in a separate Python process (the kernel's situation; its start-up is not counted).

    python benchmarks/trusted_checks.py [--repeats 3] [--only nb01]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.layout import SOURCE
from autograder.pipeline.check_server import CheckServer
from autograder.settings import CHECK_NAME

KERNEL = """
import json, sys, time
import course.lib as lib
from autograder.kernel_side.check_client import check
name = sys.argv[1]
function = getattr(lib, name.split(".check_")[1])
times = []
for _ in range(int(sys.argv[2])):
    input()  # the grader opened the window
    start = time.perf_counter()
    check(name, function)
    times.append(time.perf_counter() - start)
    print(json.dumps(times[-1]), flush=True)
"""


def hidden_checks() -> list[str]:
    names = []
    for notebook in sorted(SOURCE.glob("*/*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            names += CHECK_NAME.findall("".join(cell["source"]))
    return names


def in_process(name: str, repeats: int) -> list[float]:
    module, check_name = name.split(".")
    check = getattr(importlib.import_module(f"course.grading.{module}"), check_name)
    function = getattr(importlib.import_module("course.lib"), check_name.removeprefix("check_"))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        check(function)
        times.append(time.perf_counter() - start)
    return times


def through_server(name: str, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder, CheckServer(str(Path(folder) / "checker")) as server:
        env = dict(os.environ, DP_COURSE_CHECKER=server.address)
        kernel = subprocess.Popen(
            [sys.executable, "-c", KERNEL, name, str(repeats)],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        times = []
        for _ in range(repeats):
            server.open_window([name])
            kernel.stdin.write("go\n")
            kernel.stdin.flush()
            times.append(json.loads(kernel.stdout.readline()))
            verdict = server.close_window()[name]
            if not verdict.passed:
                raise SystemExit(f"{name} failed through the server: {verdict.message}")
        kernel.wait()
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="regular expression on check names, e.g. nb0[12]")
    args = parser.parse_args()
    os.environ.setdefault("DP_COURSE_FAST", "1")
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    print(f"{'check':45s} {'in-process s':>12s} {'trusted s':>10s} {'ratio':>6s}")
    totals = [0.0, 0.0]
    for name in hidden_checks():
        if args.only and not re.search(args.only, name):
            continue
        local = statistics.median(in_process(name, args.repeats))
        remote = statistics.median(through_server(name, args.repeats))
        totals[0] += local
        totals[1] += remote
        print(f"{name:45s} {local:12.3f} {remote:10.3f} {remote / local:6.2f}", flush=True)
    print(f"{'total (sum of medians)':45s} {totals[0]:12.3f} {totals[1]:10.3f} {totals[1] / totals[0]:6.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
