"""One lock for the imports that two of the grader's threads could make at the same time.

CPython locks each module while it runs, but a thread that meets a module another thread is still running
through one of its import cycles gets it half made (torch has many: "partially initialized module 'torch'
has no attribute 'nn'"), and a library that catches the failure goes on without what it would have defined:
medmnist's `__init__` swallows it and is left without `PneumoniaMNIST`. So, in a process that grades:

- the preflight's imports are made before the warm-up thread starts (autograder.commands.grade.run_jobs);
- the warm-up thread (the hidden checks with torch and scipy, the feedback exporter's first page) runs under
  `LOCK`, and the grading thread takes `LOCK` to import what it needs of the same: the check server and the
  hidden checks (`load`), and its feedback pages (autograder.pipeline.autograde);
- what the grading thread imports to start the first kernel, and the warm-up imports too, is imported
  before the warm-up starts (`before_warm_up`).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import types

LOCK = threading.RLock()

# jupyter_client imports these to find a kernelspec, each in a try/except ImportError that would hide a
# half-made module; the feedback warm-up imports IPython too (its lexers).
KERNEL_START_IMPORTS = ("IPython.paths", "ipykernel.kernelspec")


def load(name: str) -> types.ModuleType:
    """importlib.import_module under LOCK."""
    with LOCK:
        return importlib.import_module(name)


def before_warm_up() -> None:
    """Import, in the grading thread, what it would otherwise import beside the warm-up thread."""
    for name in KERNEL_START_IMPORTS:
        with contextlib.suppress(ImportError):  # as jupyter_client, which works without them
            importlib.import_module(name)
