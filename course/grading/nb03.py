"""Hidden-test checks for notebook 03_randomized_response.

Each `check_<function>(student_function, seed=0)` raises `GradingFailure` with an actionable message when the
student's function disagrees with `course.lib.randomized_response`. Student functions have the spec
signatures (no generator), so checks seed the global generators with `seed_everything`; inputs come from a
separate NumPy generator so they never share a random stream with the student's draws.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course.grading import as_float, call, require, seed_everything
from course.grading.stats import alpha_per_test, require_binomial, require_independent_pairs
from course.lib.randomized_response import debias_mean, rr_epsilon

_INPUT_STREAM = 3  # distinguishes this notebook's input generator from other notebooks' for the same seed
_NUM_ROWS = 2000
_NOISE_LEVELS = (None, 0.2, 0.9)  # None: call without p_noise to check the default of 0.5
_RELATIVE_TOLERANCE = 1e-9


def _inputs(seed: int) -> np.random.Generator:
    return np.random.default_rng((seed, _INPUT_STREAM))


def _rr_call_text(p_noise) -> str:
    return "with the default p_noise" if p_noise is None else f"with p_noise={p_noise}"


def _reported_rows(student_rr, db: torch.Tensor, p_noise) -> np.ndarray:
    """Call the student's function on `db`; check the input is left unchanged and the output is a tensor of
    0/1 rows of the same shape; return those rows as a bool array."""
    original = db.clone()
    args = (db,) if p_noise is None else (db, p_noise)
    reported = call(student_rr, *args)
    where = f"randomized_response {_rr_call_text(p_noise)}"
    require(torch.equal(db, original), f"{where} modified its input database; return a new tensor instead.")
    require(torch.is_tensor(reported), f"{where} should return a torch.Tensor, got {type(reported).__name__}.")
    require(
        tuple(reported.shape) == tuple(db.shape),
        f"{where} returned shape {tuple(reported.shape)} for a database of shape {tuple(db.shape)}; the "
        "output must have one row per person, like the database.",
    )
    values = reported.detach().cpu()
    require(bool(((values == 0) | (values == 1)).all()), f"{where} returned values other than True/False (or 0/1).")
    return values.to(torch.bool).numpy()


def check_randomized_response(student_rr, seed: int = 0) -> None:
    """Binomial tests of the reported-True rates, per call, for all-True, all-False and mixed databases.

    For each noise level (the default 0.5, 0.2 and 0.9) four calls of 2000 rows: an all-True database (one
    rate test: True w.p. 1 - p/2; one independence test: rows 2i and 2i+1 agree w.p. q^2 + (1-q)^2), an
    all-False one (the same with q = p/2), a mixed one (one rate test for its True rows, one for its False
    rows) and a second all-True call that must differ from the first (identical outputs have probability
    (q^2 + (1-q)^2)^2000 < 1e-170 for these levels). 6 tests per level, 18 in all, each at 1e-6 / 18. Also
    checks shape, 0/1 values, that the input is left alone and that p_noise=0 reports the truth.
    """
    seed_everything(seed)
    inputs = _inputs(seed)
    alpha = alpha_per_test(6 * len(_NOISE_LEVELS))
    for p_noise in _NOISE_LEVELS:
        level = 0.5 if p_noise is None else p_noise
        keep_true = 1 - level / 2
        text = _rr_call_text(p_noise)
        for truth, rate in ((True, keep_true), (False, level / 2)):
            db = torch.full((_NUM_ROWS,), truth, dtype=torch.bool)
            rows = _reported_rows(student_rr, db, p_noise)
            rule = (
                "each row is kept with probability 1 - p_noise, otherwise replaced by a fair coin, so a "
                f"{truth} row is reported True with probability {'1 - p_noise/2' if truth else 'p_noise/2'}"
            )
            require_binomial(
                int(rows.sum()),
                rows.size,
                rate,
                alpha,
                f"randomized_response {text} reported True for the rows of an all-{truth} database",
                rule,
            )
            agree = rate**2 + (1 - rate) ** 2
            require_independent_pairs(
                rows[0::2],
                rows[1::2],
                agree,
                alpha,
                f"randomized_response {text} on an all-{truth} database",
                "randomise every row with its own coins, not one coin for several rows",
            )
            if truth:
                again = _reported_rows(student_rr, db, p_noise)
                require(
                    not np.array_equal(rows, again),
                    f"randomized_response {text} returned exactly the same output twice; each call must "
                    "draw fresh randomness (do not reseed inside the function).",
                )
        db = torch.from_numpy(inputs.random(_NUM_ROWS) < inputs.uniform(0.2, 0.8))
        rows = _reported_rows(student_rr, db, p_noise)
        truth_rows = db.numpy()
        for truth, rate in ((True, keep_true), (False, level / 2)):
            subset = rows[truth_rows == truth]
            require_binomial(
                int(subset.sum()),
                subset.size,
                rate,
                alpha,
                f"randomized_response {text} reported True for the {truth} rows of a mixed database",
                "each row must be randomised starting from its own true value",
            )
    db = torch.from_numpy(inputs.random(_NUM_ROWS) < 0.5)
    require(
        np.array_equal(_reported_rows(student_rr, db, 0.0), db.numpy()),
        "randomized_response with p_noise=0 must report every row truthfully.",
    )
    float_db = db.to(torch.float32)
    reported = call(student_rr, float_db, 0.5)
    require(
        torch.is_tensor(reported) and tuple(reported.shape) == tuple(float_db.shape),
        "randomized_response must also accept a 0/1 float database and return a tensor of the same shape.",
    )


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=_RELATIVE_TOLERANCE, abs_tol=_RELATIVE_TOLERANCE)


def check_debias_mean(student_debias, seed: int = 0) -> None:
    """Compare with the reference on 200 random (noisy_mean, p_noise) pairs, p_noise in [0, 0.95], plus the
    default p_noise, to relative tolerance 1e-9."""
    seed_everything(seed)
    inputs = _inputs(seed)
    cases = [(float(m), None) for m in inputs.uniform(0, 1, 20)]
    cases += [(0.0, 0.0), (1.0, 0.3), (0.5, 0.5)]
    cases += [(float(m), float(p)) for m, p in zip(inputs.uniform(0, 1, 200), inputs.uniform(0, 0.95, 200))]
    for noisy_mean, p_noise in cases:
        args = (noisy_mean,) if p_noise is None else (noisy_mean, p_noise)
        shown = f"debias_mean({noisy_mean:.6g}" + ("" if p_noise is None else f", p_noise={p_noise:.6g}") + ")"
        actual = as_float(call(student_debias, *args), "debias_mean")
        expected = debias_mean(*args)
        require(
            _close(actual, expected),
            f"{shown} returned {actual:.6g}; expected {expected:.6g}. The randomised mean is "
            "(1 - p_noise) * true_mean + p_noise/2 in expectation: invert that for every p_noise, not only "
            "the default.",
        )


def check_rr_epsilon(student_rr_epsilon, seed: int = 0) -> None:
    """Compare with the reference at p_noise = 0.5 and 200 random values in [0.01, 0.99], relative tolerance
    1e-9."""
    seed_everything(seed)
    noise_levels = [0.5] + [float(p) for p in _inputs(seed).uniform(0.01, 0.99, 200)]
    for p_noise in noise_levels:
        actual = as_float(call(student_rr_epsilon, p_noise), "rr_epsilon")
        expected = rr_epsilon(p_noise)
        require(
            _close(actual, expected),
            f"rr_epsilon({p_noise:.6g}) returned {actual:.6g}; expected {expected:.6g}. epsilon is the log "
            "of the largest ratio between the probabilities of one output for a True and for a False row.",
        )
