"""Shared helpers for hidden tests.

A hidden test cell calls one `check_<function>(student_function, seed=...)` from the module for its notebook
(`course.grading.nb01`, ...). A check raises `GradingFailure` with a message a student can act on; the
feedback shows that message and never the test's code. Checks seed every generator they use, so grading is
reproducible, and statistical checks are calibrated so a correct answer fails with probability below 1e-6.
"""
from __future__ import annotations

import random

import numpy as np
import torch


class GradingFailure(AssertionError):
    """A hidden test failed; the message says what was wrong, in the student's terms."""


def fail(message: str) -> None:
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
