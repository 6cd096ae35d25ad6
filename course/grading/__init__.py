"""Shared helpers for hidden tests.

Each notebook has a module (`course.grading.nb01`, ...) of checks `check_<function>(student_function,
seed=...)`. A hidden test cell names one (`check("nb01.check_create_db", create_db)`, see
autograder.kernel_side.check_client); while grading, the check runs in the grader's process and
`student_function` is a stand-in that calls the student's code in their kernel (autograder.pipeline.check_server).
A check raises `GradingFailure` with a message a student can act on; the feedback shows that message and never
the test's code. Checks seed every generator they use, so grading is
reproducible, and statistical checks are calibrated so a correct answer fails with probability below 1e-6.
"""

from __future__ import annotations

import random
from contextvars import ContextVar
from typing import NoReturn

import numpy as np
import torch

# While the grader runs a check against a student's kernel (autograder.pipeline.check_server), this holds a callable
# that seeds the kernel's generators as well: the student's code draws from those, not from this process's.
STUDENT_SEEDER: ContextVar = ContextVar("student_seeder", default=None)


class GradingFailure(AssertionError):
    """A hidden test failed; the message says what was wrong, in the student's terms.

    Checks raise it in the grader's process; the check server sends its message to the kernel, whose check
    client raises its own class of the same name there (the kernel cannot load this package).
    """


def fail(message: str) -> NoReturn:
    """Raise `GradingFailure(message)`."""
    raise GradingFailure(message)


def require(condition, message: str) -> None:
    """Raise `GradingFailure(message)` unless `condition` holds."""
    if not condition:
        raise GradingFailure(message)


def call(function, *args, **kwargs):
    """Call a student's function, turning any exception it raises into a `GradingFailure` that names it."""
    name = getattr(function, "__name__", "your function")
    try:
        return function(*args, **kwargs)
    except GradingFailure:
        raise
    except Exception as error:  # the student's own bug: report it, do not crash the grader
        raise GradingFailure(f"{name} raised {type(error).__name__}: {error}") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators; return a torch.Generator seeded the same way.

    Student code usually draws from the global generators, so seeding them makes a hidden test reproducible.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    seed_student = STUDENT_SEEDER.get()
    if seed_student is not None:
        seed_student(seed)
    return torch.Generator().manual_seed(seed)


def as_float(value, what: str) -> float:
    """Convert a student's scalar result (float, int, 0-d tensor or 1-element array) to float, or fail."""
    try:
        if torch.is_tensor(value):
            if value.numel() != 1:
                fail(f"{what} should be a single number, got a tensor of shape {tuple(value.shape)}")
            return float(value.item())
        return float(np.asarray(value).item())
    except GradingFailure:
        raise
    except Exception:
        fail(f"{what} should be a single number, got {type(value).__name__}")
