"""The time limits of a cell and of a notebook, counted in the sandbox's own CPU time.

A limit of T seconds (Grading.cell_timeout, Grading.notebook_timeout) is passed when the sandbox, all its
processes together, has used T seconds of CPU since the cell (or the notebook) started, as its cgroup
counts it (autograder.sandbox.bubblewrap.cpu_seconds): what other submissions or the host do cannot bring it closer.
A wall-clock backstop of `wall_clock_factor` × T stops what uses no CPU (a submission that sleeps, or
waits on a child it hid): when it fires, the machine is judged. If the sandbox got far less CPU than its
wall time allowed (STARVED of its cores) while the host's CPUs were busy (HOST_BUSY), and, where the
machine says so, its threads spent much of that time ready to run but waiting for a CPU (WAITED), the
machine was overloaded and the limit is a grading error, regraded by the next run; otherwise it is the
submission's own timeout (a submission that sleeps asks for no CPU, so it is not starved, however busy
the host). Where the machine counts the CPU time of all the sandboxes together (their parent cgroup), the
host must also have been kept busy by work outside every sandbox (OUTSIDE_BUSY): sandboxes share the CPU
by equal shares, so other submissions cannot starve one below its share, and neither a submission nor a
classmate colluding with it can make its own timeout look like the machine's (a sandbox's own threads can
be made to queue at will: their waiting alone proves nothing). Where the machine counts no CPU time per
sandbox (no cgroups), T is wall-clock time and always the submission's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

STARVED = 0.25  # the sandbox got less than this share of the CPU its cores and wall time allowed...
HOST_BUSY = 0.9  # ...while at least this share of the host's CPUs (those this process may use) was busy,
WAITED = 0.5  # ...and its threads together waited for a CPU at least this share of the wall time,
OUTSIDE_BUSY = 0.5  # ...and at least this share of the host's CPU time went to work outside every sandbox


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, which containers and cpusets narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host_cpu_times() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the CPUs this process may use, from /proc/stat; None without it."""
    try:
        lines = open("/proc/stat").read().splitlines()
        usable = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    except (OSError, AttributeError):
        return None
    busy = total = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in usable:
            ticks = [int(f) for f in fields[1:9]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


@dataclass
class Expiry:
    """A limit that fired: the submission's own timeout, or (overloaded) the machine's fault."""

    overloaded: bool
    message: str


class TimeLimit:
    """One limit, started now: `check()` says whether it has passed (None while it has not)."""

    def __init__(
        self,
        limit: float,
        cpu_clock: Callable[[], float] | None,
        cores: float,
        wall_clock_factor: float,
        what: str = "the cell",
        waits: Callable[[], dict[int, float]] | None = None,
        sandboxes_clock: Callable[[], float] | None = None,
    ):
        self.limit, self.cpu_clock, self.what, self.waits = limit, cpu_clock, what, waits
        self.sandboxes_clock = sandboxes_clock
        self.sandboxes_start = sandboxes_clock() if sandboxes_clock is not None else 0.0
        self.waits_start = waits() if waits is not None else {}
        self.cores = min(cores, usable_cpus()) if cores > 0 else usable_cpus()
        self.started = time.monotonic()
        self.cpu_start = cpu_clock() if cpu_clock is not None else None
        self.host_start = host_cpu_times()
        # Without the sandbox's CPU time there is nothing to judge the machine by: wall-clock time only.
        self.wall_limit = limit * max(wall_clock_factor, 1.0) if cpu_clock is not None else limit

    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    def cpu_seconds(self) -> float | None:
        if self.cpu_clock is None or self.cpu_start is None:  # both set or both None (__init__)
            return None
        return self.cpu_clock() - self.cpu_start

    def remaining_wall(self) -> float:
        return max(self.wall_limit - self.wall_seconds(), 0.0)

    def check(self) -> Expiry | None:
        wall, cpu = self.wall_seconds(), self.cpu_seconds()
        if cpu is not None and cpu >= self.limit:
            return Expiry(False, f"{self.what} used more than {self.limit:g} s of CPU time, its limit")
        if wall < self.wall_limit:
            return None
        if cpu is None:
            return Expiry(False, f"{self.what} ran for more than {self.limit:g} s, its limit")
        host = host_cpu_times()
        busy = (
            (host[0] - self.host_start[0]) / max(host[1] - self.host_start[1], 1) if host and self.host_start else 0.0
        )
        waited = (
            sum(now - self.waits_start.get(tid, 0.0) for tid, now in self.waits().items())
            if self.waits is not None
            else None
        )
        outside = self._outside_share(host)
        if (
            cpu < STARVED * self.cores * wall
            and busy >= HOST_BUSY
            and (waited is None or waited >= WAITED * wall)
            and (outside is None or outside >= OUTSIDE_BUSY)
        ):
            return Expiry(
                True,
                f"the machine was overloaded: {self.what} ran {wall:.0f} s but its sandbox got "
                f"{cpu:.1f} s of CPU (of {self.cores:g} core(s)) while the host's CPUs were "
                f"{busy:.0%} busy" + (f" and its threads waited {waited:.0f} s for one" if waited is not None else ""),
            )
        return Expiry(
            False,
            f"{self.what} ran for more than {self.wall_limit:g} s of wall-clock time, the "
            f"backstop of its {self.limit:g} s limit",
        )

    def _outside_share(self, host: tuple[int, int] | None) -> float | None:
        """The share of the host's CPU time since the start that went to work outside every sandbox, or None
        where the machine does not count the sandboxes' CPU time together."""
        if self.sandboxes_clock is None or not host or not self.host_start:
            return None
        ticks_per_second = os.sysconf("SC_CLK_TCK")
        busy = (host[0] - self.host_start[0]) / ticks_per_second
        total = max(host[1] - self.host_start[1], 1) / ticks_per_second
        return max(busy - (self.sandboxes_clock() - self.sandboxes_start), 0.0) / total
