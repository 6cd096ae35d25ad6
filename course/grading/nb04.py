"""Hidden-test checks for notebook 04_laplace.

Each `check_<function>(student_function, seed=0)` raises `GradingFailure` with an actionable message when the
student's function disagrees with `course.lib.laplace`. Randomised functions are tested statistically against
the noise law the reference uses (calibration in `course.grading.stats`); deterministic ones are compared with
the reference on generated inputs. Student functions have the spec signatures (no generator), so checks seed
the global generators with `seed_everything`; inputs come from a separate NumPy generator.

Parameters are chosen so that the usual mistakes change the noise a lot (an inverted scale epsilon/sensitivity
differs from sensitivity/epsilon by a factor of at least 4 in every configuration) and so that float32 rounding
of the released value stays far below the noise scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course.grading import as_float, call, fail, require, seed_everything
from course.grading.stats import alpha_per_test, require_noise_distribution, require_noise_independent_per_element
from course.lib.audit import empirical_epsilon
from course.lib.gaussian import gaussian_sigma
from course.lib.laplace import total_epsilon

_INPUT_STREAM = 4  # distinguishes this notebook's input generator from other notebooks' for the same seed
_SCALAR_CALLS = 300  # calls per scalar configuration: one noise sample each
_TENSOR_SHAPE = (100, 100)  # 10,000 noise samples from one call
_RELATIVE_TOLERANCE = 1e-9


def _inputs(seed: int) -> np.random.Generator:
    return np.random.default_rng((seed, _INPUT_STREAM))


def _scalar_noise(student_function, value: float, args: tuple, name: str) -> np.ndarray:
    """Noise of `_SCALAR_CALLS` calls `student_function(value, *args)`, each result read as one number."""
    return np.array(
        [as_float(call(student_function, value, *args), f"{name} of a number") - value for _ in range(_SCALAR_CALLS)]
    )


def _tensor_noise(student_function, value: torch.Tensor, args: tuple, name: str, context: str) -> np.ndarray:
    """Noise of one call on a tensor, flattened, after checking the call returned a new tensor of that shape."""
    original = value.clone()
    released = call(student_function, value, *args)
    require(torch.equal(value, original), f"{name} modified its input tensor {context}; return a new tensor instead.")
    require(
        torch.is_tensor(released),
        f"{name} of a tensor should return a tensor, got {type(released).__name__} {context}.",
    )
    require(
        tuple(released.shape) == tuple(value.shape),
        f"{name} returned shape {tuple(released.shape)} for a value of shape {tuple(value.shape)} {context}; "
        "add one noise value per element.",
    )
    return (released.detach().cpu().double() - value.double()).numpy().ravel()


def _check_tensor_mechanism(
    student_function,
    name: str,
    value: torch.Tensor,
    args: tuple,
    family: str,
    scale: float,
    alpha: float,
    context: str,
    why: str,
) -> None:
    """One call on a tensor: independence across elements (2 tests), the noise law (1 test), and a second call
    that must give different noise (identical continuous noise has probability 0)."""
    noise = _tensor_noise(student_function, value, args, name, context)
    require_noise_independent_per_element(noise, alpha, f"{name}'s noise {context}")
    require_noise_distribution(noise, family, scale, alpha, f"{name}'s noise", context, why)
    again = _tensor_noise(student_function, value, args, name, context)
    require(
        not np.array_equal(noise, again),
        f"{name} added exactly the same noise on two calls {context}; every call must draw fresh noise "
        "(do not reseed inside the function).",
    )


def check_laplace_mechanism(student_laplace, seed: int = 0) -> None:
    """KS tests of the noise for a float tensor of 10,000 elements, an integer tensor of 1,000 counts (whose
    noise must not be truncated) and numbers (2 configurations x 300 calls), plus 2 independence tests on the
    float tensor: 6 tests at 1e-6 / 6 each."""
    seed_everything(seed)
    inputs = _inputs(seed)
    alpha = alpha_per_test(6)
    why = "Laplace with scale sensitivity/epsilon"
    sensitivity, epsilon = 1.5, 0.75
    value = torch.from_numpy(inputs.normal(0, 5, _TENSOR_SHAPE))
    _check_tensor_mechanism(
        student_laplace,
        "laplace_mechanism",
        value,
        (sensitivity, epsilon),
        "laplace",
        sensitivity / epsilon,
        alpha,
        f"for a tensor of shape {_TENSOR_SHAPE}, sensitivity={sensitivity}, epsilon={epsilon}",
        why,
    )
    sensitivity, epsilon = 1.0, 4.0
    counts = torch.from_numpy(inputs.integers(0, 500, 1000))
    context = f"for an integer tensor of counts, sensitivity={sensitivity}, epsilon={epsilon}"
    noise = _tensor_noise(student_laplace, counts, (sensitivity, epsilon), "laplace_mechanism", context)
    require_noise_distribution(
        noise, "laplace", sensitivity / epsilon, alpha, "laplace_mechanism's noise", context, why
    )
    for sensitivity, epsilon in ((2.0, 0.5), (0.5, 2.0)):
        value = float(inputs.uniform(-10, 10))
        context = f"for a number with sensitivity={sensitivity}, epsilon={epsilon}"
        noise = _scalar_noise(student_laplace, value, (sensitivity, epsilon), "laplace_mechanism")
        require_noise_distribution(
            noise, "laplace", sensitivity / epsilon, alpha, "laplace_mechanism's noise", context, why
        )


def _random_db(inputs: np.random.Generator, num_rows: int) -> torch.Tensor:
    return torch.from_numpy(inputs.random(num_rows) < inputs.uniform(0.1, 0.9))


def _query_noise(student_query, db: torch.Tensor, epsilon: float, true_value: float, name: str) -> np.ndarray:
    """Noise of `_SCALAR_CALLS` calls `student_query(db, epsilon)`, checking the database is left alone."""
    original = db.clone()
    noise = np.array([as_float(call(student_query, db, epsilon), name) - true_value for _ in range(_SCALAR_CALLS)])
    require(torch.equal(db, original), f"{name} modified its input database.")
    return noise


def check_private_sum(student_private_sum, seed: int = 0) -> None:
    """KS tests of the noise for 2 databases (50 and 1000 rows) at epsilon 0.25 and 3, 300 calls each: 2 tests
    at 1e-6 / 2 each. Expected law: Laplace with scale 1/epsilon (replacement neighbours, sensitivity 1)."""
    seed_everything(seed)
    inputs = _inputs(seed)
    alpha = alpha_per_test(2)
    for num_rows, epsilon in ((50, 0.25), (1000, 3.0)):
        db = _random_db(inputs, num_rows)
        noise = _query_noise(student_private_sum, db, epsilon, float(db.sum()), "private_sum")
        require_noise_distribution(
            noise,
            "laplace",
            1 / epsilon,
            alpha,
            "private_sum's noise",
            f"for n={num_rows}, epsilon={epsilon:g}",
            "Laplace with scale 1/epsilon: one changed row moves the sum by at most 1",
        )


def check_private_mean(student_private_mean, seed: int = 0) -> None:
    """KS tests of the noise for 2 databases (1000 rows at epsilon 1, 40 rows at epsilon 0.3), 300 calls each:
    2 tests at 1e-6 / 2 each. Expected law: Laplace with scale 1/(n*epsilon) (replacement, sensitivity 1/n)."""
    seed_everything(seed)
    inputs = _inputs(seed)
    alpha = alpha_per_test(2)
    for num_rows, epsilon in ((1000, 1.0), (40, 0.3)):
        db = _random_db(inputs, num_rows)
        noise = _query_noise(student_private_mean, db, epsilon, float(db.sum()) / num_rows, "private_mean")
        require_noise_distribution(
            noise,
            "laplace",
            1 / (num_rows * epsilon),
            alpha,
            "private_mean's noise",
            f"for n={num_rows}, epsilon={epsilon:g}",
            "Laplace with scale 1/(n*epsilon): one changed row moves the mean by at most 1/n",
        )


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=_RELATIVE_TOLERANCE, abs_tol=_RELATIVE_TOLERANCE)


def check_total_epsilon(student_total_epsilon, seed: int = 0) -> None:
    """Compare with the reference on 100 random lists and tuples of 1 to 20 epsilons, tolerance 1e-9."""
    seed_everything(seed)
    inputs = _inputs(seed)
    for case in range(100):
        epsilons = [float(e) for e in inputs.uniform(0.01, 3.0, inputs.integers(1, 21))]
        if case % 2:
            epsilons = tuple(epsilons)
        shown = ", ".join(f"{e:.3g}" for e in epsilons[:4]) + (", ..." if len(epsilons) > 4 else "")
        actual = as_float(call(student_total_epsilon, epsilons), "total_epsilon")
        expected = total_epsilon(epsilons)
        require(
            _close(actual, expected),
            f"total_epsilon of {len(epsilons)} epsilons ({shown}) returned {actual:.6g}; expected "
            f"{expected:.6g}: under basic sequential composition the epsilons add up.",
        )


_INVALID_GAUSSIAN_EPSILONS = (1.0, 2.5, 0.0, -0.5)


def _require_value_error(student_gaussian, epsilon: float) -> None:
    """The student's function must raise ValueError for an epsilon outside (0, 1).

    Not wrapped in `call`: here an exception is the expected outcome, and only ValueError counts.
    """
    where = f"gaussian_mechanism(1.0, 1.0, epsilon={epsilon}, delta=1e-5)"
    try:
        student_gaussian(1.0, 1.0, epsilon, 1e-5)
    except ValueError:
        return
    except Exception as error:  # the student's own bug: report it, do not crash the grader
        fail(
            f"{where} raised {type(error).__name__}: {error}; it should raise ValueError, because the classic "
            "calibration only holds for 0 < epsilon < 1."
        )
    fail(
        f"{where} returned a value; it should raise ValueError, because the classic calibration only holds "
        "for 0 < epsilon < 1."
    )


def check_gaussian_mechanism(student_gaussian, seed: int = 0) -> None:
    """A ValueError for epsilon in 1, 2.5, 0, -0.5; then KS tests for a tensor of 10,000 elements and numbers
    (2 configurations x 300 calls), plus 2 independence tests on the tensor: 5 tests at 1e-6 / 5 each."""
    seed_everything(seed)
    inputs = _inputs(seed)
    alpha = alpha_per_test(5)
    why = "Gaussian with sigma = l2_sensitivity * sqrt(2 ln(1.25/delta)) / epsilon"
    for epsilon in _INVALID_GAUSSIAN_EPSILONS:
        _require_value_error(student_gaussian, epsilon)
    args = (0.5, 0.25, 1e-6)
    value = torch.from_numpy(inputs.normal(0, 5, _TENSOR_SHAPE))
    _check_tensor_mechanism(
        student_gaussian,
        "gaussian_mechanism",
        value,
        args,
        "gaussian",
        gaussian_sigma(*args),
        alpha,
        f"for a tensor of shape {_TENSOR_SHAPE}, l2_sensitivity={args[0]}, epsilon={args[1]}, delta={args[2]:g}",
        why,
    )
    for l2_sensitivity, epsilon, delta in ((1.0, 0.5, 1e-5), (3.0, 0.9, 1e-7)):
        value = float(inputs.uniform(-10, 10))
        args = (l2_sensitivity, epsilon, delta)
        noise = _scalar_noise(student_gaussian, value, args, "gaussian_mechanism")
        require_noise_distribution(
            noise,
            "gaussian",
            gaussian_sigma(*args),
            alpha,
            "gaussian_mechanism's noise",
            f"for a number with l2_sensitivity={l2_sensitivity}, epsilon={epsilon}, delta={delta:g}",
            why,
        )


def _audit_case(inputs: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """Two Laplace sample sets of different sizes, shifted by up to 1, and shared bin edges covering them all.

    Every sample lies inside the bins, so dividing a count by the sample size or by the histogram's total
    agree, and the widest central bins hold hundreds of samples, so some bin always reaches min_count.
    """
    size_x, size_y = inputs.integers(2000, 6000, 2)
    while size_x == size_y:
        size_y = inputs.integers(2000, 6000)
    samples_x = inputs.laplace(0.0, 1.0, size_x)
    samples_y = inputs.laplace(inputs.uniform(0, 1), 1.0, size_y)
    low = min(samples_x.min(), samples_y.min())
    high = max(samples_x.max(), samples_y.max())
    bins = np.linspace(low, high, inputs.integers(15, 40))
    min_count = (None, 5, 20, 50)[inputs.integers(0, 4)]
    return samples_x, samples_y, bins, min_count


def check_empirical_epsilon(student_empirical_epsilon, seed: int = 0) -> None:
    """Compare with the reference on 10 generated audits (sample sets of different sizes, 15 to 40 shared bins,
    the default or an explicit min_count), absolute and relative tolerance 1e-9."""
    seed_everything(seed)
    inputs = _inputs(seed)
    for _ in range(10):
        samples_x, samples_y, bins, min_count = _audit_case(inputs)
        args = (samples_x, samples_y, bins) if min_count is None else (samples_x, samples_y, bins, min_count)
        actual = as_float(call(student_empirical_epsilon, *args), "empirical_epsilon")
        expected = empirical_epsilon(*args)
        shown = "the default min_count" if min_count is None else f"min_count={min_count}"
        require(
            _close(actual, expected),
            f"empirical_epsilon returned {actual:.6g} for {samples_x.size} and {samples_y.size} samples, "
            f"{bins.size - 1} bins and {shown}; expected {expected:.6g}. Divide each bin count by the size of "
            "its own sample set, compare only bins where both counts reach min_count, and return the largest "
            "absolute log-ratio.",
        )
