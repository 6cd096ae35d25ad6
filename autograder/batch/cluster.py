"""Grading on Dask: a LocalCluster of `Grading.workers` processes, or a running scheduler (`Grading.scheduler`).

Tasks carry data, not paths: each is `autograder.batch.submission.grade_submission(job, bundle, settings)`, with the
submission's bytes and its assignment's bundle (sent once per worker), and returns its result as
data; only the client process writes OUT and the class gradebook. A worker therefore needs no shared file
system: only the installed project, the same requirements.lock and the datasets at the data root.

Before any task is submitted, every worker is checked against this process (`check_workers`): the digest
of requirements.lock, the digest of the course's own code (every .py file of the `autograder` and `course`
packages, hashed when this module is imported, so it is the code the process runs), the Python version,
one thread per worker (nbgrader's environment is process-wide, so two notebooks graded by threads of one
process would share it), a working sandbox when grading is sandboxed, and the data root. A mismatch raises
`WorkerMismatch` (a `PreflightError`) naming the workers and what differs; nothing is graded. A worker that
joins after the check is checked again by the task itself: it returns a grading error instead of grading.

Faults. When a worker dies, the scheduler gives the tasks it was running to another worker; after
`allowed-failures` deaths (Dask's `distributed.scheduler.allowed-failures`, set here on purpose for the
LocalCluster: Grading.allowed_failures) a task is stopped with `KilledWorker`, and the submission becomes a grading
error (empty scores, regraded by a rerun). With `worker-saturation` 1.0 a worker holds only the task it
runs, so a dying worker makes only that task suspicious, not one queued behind it. An external scheduler
uses its own configuration (set the same two values there; see docs/INSTRUCTOR.md); its values are read back and
shown. Every result is taken once, by task, in this process, and merged into the gradebook once by
autograder.commands.grade, however often the scheduler retried the task. Tasks are submitted in a window (a few
per worker thread, refilled as results arrive), so the scheduler holds only that many submissions.

TLS: a `tls://` scheduler is reached with Dask's own security configuration, `distributed.comm.tls.*`,
from Dask's usual configuration (files in ~/.config/dask, DASK_* variables) or from the YAML file named by
`Grading.security_file` (the same file the scheduler and workers can read through DASK_CONFIG).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import dask
import yaml
from dask.distributed import Client, LocalCluster, as_completed
from dask.typing import Key
from distributed.security import Security

from autograder.batch.preflight import PreflightError
from autograder.batch.submission import (
    GRADING_ERROR,
    Bundle,
    Job,
    SubmissionResult,
    bundle_cells,
    failed,
    grade_submission,
)
from autograder.batch.version import VERSION, VERSION_NAMES
from autograder.sandbox import bubblewrap as sandbox
from autograder.settings import GradingSettings

# Where another library set up the root logger before Dask was imported, Dask leaves its loggers
# propagating there (distributed.config), and its INFO lines about schedulers, nannies and workers would
# reach the instructor's terminal; only its warnings and errors should.
logging.getLogger("distributed").propagate = False

# A task may lose this many workers and still be tried again; one more and it ends as a grading error.
# Tasks per worker thread the scheduler hands out ahead: 1.0 sends a worker only the task it runs.
WORKER_SATURATION = 1.0
IN_FLIGHT_PER_THREAD, MIN_IN_FLIGHT = 4, 16  # tasks submitted ahead of their results


class ClusterError(PreflightError):
    """The scheduler cannot be reached or has no worker; nothing was graded."""


class WorkerMismatch(ClusterError):
    """A worker differs from the client (code, lock file, Python) or cannot grade; nothing was graded."""


SNAPSHOT = (
    "autograder",
    "course",
    "source",
    "release",
    "course.toml",
    "nbgrader_config.py",
    "pyproject.toml",
    "requirements.lock",
)


def snapshot(target: Path) -> Path:
    """A copy of the project's code, lock file and assignments under `target`: put on PYTHONPATH, client
    and workers then run one version even while the working tree is being edited (tests, benchmarks)."""
    import shutil

    from autograder.layout import REPO

    target.mkdir(parents=True)
    for name in SNAPSHOT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / name)
    return target


def worker_report(data_root: str, sandboxed: bool) -> dict:
    """What a worker runs and whether it can grade (run on every worker by `check_workers`)."""
    return {
        **VERSION,
        "root": os.geteuid() == 0,
        "sandbox": sandbox.unavailable_reason() if sandboxed else "",
        "data_root": os.path.isdir(data_root),
    }


def compare(
    reports: dict[str, dict | BaseException],
    nthreads: dict[str, int],
    settings: GradingSettings,
    names: dict[str, str] | None = None,
) -> list[str]:
    """One line per worker that differs from this process or cannot grade ([] when all agree)."""
    problems = []
    names = names or {}
    for address in sorted(reports):
        report = reports[address]
        name = names.get(address, "")
        worker = f"worker {name} ({address})" if name and name != address else f"worker {address}"
        if isinstance(report, BaseException):
            problems.append(
                f"{worker}: the version check itself failed there ({type(report).__name__}: "
                f"{report}); it probably runs other code"
            )
            continue
        differing = [
            f"{VERSION_NAMES[key]} {str(report.get(key))[:12]} (client {VERSION[key][:12]})"
            for key in VERSION
            if report.get(key) != VERSION[key]
        ]
        if differing:
            problems.append(f"{worker}: differs in " + "; ".join(differing))
        if nthreads.get(address, 1) != 1:
            problems.append(
                f"{worker}: has {nthreads[address]} threads; start workers with --nthreads 1 "
                "(nbgrader's environment is process-wide) and more worker processes instead"
            )
        if report.get("sandbox"):
            problems.append(f"{worker}: cannot build the grading sandbox: {report['sandbox']}")
        if not report.get("data_root"):
            problems.append(f"{worker}: has no data root at {settings.data_root} (the datasets)")
    return problems


def check_workers(client: Client, settings: GradingSettings) -> dict[str, dict]:
    """Refuse (WorkerMismatch) unless every worker runs this process's code, lock file and Python."""
    reports = client.run(worker_report, str(settings.data_root), settings.sandbox, on_error="return")
    if not reports:
        raise ClusterError("the scheduler has no workers")
    names = {address: str(info.get("name", "")) for address, info in client.scheduler_info()["workers"].items()}
    problems = compare(reports, client.nthreads(), settings, names)
    if problems:
        raise WorkerMismatch(
            f"{len(problems)} problem(s) with {len(reports)} worker(s); nothing was graded:\n  "
            + "\n  ".join(problems)
            + "\nInstall the same commit and requirements.lock on every "
            "worker (see docs/INSTRUCTOR.md, 'Grading across machines')."
        )
    if settings.sandbox and os.geteuid() == 0 and not all(r["root"] for r in reports.values()):
        warnings.warn(
            "some workers do not run as root: their sandboxes share one uid and have no cgroup limits "
            "(see docs/INSTRUCTOR.md)",
            stacklevel=2,
        )
    return reports


def grade_checked(job: Job, bundle: Bundle, settings: GradingSettings, expected: dict) -> SubmissionResult:
    """The grading task: `grade_submission`, on a worker that runs the client's versions only."""
    if VERSION != expected:
        differing = ", ".join(VERSION_NAMES[key] for key in VERSION if VERSION[key] != expected.get(key))
        return failed(
            job,
            bundle_cells(bundle, job.notebook),
            f"{GRADING_ERROR}the worker runs other versions than the client ({differing})",
            settings.reason_limit,
            grading_error=True,
        )
    return grade_submission(job, bundle, settings)


def security(settings: GradingSettings) -> Security:
    """Dask's TLS settings: from `Grading.security_file` (Dask configuration YAML) if set, else Dask's own."""
    path = settings.security_file
    if not path:
        return Security()
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the Dask security file {path}: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a Dask configuration file (a YAML mapping with distributed.comm.tls)")
    with dask.config.set(_dotted(loaded)):  # on top of Dask's own configuration, key by key
        return Security()


def _dotted(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def connect(settings: GradingSettings) -> tuple[Client, LocalCluster | None]:
    """A client of the configured scheduler, or of a new LocalCluster with this module's fault settings."""
    address = settings.scheduler
    if address:
        scheme = urlsplit(address).scheme if "://" in address else "tcp"
        secure = security(settings)
        # Security sets its tls_* attributes in __init__ through setattr: its class does not declare them.
        if scheme == "tls" and not (secure.tls_ca_file and secure.tls_client_cert):  # type: ignore[attr-defined]
            raise ValueError(
                f"{address} needs TLS credentials: set distributed.comm.tls.ca-file and "
                "distributed.comm.tls.client.{cert,key} in Dask's configuration, or "
                "--Grading.security_file=FILE"
            )
        if scheme == "tcp" and not _loopback(address):
            warnings.warn(
                f"{address} is not encrypted or authenticated: anyone who reaches it can run code on "
                "the graders; use tls:// (see docs/INSTRUCTOR.md)",
                stacklevel=2,
            )
        try:
            client = Client(address, security=secure, timeout=settings.connect_timeout)
        except (TimeoutError, OSError) as error:
            raise ClusterError(f"cannot reach the scheduler at {address}: {error}") from None
        try:
            client.wait_for_workers(1, timeout=settings.worker_timeout)
        except (TimeoutError, OSError) as error:
            client.close()
            raise ClusterError(f"no worker joined the scheduler at {address} ({error})") from None
        return client, None
    # Processes, one thread each: a worker grades one notebook at a time (its kernel is a sandbox). The
    # scheduler runs in this process and reads its configuration now.
    with (
        dask.config.set(
            {
                "distributed.scheduler.allowed-failures": settings.allowed_failures,
                "distributed.scheduler.worker-saturation": WORKER_SATURATION,
            }
        ),
        warnings.catch_warnings(),
    ):
        # Its scheduler's HTTP endpoint (no dashboard) moves to a free port by itself when 8787 is taken.
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,
            silence_logs=50,
        )
    return Client(cluster), cluster


def _loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def scheduler_fault_settings(client: Client) -> dict:
    """The scheduler's allowed-failures and worker-saturation, as it runs them."""
    return client.run_on_scheduler(_fault_settings)


def _fault_settings(dask_scheduler) -> dict:
    return {"allowed_failures": dask_scheduler.allowed_failures, "worker_saturation": dask_scheduler.WORKER_SATURATION}


def run(
    jobs: list[Job], bundles: dict[str, Bundle], settings: GradingSettings, done: Callable[[], None]
) -> list[SubmissionResult]:
    """Every job's result, in order; `done()` is called as each one finishes."""
    client, cluster = connect(settings)
    try:
        check_workers(client, settings)
        if settings.scheduler:
            faults = scheduler_fault_settings(client)
            print(
                f"scheduler {settings.scheduler}: {len(client.nthreads())} worker(s), a task is tried at most "
                f"{faults['allowed_failures'] + 1} time(s) (distributed.scheduler.allowed-failures="
                f"{faults['allowed_failures']})",
                file=sys.stderr,
            )
        return collect(client, jobs, bundles, settings, done)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _bundle(bundle: Bundle) -> Bundle:
    return bundle


def collect(
    client: Client,
    jobs: list[Job],
    bundles: dict[str, Bundle],
    settings: GradingSettings,
    done: Callable[[], None],
    task: Callable = grade_checked,
) -> list[SubmissionResult]:
    """Submit every job, take each result exactly once; a task that failed (a worker died under it too
    often, a lost dependency) becomes its submission's grading error."""
    # Each bundle is a task of its own whose definition holds the bundle (kept once, by the scheduler), not
    # scattered data: workers fetch its result from one another, and if every worker holding it dies, the
    # scheduler makes it again instead of cancelling every submission of that assignment.
    shipped = {
        name: client.submit(_bundle, bundle, key=f"bundle-{name}-{bundle.digest[:16]}-{uuid.uuid4().hex}")
        for name, bundle in bundles.items()
    }
    # A window of tasks in flight, refilled as results come: the scheduler holds only a few submissions'
    # bytes at a time, however large the class. Keys are named after the assignment, so that the
    # dashboard and the task stream group the tasks by it.
    window = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
    waiting = iter(range(len(jobs)))
    index: dict[Key, int] = {}
    stream = as_completed()

    def submit_next() -> None:
        i = next(waiting, None)
        if i is not None:
            job = jobs[i]
            future = client.submit(
                task,
                job,
                shipped[job.assignment],
                settings,
                dict(VERSION),
                key=f"grade_{job.assignment}-{uuid.uuid4().hex}",
            )
            index[future.key] = i
            stream.add(future)

    for _ in range(window):
        submit_next()
    results: list[SubmissionResult | None] = [None] * len(jobs)
    for future in stream:
        i = index[future.key]
        if results[i] is not None:  # never taken twice, whatever the scheduler did
            continue
        try:
            results[i] = future.result()
        except Exception as error:  # noqa: BLE001 (the task itself died: a grading error, never lost)
            job = jobs[i]
            results[i] = failed(
                job,
                bundle_cells(bundles[job.assignment], job.notebook),
                f"{GRADING_ERROR}the grading task failed: {type(error).__name__}: {error}",
                settings.reason_limit,
                grading_error=True,
            )
        future.release()  # the result is ours now: the cluster may forget it
        done()
        submit_next()
    missing = [jobs[i].student for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"no result for {len(missing)} job(s): {missing[:5]}")
    return results  # type: ignore[return-value]
