"""Checks made once before a batch, so that a broken machine stops the batch instead of zeroing a class.

`check(settings, assignments, out)` raises `PreflightError` with a message an instructor can act on when the
sandbox cannot be built or a sandboxed kernel does not start, when a dataset the assignments read is
missing, or when OUT or the temporary folder is nearly full. When one process grades, the first
submission's own kernel makes the kernel check instead (autograder.commands.grade.run_jobs), so a batch of one starts
one kernel, not two. On a Dask scheduler the workers grade, and
autograder.batch.cluster makes the same checks on each of them; here only the disk is checked.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.sandbox import bubblewrap as sandbox
from autograder.settings import GradingSettings
from course.notebooks import NOTEBOOKS

if TYPE_CHECKING:  # imported where used: jupyter_client is slow to import
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.manager import KernelManager


class PreflightError(RuntimeError):
    """The batch cannot start; the message says why."""


def check(settings: GradingSettings, assignments: list[str], out: Path, kernel: bool = True) -> None:
    """`kernel=False` leaves the kernel check to the first submission graded in this process: see
    autograder.commands.grade.run_jobs. Whatever fails here, the batch stops with a PreflightError, never a
    traceback."""
    try:
        _check(settings, assignments, out, kernel)
    except PreflightError:
        raise
    except Exception as error:  # noqa: BLE001 (a check that breaks is still a reason not to start)
        raise PreflightError(f"the preflight failed: {type(error).__name__}: {error}") from error


def _check(settings: GradingSettings, assignments: list[str], out: Path, kernel: bool) -> None:
    _check_disk(settings, out)
    if settings.scheduler:
        return  # the workers grade: autograder.batch.cluster checks their sandbox, data and versions instead
    _check_datasets(settings.data_root, assignments)
    if settings.sandbox:
        reason = sandbox.unavailable_reason()
        if reason:
            raise PreflightError(
                f"{reason}. Grading needs the sandbox; to grade without it anyway (the kernels "
                "then run with your rights), pass --no-sandbox."
            )
        if kernel:
            _check_kernel(settings)


def _check_disk(settings: GradingSettings, out: Path) -> None:
    for folder in (out, Path(tempfile.gettempdir())):
        free = shutil.disk_usage(folder).free
        if free < settings.min_free_disk:
            raise PreflightError(
                f"only {free / 2**20:.0f} MiB free in {folder}; grading needs at least "
                f"{settings.min_free_disk / 2**20:.0f} MiB (Grading.min_free_disk)"
            )


def _check_datasets(data_root: Path, assignments: list[str]) -> None:
    needed = {name for a in assignments if a in NOTEBOOKS for name in NOTEBOOKS[a].datasets}
    try:
        if "mnist" in needed:
            import torchvision

            for train in (True, False):
                torchvision.datasets.MNIST(str(data_root), train=train, download=False)
        if "pneumonia" in needed:
            # From medmnist.dataset itself: medmnist's __init__ swallows any error of that import (printing
            # "Please install the required packages") and is then left without its datasets.
            from medmnist.dataset import PneumoniaMNIST

            PneumoniaMNIST(split="train", root=str(data_root / "medmnist"), download=False)
    except (RuntimeError, OSError, FileNotFoundError) as error:
        raise PreflightError(
            f"a dataset the notebooks read is missing from {data_root} ({error}); run `make "
            "data` (it copies ../shared/data), or set Grading.data_root or DP_COURSE_DATA"
        ) from None


def _check_kernel(settings: GradingSettings) -> None:
    """Start one sandboxed kernel, as grading will, and run the kernels' probe in it."""
    try:
        with sandboxed_kernel(settings) as (client, _):
            reply = client.execute_interactive(
                settings.kernel_probe, timeout=settings.startup_timeout, output_hook=lambda message: None
            )
    except Exception as error:  # noqa: BLE001 (whatever went wrong, the batch must not start)
        raise PreflightError(f"a sandboxed kernel did not start: {type(error).__name__}: {error}") from None
    if reply["content"]["status"] != "ok":
        raise PreflightError(
            f"a sandboxed kernel started but failed its probe {settings.kernel_probe!r}: "
            f"{reply['content'].get('ename', '')}: {reply['content'].get('evalue', '')}"
        )


@contextlib.contextmanager
def sandboxed_kernel(settings: GradingSettings) -> Iterator[tuple[BlockingKernelClient, KernelManager]]:
    """A kernel in a grading sandbox, as nbgrader starts it: yields (client, manager); gone on exit."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    from autograder.pipeline.autograde import prepare_sandbox, release_sandbox, sandbox_uid

    base = Path(tempfile.mkdtemp(prefix="dpg-"))
    uid = sandbox_uid()
    manager = client = None
    try:
        base.chmod(0o711)
        course = base / "course"
        course.mkdir(mode=0o700)
        prepare_sandbox(base, course, settings, uid)
        specs = KernelSpecManager(kernel_dirs=[str(course / ".jupyter" / "kernels")], ensure_native_kernel=False)
        manager = KernelManager(
            kernel_name=sandbox.KERNEL_NAME,
            kernel_spec_manager=specs,
            transport="ipc",
            ip=str(base / "k" / "kernel"),
            connection_file=str(course / "kernel.json"),
        )
        manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=settings.startup_timeout)
        yield client, manager
    finally:
        if client is not None:
            client.stop_channels()
        if manager is not None and manager.has_kernel:
            manager.shutdown_kernel(now=True)
        release_sandbox(base, uid)
