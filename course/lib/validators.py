"""Argument validation shared by the reference implementations.

Every public function in `course.lib` (and the helpers of `course.shown` that take numbers from a user)
validates its inputs with these so that bad input raises a `ValueError` that says what was wrong, never a
silent wrong answer. Each check is written once, here; notebooks that show a helper also show the checks it
calls, under these same public names.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def as_database(db, name: str = "db") -> torch.Tensor:
    """Return `db` as a 1-D tensor after checking it is a non-empty database of 0/1 (or bool) rows.

    Shape: `(num_rows,)`; dtype is kept (bool, integer or float holding only 0 and 1).
    """
    if not torch.is_tensor(db):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(db).__name__}")
    if db.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one row per person), got shape {tuple(db.shape)}")
    if db.numel() == 0:
        raise ValueError(f"{name} is empty: a database needs at least one row")
    if db.dtype != torch.bool and not bool(((db == 0) | (db == 1)).all()):
        raise ValueError(f"{name} must hold only 0/1 (or True/False) values")
    return db


def check_positive_int(value, name: str) -> int:
    """Return `value` as an int after checking it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_index(index, size: int, name: str = "index") -> int:
    """Return `index` as an int after checking 0 <= index < size (negative indices are refused)."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {index!r}")
    if not 0 <= index < size:
        raise ValueError(f"{name} must be in [0, {size - 1}], got {index}")
    return int(index)


def check_probability(p, name: str = "p", *, allow_one: bool = True) -> float:
    """Return `p` as a float after checking 0 <= p <= 1 (or 0 <= p < 1 when `allow_one` is False)."""
    p = check_finite(p, name)
    upper_ok = p <= 1 if allow_one else p < 1
    if p < 0 or not upper_ok:
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {p!r}")
    return p


def check_finite(value, name: str) -> float:
    """Return `value` as a float after checking it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    """Return `epsilon` as a float after checking it is finite and > 0."""
    epsilon = check_finite(epsilon, name)
    if epsilon <= 0:
        raise ValueError(f"{name} must be > 0, got {epsilon!r}")
    return epsilon


def check_delta(delta, name: str = "delta") -> float:
    """Return `delta` as a float after checking 0 < delta < 1."""
    delta = check_finite(delta, name)
    if not 0 < delta < 1:
        raise ValueError(f"{name} must be in (0, 1), got {delta!r}")
    return delta


def as_vector(values, name: str, *, allow_infinite: bool = False) -> np.ndarray:
    """Return `values` (array, list or tensor) as a non-empty 1-D float64 NumPy array `(n,)` without NaN.

    Infinite entries are refused unless `allow_infinite` (a membership score of +inf, say, still ranks).
    """
    if torch.is_tensor(values):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one number per example), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: it needs at least one number")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN: every entry must be a comparable number")
    if not allow_infinite and np.isinf(array).any():
        raise ValueError(f"{name} must hold only finite numbers")
    return array


def as_count_matrix(counts, min_classes: int = 1) -> np.ndarray:
    """Return vote `counts` as a float64 array `(num_queries, num_classes)` of finite, non-negative numbers,
    after checking that there are at least `min_classes` classes."""
    matrix = np.asarray(counts, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"counts must be 2-D, shape (num_queries, num_classes), got shape {matrix.shape}")
    if matrix.shape[1] < min_classes:
        raise ValueError(f"counts needs at least {min_classes} classes, got {matrix.shape[1]}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("counts must be finite")
    if np.any(matrix < 0):
        raise ValueError("counts must be non-negative")
    return matrix


def numpy_generator(rng):
    """What to draw noise from: `rng` itself, or NumPy's global generator (the `numpy.random` module) when None.

    Both offer `laplace` and `normal` with the same signature; the global one is what `np.random.seed` seeds.
    """
    if rng is None:
        return np.random
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    return rng
