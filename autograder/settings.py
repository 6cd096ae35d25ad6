"""Every grading limit and default in one place: the traitlets of `Grading`, set in nbgrader_config.py, and
the one typed, frozen object made from them, `GradingSettings`, that every part of the grader reads.

`python -m autograder grade` reads them from autograder/pipeline/nbgrader_config.py (as `c.Grading.<name>`); its
command-line options override them through the same traitlets, as nbgrader's own apps do (`--help-all` lists
them). `load_grading` turns the result into a `GradingSettings`, which travels as it is to the sandbox, the
check server, the wire, intake, the sanitiser and the Dask workers. Environment variable names shared by the
grader, the sandbox and the kernel are defined here too.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Config, Configurable, PyFileConfigLoader

from autograder.layout import CONFIG_FILE, DATA

if TYPE_CHECKING:
    from autograder.kernel_side.wire import Wire

DATA_VARIABLE = "DP_COURSE_DATA"  # the datasets' root, read by the notebooks' setup cell
CHECKER_VARIABLE = "DP_COURSE_CHECKER"  # path of the grader's check socket inside the kernel's view
CHECK_NAME = re.compile(r"nb\d\d\.check_\w+")  # a hidden check as test cells name it: course.grading.<module>.<check>
# What the grader sets itself, per submission, from Grading: a config line for them would be ignored.
GRADER_OWNED = {
    "Execute": {"timeout": "cell_timeout", "startup_timeout": "startup_timeout"},
    "TrustedExecute": {"timeout": "cell_timeout", "startup_timeout": "startup_timeout"},
}


class Grading(Configurable):
    """Limits and defaults of `python -m autograder grade`."""

    notebook_timeout = Float(
        600.0,
        help="Limit in seconds for one notebook, kernel start to feedback: CPU "
        "seconds of its sandbox where the machine counts them (cgroups, as "
        "root), else wall-clock seconds; past it the sandbox is killed and "
        "the notebook scores 0 with a timeout reason (see wall_clock_factor).",
    ).tag(config=True)
    cell_timeout = Float(
        120.0,
        help="Limit in seconds for one cell (nbgrader's Execute.timeout): CPU seconds "
        "of its sandbox, all its processes together, where the machine counts "
        "them, else wall-clock seconds; a cell past it is interrupted and scores "
        "0 (see wall_clock_factor).",
    ).tag(config=True)
    wall_clock_factor = Float(
        2.0,
        help="Where the time limits count CPU time, the wall-clock backstop of each, "
        "as a multiple of it: a cell or notebook still running after that long "
        "is stopped and scores 0, unless the machine was overloaded meanwhile "
        "(its sandbox got under a quarter of the CPU its cores allowed, waiting "
        "for it, while the host's CPUs were 90% busy): then it is a grading "
        "error, regraded by the next run (autograder.sandbox.timelimits).",
    ).tag(config=True)
    cores_per_sandbox = Float(
        0.0,
        help="Most CPU cores one sandbox may use at once (a cgroup CPU quota, as "
        "root); each sandbox is also one equal CPU share, however many "
        "processes it starts. 0: the CPUs this machine lets the grader use, "
        "divided by Grading.workers (at least one).",
    ).tag(config=True)
    startup_timeout = Float(
        120.0, help="Seconds a sandboxed kernel may take to start before the submission becomes a grading error."
    ).tag(config=True)
    kernel_probe = Unicode(
        "import numpy, torch",
        help="Code every grading kernel runs as soon as it starts, "
        "before the notebook's first cell; when it fails, the kernel (not the student) is at "
        "fault: a grading error, and the batch stops if no kernel has worked yet.",
    ).tag(config=True)
    memory_limit = Int(
        6 * 1024**3,
        help="Bytes of memory for one sandbox, all its processes together (a "
        "cgroup where the machine has one; otherwise each process's address "
        "space is limited to this).",
    ).tag(config=True)
    process_limit = Int(256, help="Processes and threads one sandbox may run at once.").tag(config=True)
    disk_limit = Int(
        1024**3,
        help="Bytes a sandbox may write: its scratch folder, /tmp and /dev/shm "
        "together (one size-limited tmpfs, counted in its memory).",
    ).tag(config=True)
    output_limit = Int(
        32 * 1024**2, help="Bytes of output one notebook may produce; outputs past it are dropped and the cell says so."
    ).tag(config=True)
    notebook_size_limit = Int(
        32 * 1024**2,
        help="Bytes of one submitted notebook, checked at intake before "
        "it is read (and a zip member's uncompressed size, before it is extracted); a "
        "bigger notebook is not graded and scores 0 as malformed. The release notebooks "
        "are about 100 KB; outputs with figures add a few MB.",
    ).tag(config=True)
    notebook_cell_limit = Int(
        10_000,
        help="Cells of one submitted notebook, counted at intake by a streaming "
        "scan before nbformat reads it; a notebook with more is not graded and scores 0 "
        "as malformed. The release notebooks have at most 54 cells.",
    ).tag(config=True)
    notebook_value_limit = Int(
        1_000_000,
        help="JSON values (arrays, objects and their elements: cells, outputs, "
        "source lines) of one submitted notebook, counted from its bytes at intake before "
        "any parser runs (nbformat costs up to 45 KB a value); a notebook with more scores "
        "0 as malformed. The release notebooks have about 2,000.",
    ).tag(config=True)
    notebook_depth_limit = Int(
        100,
        help="Levels of nested arrays and objects in one submitted notebook, measured "
        "from its bytes at intake before any parser runs (a streaming parser's cost grows "
        "with the square of the depth); a deeper notebook scores 0 as malformed. The "
        "release notebooks nest 6 levels.",
    ).tag(config=True)
    zip_member_limit = Int(
        100_000,
        help="Members of a submissions zip, checked before anything is extracted; a zip with more is refused whole.",
    ).tag(config=True)
    zip_size_limit = Int(
        8 * 1024**3,
        help="Uncompressed bytes of all the members of a submissions zip together, "
        "from its directory before anything is extracted; a zip over it is refused whole.",
    ).tag(config=True)
    wire_depth_limit = Int(
        40,
        help="Levels of nested containers a student's function may return to a hidden test; deeper values "
        "arrive as opaque stand-ins (autograder.kernel_side.wire).",
    ).tag(config=True)
    wire_value_limit = Int(
        1 << 20,
        help="Values (numbers, strings, containers) one message from a kernel may unpack to; a message "
        "with more fails that hidden test. Its pickle may also hold at most twice as many instructions.",
    ).tag(config=True)
    wire_int_bits_limit = Int(
        4096, help="Bits of an integer in a message from a kernel; a bigger one fails that hidden test."
    ).tag(config=True)
    name_limit = Int(100, help="Characters kept of a type, function or exception name that a kernel sends.").tag(
        config=True
    )
    message_limit = Int(
        2000, help="Characters kept of an exception message from a kernel, and of a hidden test's verdict."
    ).tag(config=True)
    repr_limit = Int(200, help="Characters kept of the repr of a value that does not cross to the grader as data.").tag(
        config=True
    )
    reason_limit = Int(
        400, help="Characters of one grading error's reason in grades.csv (the log keeps the whole story)."
    ).tag(config=True)
    student_id_limit = Int(
        100,
        help="Characters of a student id read from a submission's file name or an LMS export; a longer "
        "one is refused at intake.",
    ).tag(config=True)
    markup_size_limit = Int(
        1_000_000,
        help="Characters of one HTML, SVG or Markdown text of a submission that the sanitiser parses; "
        "a longer one is not shown as such in formgrader or the feedback (autograder.sinks.sanitise).",
    ).tag(config=True)
    markup_notebook_limit = Int(
        4_000_000,
        help="Characters of HTML, SVG and Markdown outputs the sanitiser parses per notebook (about "
        "a second); outputs past it are shown as text.",
    ).tag(config=True)
    reply_limit = Int(
        256 * 1024**2,
        help="Bytes the check server accepts in one message from a kernel; a bigger reply fails that hidden test.",
    ).tag(config=True)
    data_root = Unicode(
        help="Folder of the datasets, shared read-only with every kernel (default: "
        "$DP_COURSE_DATA, else the repository's data/)."
    ).tag(config=True)
    workers = Int(1, help="Dask LocalCluster worker processes; each grades one notebook at a time.").tag(config=True)
    scheduler = Unicode(
        "", help="Address of a running Dask scheduler (tcp:// or tls://) to grade on instead of a LocalCluster."
    ).tag(config=True)
    security_file = Unicode(
        "",
        help="Dask configuration file (YAML, distributed.comm.tls.*) with the TLS "
        "certificates for a tls:// scheduler; empty: Dask's own configuration "
        "(~/.config/dask, DASK_CONFIG).",
    ).tag(config=True)
    allowed_failures = Int(
        2,
        help="Worker deaths a grading task may cause on the LocalCluster and still be "
        "retried (distributed.scheduler.allowed-failures); one more and the "
        "submission is a grading error.",
    ).tag(config=True)
    connect_timeout = Float(30.0, help="Seconds to reach a Dask scheduler before grading stops.").tag(config=True)
    worker_timeout = Float(60.0, help="Seconds to wait for a first worker on an external scheduler.").tag(config=True)
    sandbox = Bool(
        True,
        help="Run every kernel in its own bubblewrap sandbox. Turn off only with "
        "--no-sandbox on a machine without one; grades.csv then says so.",
    ).tag(config=True)
    secret_file = Unicode(
        str(Path.home() / ".config" / "dp-course" / "grading-secret"),
        help="File holding the course secret from which each student's hidden-test seed is "
        "derived (made on first use, mode 600). Keep it outside the repository and back "
        "it up: a regrade with another secret draws other test inputs.",
    ).tag(config=True)
    bundle_cache = Unicode(
        str(Path.home() / ".cache" / "dp-course" / "bundles"),
        help="Folder where each assignment version's gradebook template is kept, so that a "
        "later run of the same source and grading code skips nbgrader's "
        "generate_assignment; empty: no cache.",
    ).tag(config=True)
    min_free_disk = Int(
        512 * 1024**2, help="Bytes that must be free in OUT and the temporary folder before a batch starts."
    ).tag(config=True)


_NOT_GRADE_INPUTS = frozenset(
    {
        "data_root",
        "scheduler",
        "security_file",
        "secret_file",
        "bundle_cache",
        "min_free_disk",
        "connect_timeout",
        "worker_timeout",
        "allowed_failures",
    }
)


@dataclasses.dataclass(frozen=True)
class GradingSettings:
    """`Grading`'s traitlets, resolved and frozen: what every part of the grader reads (the fields are the
    traitlets, with the same names and help). Picklable, so that it travels to Dask workers as it is."""

    notebook_timeout: float
    cell_timeout: float
    wall_clock_factor: float
    cores_per_sandbox: float
    startup_timeout: float
    kernel_probe: str
    memory_limit: int
    process_limit: int
    disk_limit: int
    output_limit: int
    notebook_size_limit: int
    notebook_cell_limit: int
    notebook_value_limit: int
    notebook_depth_limit: int
    zip_member_limit: int
    zip_size_limit: int
    wire_depth_limit: int
    wire_value_limit: int
    wire_int_bits_limit: int
    name_limit: int
    message_limit: int
    repr_limit: int
    reason_limit: int
    student_id_limit: int
    markup_size_limit: int
    markup_notebook_limit: int
    reply_limit: int
    data_root: Path  # resolved: Grading.data_root, else $DP_COURSE_DATA, else the repository's data/
    workers: int
    scheduler: str
    security_file: str
    allowed_failures: int
    connect_timeout: float
    worker_timeout: float
    sandbox: bool
    secret_file: str
    bundle_cache: Path | None  # None: no cache
    min_free_disk: int

    @classmethod
    def of(cls, grading: Grading) -> GradingSettings:
        values = {field.name: getattr(grading, field.name) for field in dataclasses.fields(cls)}
        values["data_root"] = Path(grading.data_root or os.environ.get(DATA_VARIABLE) or DATA).resolve()
        values["bundle_cache"] = Path(grading.bundle_cache).expanduser() if grading.bundle_cache else None
        values["workers"] = max(grading.workers, 1)
        return cls(**values)

    def grade_inputs(self) -> dict:
        """The settings a grade can depend on (the limits, the sandbox, its cores), for a regrade's digest:
        not where things are, nor how workers are reached."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in _NOT_GRADE_INPUTS}

    def replace(self, **changes) -> GradingSettings:
        return dataclasses.replace(self, **changes)

    @property
    def wire(self) -> Wire:
        """The limits of every frame between a kernel and the check server."""
        from autograder.kernel_side.wire import Wire  # late: it imports torch

        return Wire(
            frame_bytes=self.reply_limit,
            depth=self.wire_depth_limit,
            values=self.wire_value_limit,
            int_bits=self.wire_int_bits_limit,
            name_chars=self.name_limit,
            message_chars=self.message_limit,
            repr_chars=self.repr_limit,
        )


def load_grading(config: Config | None = None, argv: list[str] | None = None, **overrides) -> GradingSettings:
    """The course's settings from nbgrader_config.py (or `config`), then `--Grading.<name>=<value>` options in
    `argv`, then keyword overrides (None: keep). A config line for something the grader sets itself from
    Grading (`c.Execute.timeout`, ...) is refused with a message naming the traitlet to set instead."""
    from traitlets.config.loader import KVArgParseConfigLoader

    config = (
        config
        if config is not None
        else PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    )
    if argv:
        unknown = [a for a in argv if not a.startswith("--Grading.")]
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; settings are given as --Grading.<name>=<value>")
        config.merge(KVArgParseConfigLoader(argv=argv).load_config())
    _refuse_grader_owned(config)
    grading = Grading(config=config)
    for name, value in overrides.items():
        if value is not None:
            setattr(grading, name, value)
    return GradingSettings.of(grading)


def _refuse_grader_owned(config: Config) -> None:
    for section, names in GRADER_OWNED.items():
        if section not in config:
            continue
        for name in config[section]:
            if name in names:
                raise ValueError(
                    f"c.{section}.{name} is set by the grader for every submission; set c.Grading.{names[name]} "
                    "in autograder/pipeline/nbgrader_config.py instead"
                )
            if section == "TrustedExecute":
                raise ValueError(
                    f"c.TrustedExecute.{name} is set by the grader for every submission from Grading's "
                    "traitlets (python -m autograder grade --help-all lists them)"
                )


@functools.cache
def course_settings() -> GradingSettings:
    """The settings of nbgrader_config.py alone, for code that nbgrader or formgrader runs outside
    `python -m autograder grade` (the sanitiser in formgrader's own feedback, for example)."""
    return load_grading()
