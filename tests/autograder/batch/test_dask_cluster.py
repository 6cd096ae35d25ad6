"""Grading on a real Dask scheduler (autograder.batch.cluster), with workers that cannot see OUT or the submissions.

The module starts `dask scheduler` and two `dask worker` processes (the venv's `dask` command) on 127.0.0.1.
Each worker runs in its own mount namespace (`unshare -m`, which keeps root, so the grading sandbox inside
keeps its own uid per sandbox and its cgroups), where a tmpfs is mounted over the folder that holds the
class and every OUT: the worker sees the installed project and the datasets, not the client's files.

The processes (client and workers) import the course's code from a snapshot taken when the module starts,
so that an edit of the working tree while the tests run cannot make the versions differ by accident; the
version-refusal test makes them differ on purpose, with a worker that runs an edited copy.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from autograder.batch import cluster
from autograder.batch.submission import Job, bundle_cells, failed
from autograder.commands import demo as sample_class
from autograder.sandbox import bubblewrap as sandbox
from autograder.settings import Grading, load_grading

ALLOWED_FAILURES = Grading.allowed_failures.default_value  # the LocalCluster's, as the grader sets it

from locations import REPO  # noqa: E402

DASK = Path(sys.executable).with_name("dask")
ASSIGNMENT = "01_databases"
GRADE_TIMEOUT = 900  # seconds for one `python -m autograder grade` of the small class on a loaded machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("unshare") or not DASK.exists(),
        reason="needs root (a mount namespace that keeps it), unshare and the venv's dask",
    ),
]


def _snapshot(target: Path, edit: bool = False) -> Path:
    """A copy of the project's code (cluster.snapshot); `edit` changes a course file and the lock file, as
    a worker installed from another commit would have them."""
    cluster.snapshot(target)
    if edit:
        with open(target / "course" / "__init__.py", "a") as file:
            file.write("\n# edited on this worker only\n")
        with open(target / "requirements.lock", "a") as file:
            file.write("# another lock\n")
    return target


def _environment(code: Path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(code),
        "DP_COURSE_DATA": os.environ.get("DP_COURSE_DATA", str(REPO / "data")),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


class Processes:
    """The scheduler and the workers this module started; all of them are killed at the end."""

    def __init__(self, base: Path, hidden: Path):
        self.base, self.hidden = base, hidden
        self.scheduler_file = base / "scheduler.json"
        self.started: dict[str, subprocess.Popen] = {}

    def start_scheduler(self, code: Path) -> str:
        log = open(self.base / "scheduler.log", "w")
        # The fault settings of autograder.batch.cluster, given to the scheduler as docs/INSTRUCTOR.md says.
        settings = {
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(ALLOWED_FAILURES),
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": str(cluster.WORKER_SATURATION),
        }
        self.started["scheduler"] = subprocess.Popen(
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
            env={**_environment(code), **settings},
            cwd=code,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                try:
                    return json.loads(self.scheduler_file.read_text())["address"]
                except (ValueError, KeyError):
                    pass
            assert self.started["scheduler"].poll() is None, (self.base / "scheduler.log").read_text()
            time.sleep(0.5)
        raise AssertionError("the scheduler did not start in 120 s")

    def start_worker(self, name: str, code: Path) -> subprocess.Popen:
        """`dask worker` in a mount namespace where `hidden` is an empty tmpfs. unshare and sh exec, so the
        process is the worker itself (no nanny: a SIGKILL kills the worker, nothing restarts it)."""
        log = open(self.base / f"{name}.log", "w")
        script = 'mount -t tmpfs -o size=1m,mode=0700 dp-course-hidden "$0" && exec "$@"'
        worker = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                str(self.hidden),
                str(DASK),
                "worker",
                "--scheduler-file",
                str(self.scheduler_file),
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                name,
            ],
            env=_environment(code),
            cwd=code,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.started[name] = worker
        return worker

    def stop(self) -> None:
        for process in reversed(list(self.started.values())):
            if process.poll() is None:
                process.kill()
        for process in self.started.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


def _client(processes: Processes, workers: int):
    from dask.distributed import Client

    client = Client(scheduler_file=str(processes.scheduler_file), timeout=60)
    client.wait_for_workers(workers, timeout=180)
    return client


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("dask")
    code = _snapshot(base / "code")
    hidden = base / "private"  # the class and every OUT: the client's alone
    full = hidden / "full"
    sample_class.build(full, source=code / "source", release=code / "release")
    students = base / "private" / "class"
    for student in ("perfect", "one_wrong", "untouched", "broken"):
        shutil.copytree(full / student / ASSIGNMENT, students / student / ASSIGNMENT)
    processes = Processes(base, hidden)
    try:
        address = processes.start_scheduler(code)
        workers = {name: processes.start_worker(name, code) for name in ("w1", "w2")}
        _client(processes, 2).close()
        yield dict(
            base=base,
            code=code,
            hidden=hidden,
            students=students,
            address=address,
            processes=processes,
            workers=workers,
        )
    finally:
        processes.stop()


def _grade(world, out: Path, *options: str, wait: bool = True):
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(world["students"]),
        "--out",
        str(out),
        "--assignment",
        ASSIGNMENT,
        *options,
    ]
    log = open(out.with_suffix(".log"), "w")
    process = subprocess.Popen(
        command, env=_environment(world["code"]), cwd=world["code"], stdout=log, stderr=subprocess.STDOUT
    )
    if not wait:
        return process
    return _finish(process, out)


def _finish(process: subprocess.Popen, out: Path) -> str:
    try:
        process.wait(timeout=GRADE_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return out.with_suffix(".log").read_text()


def _grades(out: Path) -> list[tuple]:
    with open(out / "grades.csv", newline="") as file:
        rows = [(r["student"], r["notebook"], r["cell"], r["score"], r["reason"]) for r in csv.DictReader(file)]
    keys = [row[:3] for row in rows]
    assert len(keys) == len(set(keys)), "a cell of a submission appears twice in grades.csv"
    return sorted(rows)


def _check_complete(out: Path) -> None:
    rows = _grades(out)
    students = {row[0] for row in rows}
    assert students == {"perfect", "one_wrong", "untouched", "broken"}
    assert not [row for row in rows if row[4].startswith("grading error")], rows
    perfect = [row for row in rows if row[0] == "perfect"]
    assert perfect and all(float(row[3]) > 0 for row in perfect if row[3]), perfect
    for student in students:  # the client wrote every feedback page
        assert (out / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file()


@pytest.fixture(scope="module")
def local_grades(world):
    out = world["hidden"] / "out-local"
    log = _grade(world, out, "--workers", "2")
    _check_complete(out)
    return _grades(out), log


def test_workers_do_not_see_the_clients_files_and_keep_root(world):
    client = _client(world["processes"], 2)
    try:
        assert set(client.run(os.path.exists, str(world["students"])).values()) == {False}
        assert set(client.run(os.path.exists, str(world["code"] / "autograder")).values()) == {True}
        assert set(client.run(os.geteuid).values()) == {0}
        assert set(client.run(sandbox.unavailable_reason).values()) == {""}
    finally:
        client.close()
    assert world["students"].is_dir()  # the client's own view still has them


@pytest.mark.slow  # starts a kernel
def test_a_real_scheduler_grades_like_a_local_cluster(world, local_grades):
    out = world["hidden"] / "out-scheduler"
    log = _grade(world, out, "--scheduler", world["address"])
    assert "graded 4 notebook(s)" in log, log
    # the scheduler's own allowed-failures, read back from it
    assert f"tried at most {ALLOWED_FAILURES + 1} time(s)" in log, log
    _check_complete(out)
    assert _grades(out) == local_grades[0]


def _sandbox_processes(worker_pid: int) -> list[int]:
    """Processes running as one of the sandbox uids of the worker with this pid (autograder.pipeline.autograde)."""
    low = sandbox.UID_BASE + worker_pid * sandbox.SLOTS_PER_PROCESS
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if low <= entry.stat().st_uid < low + sandbox.SLOTS_PER_PROCESS:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.slow  # starts a kernel
def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing(world, local_grades):
    out = world["hidden"] / "out-killed"
    process = _grade(world, out, "--scheduler", world["address"], wait=False)
    victim = None
    deadline = time.monotonic() + GRADE_TIMEOUT
    while victim is None and process.poll() is None and time.monotonic() < deadline:
        # a worker is in the middle of a notebook when its sandboxed kernel runs
        victim = next((w for w in world["workers"].values() if _sandbox_processes(w.pid)), None)
        time.sleep(0.2)
    assert victim is not None, "no worker was seen grading: " + out.with_suffix(".log").read_text()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    log = _finish(process, out)
    assert process.returncode == 0, log
    _check_complete(out)
    assert _grades(out) == local_grades[0]
    deadline = time.monotonic() + 30  # the killed worker's sandbox died with it (--die-with-parent)
    while _sandbox_processes(victim.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _sandbox_processes(victim.pid)


@pytest.mark.slow  # starts a kernel
def test_a_worker_with_other_code_is_refused_before_any_grading(world):
    edited = _snapshot(world["base"] / "code-edited", edit=True)
    world["processes"].start_worker("w-edited", edited)
    client = _client(world["processes"], 1)
    try:
        deadline = time.monotonic() + 180
        while "w-edited" not in {i["name"] for i in client.scheduler_info()["workers"].values()}:
            assert time.monotonic() < deadline, "the edited worker did not join"
            time.sleep(0.5)
    finally:
        client.close()
    out = world["hidden"] / "out-refused"
    log = _grade(world, out, "--scheduler", world["address"])
    assert "error:" in log and "nothing was graded" in log, log
    refused = [line for line in log.splitlines() if "differs in" in line]
    assert len(refused) == 1 and "w-edited" in refused[0], log  # only the edited worker is named
    assert "course code" in refused[0] and "requirements.lock" in refused[0], log
    assert not (out / "grades.csv").exists()


# A task that kills its worker every time: stopped after a bounded number of tries, a grading error.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _deadly(tries_file, job, bundle, settings, expected):
    if job.student == "deadly":
        with open(tries_file, "a") as file:
            file.write("x")
        os._exit(1)
    return failed(job, bundle_cells(bundle, job.notebook), "graded", settings.reason_limit)


def test_a_task_that_keeps_killing_workers_ends_as_a_grading_error(tmp_path):
    from autograder.batch.bundles import make_bundle

    bundle = make_bundle(REPO / "source", ASSIGNMENT, f"sqlite:///{tmp_path / 'class.db'}", tmp_path)
    notebook = f"{ASSIGNMENT}.ipynb"
    # more jobs than the window of tasks in flight (cluster.MIN_IN_FLIGHT), the deadly one among them
    students = [f"a{i}" for i in range(12)] + ["deadly"] + [f"b{i}" for i in range(12)]
    jobs = [Job(student, ASSIGNMENT, notebook, b"{}") for student in students]
    settings = Grading(workers=2)
    client, local = cluster.connect(settings)
    finished = []
    try:
        results = cluster.collect(
            client,
            jobs,
            {ASSIGNMENT: bundle},
            load_grading(),
            lambda: finished.append(1),
            task=functools.partial(_deadly, str(tmp_path / "tries")),
        )
    finally:
        client.close()
        local.close()
    assert len(finished) == len(jobs) and [r.student for r in results] == students  # each once, in order
    errors = {r.student: r.grading_error for r in results if r.grading_error}
    assert list(errors) == ["deadly"], errors
    assert "KilledWorker" in errors["deadly"]
    assert all(c.score is None for c in results[12].cells)
    assert all(r.cells[0].reason == "graded" for r in results if r.student != "deadly")
    assert (tmp_path / "tries").read_text() == "x" * (ALLOWED_FAILURES + 1)


def test_a_tls_scheduler_needs_credentials():
    with pytest.raises(ValueError, match="TLS credentials"):
        cluster.connect(Grading(scheduler="tls://127.0.0.1:1"))


def _certificates(folder: Path) -> dict:
    """A throw-away certificate authority and one certificate it signed, for every role (PEM files)."""
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=folder)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=dp-course test CA",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=grader")
    run(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "node.pem",
    )
    return {"ca": folder / "ca.pem", "cert": folder / "node.pem", "key": folder / "node.key"}


@pytest.mark.slow  # starts a kernel
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make certificates")
def test_a_tls_scheduler_is_reached_with_the_security_file(tmp_path):
    pem = _certificates(tmp_path)
    tls = ["--tls-ca-file", str(pem["ca"]), "--tls-cert", str(pem["cert"]), "--tls-key", str(pem["key"])]
    security_file = tmp_path / "dask-tls.yaml"
    security_file.write_text(
        json.dumps(
            {
                "distributed": {
                    "comm": {
                        "require-encryption": True,
                        "tls": {
                            "ca-file": str(pem["ca"]),
                            "client": {"cert": str(pem["cert"]), "key": str(pem["key"])},
                        },
                    }
                }
            }
        )
    )  # JSON is YAML
    scheduler_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "w")
    env = _environment(REPO)
    processes = [
        subprocess.Popen(
            [
                str(DASK),
                "scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
                *tls,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and processes[0].poll() is None, (tmp_path / "dask.log").read_text()
            time.sleep(0.5)
        time.sleep(0.5)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://")
        processes.append(
            subprocess.Popen(
                [
                    str(DASK),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    "w-tls",
                    *tls,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        settings = Grading(scheduler=address)
        settings.security_file = str(security_file)  # read with getattr: also before Grading has the traitlet
        client, local = cluster.connect(settings)
        try:
            client.wait_for_workers(1, timeout=120)
            # the version check's own call, over TLS (its comparison is tested above, with snapshots)
            reports = client.run(cluster.worker_report, str(tmp_path), False)
            assert len(reports) == 1 and set(next(iter(reports.values()))) >= set(cluster.VERSION)
        finally:
            client.close()
        assert local is None
        with pytest.raises(ValueError, match="TLS credentials"):  # the same address without them
            cluster.connect(Grading(scheduler=address))
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)
