"""A submission's kernel, started before nbgrader is ready for it.

nbgrader spends about a second on a submission (gradebook queries, file copies, its cleaning pass) before its
Execute preprocessor starts the kernel, and a kernel needs about as long again to boot and pass its probe.
`started` launches the kernel first, so that the two overlap; `TrustedExecute` adopts it with `take` and from
then on treats it as one it started itself: it waits for it, probes it and shuts it down. A kernel that nobody
adopted is shut down when `started` ends. How the kernel is started is TrustedExecute's own code
(`TrustedExecute.start_kernel_early`), so an early kernel is started exactly as a late one would be.

Only sandboxed kernels start early: the sandbox fixes their view, working folder and environment, so where
and when the launch happens changes nothing inside.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

log = logging.getLogger(__name__)
_waiting: dict[str, AsyncKernelManager] = {}
_lock = threading.Lock()


@contextlib.contextmanager
def started(key: str, start: Callable[[], AsyncKernelManager]) -> Iterator[None]:
    """Call `start` now, which starts a kernel and returns its manager, for `take(key)` within this block."""
    try:
        manager = start()
    except Exception as error:  # TrustedExecute then starts the kernel itself, and reports why if that fails
        log.warning("the kernel could not start early: %s: %s", type(error).__name__, error)
        yield
        return
    with _lock:
        _waiting[key] = manager
    try:
        yield
    finally:
        with _lock:
            left = _waiting.pop(key, None)
        if left is not None:
            run_sync(left.shutdown_kernel)(now=True)


def take(key: str, kernel_name: str) -> AsyncKernelManager | None:
    """The kernel started for `key`, if it runs `kernel_name`; the caller now owns it."""
    with _lock:
        manager = _waiting.get(key)
        if manager is None or manager.kernel_name != kernel_name:
            return None
        return _waiting.pop(key)
