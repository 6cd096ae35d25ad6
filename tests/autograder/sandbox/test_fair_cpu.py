"""Fair CPU: another student's load is never a student's zero (autograder.sandbox.bubblewrap's CPU controller,
autograder.sandbox.timelimits).

Each sandbox is one CPU share and at most its cores, however many processes or sessions it starts; the time
limits count the sandbox's own CPU time, and a wall-clock backstop that fires on an overloaded machine is a
grading error, while a submission that spins or sleeps past its limit keeps its zero."""

import csv
import os
import time
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from cli import run_grade
from hostile_corpus import ASSIGNMENT, NOTEBOOK, cell_by_grade_id, solved
from test_bounded_writes import _left_behind

from autograder.batch import bundles, preflight, submission
from autograder.commands.grade import graded_cells
from autograder.layout import SOURCE
from autograder.pipeline import autograde
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox import timelimits
from autograder.settings import load_grading

MARKER = "dp-fair-cpu-marker"
counts_cpu = pytest.mark.skipif(
    sandbox.unavailable_reason() != "" or sandbox.cpu_clock(autograde.sandbox_uid()) is None,
    reason="needs the sandbox, as root, on a machine with cgroups",
)

# 200 busy loops, each in a session of its own (os.setsid, which escapes the kernel's autogroup), within the
# process limit of 256; started at once (no fork of the whole kernel each), they run until the sandbox dies.
SPINNERS = f"""
import subprocess
for _ in range(200):
    subprocess.Popen(['/bin/sh', '-c', 'while :; do :; done', '{MARKER}'], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


def _marked_processes() -> list[str]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if MARKER.encode() in command and state != "Z":
            found.append(entry.name)
    return found


def _graded_on_two_workers(tmp_path: Path, notebook_timeout: float) -> dict[str, dict[str, dict]]:
    """tmp_path/class graded through the CLI on two workers, each sandbox one core, cells 20 s of CPU."""
    result = run_grade(
        str(tmp_path / "class"),
        str(tmp_path / "out"),
        "--assignment",
        ASSIGNMENT,
        "--workers",
        "2",
        "--cell-timeout",
        "20",
        "--timeout",
        str(notebook_timeout),
        "--Grading.cores_per_sandbox=1",
        timeout=1200,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return _rows(tmp_path / "out")


def _rows(out: Path) -> dict[str, dict[str, dict]]:
    rows = defaultdict(dict)
    with open(out / "grades.csv", newline="") as file:
        for row in csv.DictReader(file):
            rows[row["student"]][row["cell"]] = row
    return rows


@pytest.mark.slow  # starts a kernel
@counts_cpu
def test_an_innocent_keeps_full_marks_beside_200_setsid_busy_loops(tmp_path):
    token = os.urandom(4).hex()  # other gradings on this machine leave folders of other students
    spinner, innocent_student = f"a_spinner_{token}", f"b_innocent_{token}"
    for student in (spinner, innocent_student):
        nb = solved()
        if student == spinner:
            cell = cell_by_grade_id(nb, "create_db")
            cell.source = SPINNERS + "\n" + cell.source
        (tmp_path / "class" / student / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "class" / student / ASSIGNMENT / NOTEBOOK)
    # Each cell may use 20 s of CPU; the spinner's sandbox, at its one core, burns that in its later cells,
    # and its notebook ends at 90 s of CPU. The innocent needs a few seconds of CPU per cell.
    rows = _graded_on_two_workers(tmp_path, notebook_timeout=90)
    auto = [c for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "auto"]
    innocent = rows[innocent_student]
    problems = [
        f"{c.name}: {innocent[c.name]['score']} ({innocent[c.name]['reason']})"
        for c in auto
        if float(innocent[c.name]["score"] or -1) != c.max_score
    ]
    assert not problems, problems
    assert all(r["sandbox"] == "on" for r in innocent.values())
    assert not _marked_processes(), "the spinner's busy loops outlived its sandbox"
    left = _left_behind([spinner, innocent_student])
    assert not left, f"left behind: {left}"


@pytest.mark.parametrize("unified", [False, True], ids=["cgroup-v1", "cgroup-v2"])
def test_the_cgroup_files_get_the_cpu_share_and_quota(tmp_path, monkeypatch, unified):
    """enter_cgroups writes one share and the quota of `cores` into whichever files the hierarchy has."""
    root = tmp_path / "cgroup"
    files = (
        ("cgroup.procs", "memory.max", "pids.max", "cpu.weight", "cpu.max", "cpu.stat")
        if unified
        else (
            "cgroup.procs",
            "memory.limit_in_bytes",
            "pids.max",
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpuacct.usage",
        )
    )
    if unified:
        folder = root / sandbox.CGROUP_NAME / "sandbox-7"
        folders = {controller: folder for controller in sandbox.V1_CONTROLLERS}
        for level in (root, root / sandbox.CGROUP_NAME):
            level.mkdir(parents=True, exist_ok=True)
            (level / "cgroup.subtree_control").write_text("")
        (root / "cgroup.controllers").write_text("cpu memory pids")
    else:
        folders = {
            controller: root / controller / sandbox.CGROUP_NAME / "sandbox-7" for controller in sandbox.V1_CONTROLLERS
        }
    for folder in set(folders.values()):
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            (folder / name).write_text("")
    monkeypatch.setattr(sandbox, "CGROUP_ROOT", root)
    monkeypatch.setattr(sandbox, "cgroup_folders", lambda uid: folders)
    spec = sandbox.Spec(
        sockets="",
        checker="",
        client="",
        data_root="",
        stage="",
        uid=7,
        memory_limit=2**30,
        process_limit=99,
        disk_limit=2**20,
        cores=1.5,
    )
    assert sandbox.enter_cgroups(spec)
    read = {name: (folders["cpu"] / name).read_text() for name in files if (folders["cpu"] / name).exists()}
    if unified:
        assert read["cpu.weight"] == "100" and read["cpu.max"] == "150000 100000"
        assert read["memory.max"] == str(2**30) and read["pids.max"] == "99"
    else:
        assert read["cpu.shares"] == "1024"
        assert read["cpu.cfs_period_us"] == "100000" and read["cpu.cfs_quota_us"] == "150000"
        assert (folders["memory"] / "memory.limit_in_bytes").read_text() == str(2**30)
        assert (folders["pids"] / "pids.max").read_text() == "99"


@pytest.mark.slow  # starts a kernel
@counts_cpu
def test_a_real_sandbox_gets_its_share_and_quota():
    settings = load_grading(argv=["--Grading.cores_per_sandbox=0.5"])
    with preflight.sandboxed_kernel(settings) as (client, manager):
        pid = manager.provisioner.process.pid
        uid = int(
            next(
                line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
            ).split()[1]
        )
        folders = sandbox.cgroup_folders(uid)
        cpu = folders["cpu"]
        if (cpu / "cpu.max").exists():
            assert (cpu / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            assert (cpu / "cpu.shares").read_text().strip() == "1024"
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert str(pid) in (cpu / "cgroup.procs").read_text().split()
        used = sandbox.cpu_clock(uid)()
        client.execute_interactive("x = 0\nfor _ in range(3_000_000):\n    x += 1", timeout=120)
        assert sandbox.cpu_clock(uid)() > used, "the sandbox's CPU time is not counted"


def test_the_default_cores_share_the_machine_among_the_workers():
    cpus = timelimits.usable_cpus()
    assert autograde.sandbox_cores(load_grading(workers=1)) == max(cpus, 1)
    assert autograde.sandbox_cores(load_grading(workers=2 * cpus)) == 1.0  # at least one core each
    assert autograde.sandbox_cores(load_grading(workers=1, cores_per_sandbox=0.25)) == 0.25
    assert load_grading(workers=3).workers == 3


class _Clock:
    def __init__(self):
        self.value = 0.0

    def __call__(self):
        return self.value


def _judged(
    monkeypatch,
    cpu: float,
    wall: float,
    host_busy: float,
    waited: float,
    cores: float = 1.0,
    in_sandboxes: float | None = None,
):
    """The limit of 10 s after `wall` seconds, in which the sandbox used `cpu` s of CPU and its threads waited
    `waited` s for one, while the host's CPUs were `host_busy` busy, `in_sandboxes` of that time (a share of
    the host's CPU time) in all the sandboxes together (None: the machine does not count it)."""
    clock, now, host, waits, sandboxes = _Clock(), [100.0], [(0, 0)], [{}], _Clock()
    monkeypatch.setattr(timelimits.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(timelimits, "host_cpu_times", lambda: host[0])
    monkeypatch.setattr(timelimits, "usable_cpus", lambda: 4)
    limit = timelimits.TimeLimit(
        10, clock, cores, 2.0, waits=lambda: waits[0], sandboxes_clock=sandboxes if in_sandboxes is not None else None
    )
    now[0] += wall
    clock.value = cpu
    host[0] = (int(host_busy * 1000), 1000)
    sandboxes.value = (in_sandboxes or 0.0) * 1000 / os.sysconf("SC_CLK_TCK")
    waits[0] = {1: waited / 2, 2: waited / 2}  # two threads, both started after the limit did
    return limit.check()


def test_cpu_time_past_the_limit_is_the_submissions_timeout(monkeypatch):
    expiry = _judged(monkeypatch, cpu=10.5, wall=11, host_busy=1.0, waited=0)
    assert expiry is not None and not expiry.overloaded and "CPU time" in expiry.message


def test_a_cell_slowed_by_others_gets_time_until_the_backstop(monkeypatch):
    # past 10 s of wall-clock time, under 10 s of CPU
    assert _judged(monkeypatch, cpu=3, wall=15, host_busy=1.0, waited=12) is None


def test_the_backstop_on_an_overloaded_machine_is_the_machines_fault(monkeypatch):
    expiry = _judged(monkeypatch, cpu=3, wall=20, host_busy=0.97, waited=17)
    assert expiry is not None and expiry.overloaded and "overloaded" in expiry.message


def test_the_backstop_of_a_sleeper_is_the_submissions_even_on_a_busy_machine(monkeypatch):
    """A submission that sleeps asks for no CPU: however busy the host, it was not starved."""
    for host_busy in (0.3, 1.0):
        expiry = _judged(monkeypatch, cpu=0.1, wall=20, host_busy=host_busy, waited=0.2)
        assert expiry is not None and not expiry.overloaded and "wall-clock" in expiry.message


def test_a_host_kept_busy_by_sandboxes_is_no_excuse(monkeypatch):
    """Sandboxes share the CPU by equal shares: when the host's CPUs went to sandboxes (a colluding classmate
    spinning, this submission's own threads made to queue), a cell that got little CPU and waited long is the
    submission's own timeout. Only work outside every sandbox makes it the machine's fault."""
    expiry = _judged(monkeypatch, cpu=3, wall=20, host_busy=0.97, waited=1800, in_sandboxes=0.95)
    assert expiry is not None and not expiry.overloaded, expiry
    expiry = _judged(monkeypatch, cpu=3, wall=20, host_busy=0.97, waited=17, in_sandboxes=0.3)
    assert expiry is not None and expiry.overloaded, expiry


def test_a_sandbox_that_used_its_cores_was_not_starved(monkeypatch):
    """On a busy host, a sandbox that had the cores it may use (here half a core) spun past its limit itself,
    however long its own threads queued behind one another."""
    expiry = _judged(monkeypatch, cpu=9.5, wall=20, host_busy=1.0, waited=300, cores=0.5)
    assert expiry is not None and not expiry.overloaded


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("bundle")
    return bundles.make_bundle(SOURCE, ASSIGNMENT, f"sqlite:///{scratch / 'class.db'}", scratch)


def _graded(bundle, code: str, **limits) -> submission.SubmissionResult:
    nb = solved()
    cell = cell_by_grade_id(nb, "threshold_query")
    cell.source += "\n" + code
    job = submission.Job("student", ASSIGNMENT, NOTEBOOK, nbformat.writes(nb).encode())
    return submission.grade_submission(job, bundle, load_grading().replace(**limits))


SLEEPER = "import time\ndef threshold_query(*args, **kwargs):\n    time.sleep(60)"  # the test cell calls it


@pytest.mark.slow  # starts a kernel
@counts_cpu
def test_a_cell_that_sleeps_past_its_backstop_scores_0(bundle):
    result = _graded(bundle, SLEEPER, cell_timeout=5)
    assert not result.grading_error, result.grading_error
    reasons = {c.name: c.reason for c in result.cells if c.score == 0}
    assert "time limit" in reasons.get("test_threshold_query", ""), result.cells


@pytest.mark.slow  # starts a kernel
@counts_cpu
def test_a_cell_starved_by_an_overloaded_machine_is_a_grading_error(bundle, monkeypatch):
    """A cell whose sandbox waited for a CPU all along while the host's CPUs were all busy (simulated: the
    real machine's load cannot be ordered) got far less CPU than its wall time allowed: when its backstop
    fires, that is the machine's fault, and the submission is regraded, not zeroed."""
    ticks = [0]

    def always_busy():
        ticks[0] += 1000
        return ticks[0], ticks[0]

    monkeypatch.setattr(timelimits, "host_cpu_times", always_busy)
    monkeypatch.setattr(sandbox, "waits", lambda uid: lambda: {1: time.monotonic()})
    result = _graded(bundle, SLEEPER, cell_timeout=5)
    assert result.grading_error.startswith("grading error: the machine was overloaded"), result.grading_error
    assert all(c.score is None and c.reason.startswith("grading error:") for c in result.cells)


# Sixty-four children that each wake on the same half-second tick and run 3 ms of CPU: the sandbox uses a
# fifth of a core, but its threads queue for one another all the time. Then the cell sleeps for good.
QUEUEING_SLEEPER = """
import os, time
def _queue_and_sleep():
    while True:
        now = time.time()
        time.sleep((int(now * 2) + 1) / 2 - now)
        end = time.thread_time() + 0.003
        while time.thread_time() < end:
            pass
for _ in range(64):
    if os.fork() == 0:
        try:
            _queue_and_sleep()
        finally:
            os._exit(0)
while True:
    time.sleep(1)
"""
SPIN_17_S = "\nimport time as _clock\n_start = _clock.time()\nwhile _clock.time() - _start < 17:\n    pass\n"


@pytest.mark.slow
@counts_cpu
def test_a_colluding_classmate_cannot_make_a_timeout_the_machines_fault(tmp_path):
    """The sleeper's cell passes its backstop while a classmate graded beside it spins in every solution cell
    (the host's CPUs all busy) and its own 64 children queue for its CPU: the host was kept busy by sandboxes,
    which share the CPU fairly, so that timeout is the sleeper's own (a score and a reason, never a grading
    error that every rerun would repeat); the colluder and an innocent keep full marks."""
    token = os.urandom(4).hex()
    sleeper, colluder, innocent = f"a_sleeper_{token}", f"a_colluder_{token}", f"z_innocent_{token}"
    for student in (sleeper, colluder, innocent):
        nb = solved()
        for cell in nb.cells:
            flags = cell.metadata.get("nbgrader", {})
            if student == sleeper and flags.get("grade_id") == "create_db":
                cell.source += "\n" + QUEUEING_SLEEPER
            elif student == colluder and cell.cell_type == "code" and flags.get("solution"):
                cell.source += SPIN_17_S
        (tmp_path / "class" / student / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "class" / student / ASSIGNMENT / NOTEBOOK)
    rows = _graded_on_two_workers(tmp_path, notebook_timeout=400)
    errors = [
        (s, c, r["reason"])
        for s, cells in rows.items()
        for c, r in cells.items()
        if r["reason"].startswith("grading error")
    ]
    assert not errors, errors
    auto = [c for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "auto"]
    for student in (colluder, innocent):
        lost = [
            (c.name, rows[student][c.name]["reason"])
            for c in auto
            if float(rows[student][c.name]["score"]) != c.max_score
        ]
        assert not lost, (student, lost)
    assert not _left_behind([sleeper, colluder, innocent])
