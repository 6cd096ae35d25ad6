"""A class graded on a real Dask scheduler with 2 workers against a LocalCluster with 2 workers, same run.

The synthetic class covers all seven assignments: students cycle through the sample class's kinds
(`perfect`, `one_wrong`, `untouched`: autograder.commands.demo), each handing in every notebook; the default
9 students make 63 submissions. Both backends grade the same jobs with the same code
(`autograder.batch.cluster.collect`, the sandbox on, the course's limits):

- real: `dask scheduler` and two `dask worker --nthreads 1` processes (with their nannies) on 127.0.0.1,
  started by this script with the fault settings docs/INSTRUCTOR.md gives (allowed-failures, worker-saturation);
- local: `autograder.batch.cluster.connect` with `Grading.workers = 2` (a LocalCluster, as `--workers 2`).

Measured: the wall time from the first submission to the last result (start-up is shown apart), the
throughput ratio real/local (target >= 0.9), that both give the same grades (student, notebook, cell,
score, reason), and from Dask's task stream each task's compute time, whose median per assignment sizes
a class of 1,000 students x 7 notebooks finished in one hour. The machine is shared and noisy: its cores
and load are printed with the results. The script first copies the project's code (autograder.batch.cluster.
snapshot) and reruns itself on that copy, so that the client and the workers run one version even while
the working tree is being edited (the version check would otherwise refuse the workers).

    python benchmarks/dask_class.py [--students 9] [--assignment ID ...] [--order real,local]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nbformat
from distributed import Client, get_task_stream
from tqdm.auto import tqdm

from autograder.batch import cluster
from autograder.batch.bundles import make_bundle
from autograder.batch.submission import Job
from autograder.commands import demo as sample_class
from autograder.layout import RELEASE, SOURCE, assignments, notebooks
from autograder.settings import Grading, load_grading

ALLOWED_FAILURES = Grading.allowed_failures.default_value  # the LocalCluster's, as the grader sets it

KINDS = ("perfect", "one_wrong", "untouched")
SNAPSHOT_VARIABLE = "DP_COURSE_BENCH_SNAPSHOT"
DASK = Path(sys.executable).with_name("dask")
CLASS_SIZE, HOUR = 1000, 3600.0


def machine() -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cores: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))}); load average 1/5/15 min: {load}"


def make_jobs(students: int, ids: list[str]) -> list[Job]:
    versions = {}
    for assignment in ids:
        for notebook in notebooks(assignment):
            wrong = sample_class.WRONG_ANSWERS.get(assignment)
            versions[assignment, notebook] = {
                "perfect": sample_class.solved(assignment, notebook),
                "one_wrong": sample_class.solved(assignment, notebook, replace=dict([wrong]) if wrong else None),
                "untouched": nbformat.read(RELEASE / assignment / notebook, as_version=4),
            }
    jobs = []
    for i in range(students):
        kind = KINDS[i % len(KINDS)]
        for (assignment, notebook), nbs in versions.items():
            jobs.append(Job(f"{kind}_{i:03d}", assignment, notebook, nbformat.writes(nbs[kind]).encode()))
    return jobs


class RealCluster:
    """A scheduler and two workers as separate processes, stopped on exit."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder, self.workers, self.processes = folder, workers, []
        self.scheduler_file = folder / "scheduler.json"

    def __enter__(self) -> str:
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(ALLOWED_FAILURES),
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": str(cluster.WORKER_SATURATION),
        }
        log = open(self.folder / "dask.log", "w")
        self.processes.append(
            subprocess.Popen(
                [
                    str(DASK),
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(self.scheduler_file),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for i in range(self.workers):
            self.processes.append(
                subprocess.Popen(
                    [
                        str(DASK),
                        "worker",
                        "--scheduler-file",
                        str(self.scheduler_file),
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"bench-{i}",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 180
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the scheduler did not start: " + (self.folder / "dask.log").read_text())
            time.sleep(0.5)
        time.sleep(1)
        address = json.loads(self.scheduler_file.read_text())["address"]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(self.workers, timeout=180)
        return address

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def grade_on(name: str, settings, jobs, bundles, limits) -> dict:
    """Grade every job on one backend; wall time of the batch, start-up, results and per-task times."""
    start = time.perf_counter()
    client, local = cluster.connect(settings)
    try:
        cluster.check_workers(client, limits)
        ready = time.perf_counter()
        bar = tqdm(total=len(jobs), desc=f"{name} (2 workers)", unit="notebook")
        with get_task_stream(client) as stream:
            results = cluster.collect(client, jobs, bundles, limits, bar.update)
        wall = time.perf_counter() - ready
        bar.close()
        times = defaultdict(list)
        for task in stream.data:
            key = str(task["key"])
            if key.startswith("grade_"):
                compute = sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
                times[key.removeprefix("grade_").rsplit("-", 1)[0]].append(compute)
    finally:
        client.close()
        if local is not None:
            local.close()
    return dict(wall=wall, startup=ready - start, results=results, times=dict(times))


def grades(results) -> list[tuple]:
    return sorted((r.student, r.notebook, c.name, c.score, c.reason) for r in results for c in r.cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=9, help="students, each handing in every notebook")
    parser.add_argument("--assignment", action="append", dest="assignments", metavar="ID")
    parser.add_argument("--order", default="real,local", help="which backend runs first")
    args = parser.parse_args()
    if SNAPSHOT_VARIABLE not in os.environ:
        # Client and workers run one snapshot of the code, whatever happens to the working tree meanwhile.
        with tempfile.TemporaryDirectory() as folder:
            code = cluster.snapshot(Path(folder) / "code")
            shutil.copy(__file__, Path(folder) / "dask_class.py")
            env = {
                **os.environ,
                "PYTHONPATH": str(code),
                SNAPSHOT_VARIABLE: str(code),
                "DP_COURSE_DATA": os.environ.get("DP_COURSE_DATA", str(SOURCE.parent / "data")),
            }
            result = subprocess.run(
                [sys.executable, str(Path(folder) / "dask_class.py"), *sys.argv[1:]], env=env, cwd=code
            )
        sys.exit(result.returncode)
    ids = args.assignments or assignments()
    os.environ.setdefault("DP_COURSE_DATA", str(SOURCE.parent / "data"))
    settings = load_grading()
    jobs = make_jobs(args.students, ids)
    print(f"class: {args.students} students x {len(ids)} assignment(s) = {len(jobs)} submissions; {machine()}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        bundles = {a: make_bundle(SOURCE, a, f"sqlite:///{scratch / 'class.db'}", scratch) for a in ids}
        runs = {}
        for name in args.order.split(","):
            if name == "real":
                folder = scratch / "real"
                folder.mkdir()
                with RealCluster(folder) as address:
                    on_scheduler = settings.replace(scheduler=address)
                    runs[name] = grade_on(name, on_scheduler, jobs, bundles, on_scheduler)
            else:
                local = settings.replace(workers=2)
                runs[name] = grade_on(name, local, jobs, bundles, local)
            print(
                f"{name}: {runs[name]['wall']:.1f} s for {len(jobs)} notebooks "
                f"({len(jobs) / runs[name]['wall'] * 60:.2f} per minute), start-up {runs[name]['startup']:.1f} s; "
                f"{machine()}"
            )
    real, local = runs["real"], runs["local"]
    same = grades(real["results"]) == grades(local["results"])
    errors = {n: sum(bool(r.grading_error) for r in run["results"]) for n, run in runs.items()}
    ratio = local["wall"] / real["wall"]
    print(f"\nsame grades (student, notebook, cell, score, reason): {same}; grading errors: {errors}")
    print(f"throughput real/local: {ratio:.3f} (target >= 0.9)")
    print("\nper-notebook compute time (s), median [min, max] over both runs:")
    medians = {}
    for assignment in ids:
        values = real["times"].get(assignment, []) + local["times"].get(assignment, [])
        medians[assignment] = statistics.median(values)
        print(f"  {assignment}: {medians[assignment]:.1f} [{min(values):.1f}, {max(values):.1f}] (n={len(values)})")
    per_student = sum(medians.values())
    # Busy share of the workers in the real run: sum of compute times / (workers x wall).
    busy = sum(sum(v) for v in real["times"].values()) / (2 * real["wall"])
    needed = CLASS_SIZE * per_student / HOUR
    print(
        f"\nsizing: one student's {len(ids)} notebook(s) take {per_student:.0f} worker-seconds (sum of medians); "
        f"{CLASS_SIZE} students in one hour need {needed:.1f} busy worker processes, "
        f"{math.ceil(needed / busy)} at the measured busy share {busy:.2f} of the real run's workers "
        "(each worker one process, one thread, one notebook at a time, on cores like these)"
    )
    if not same:
        sys.exit("the two backends gave different grades")


if __name__ == "__main__":
    main()
