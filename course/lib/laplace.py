"""Global differential privacy: the Laplace and Gaussian mechanisms, composition and an audit (notebook 04).

Definitions (Dwork & Roth 2014, "The Algorithmic Foundations of Differential Privacy", definition 2.4): a
mechanism M is (epsilon, delta)-DP when for all neighbouring databases x, y and every set of outputs S,
`P[M(x) in S] <= exp(epsilon) * P[M(y) in S] + delta`; delta = 0 is pure epsilon-DP.

Neighbour notion in this module: *replacement* (same size, one row changed, size public). Under it a sum of
0/1 rows has L1 sensitivity 1, a mean has sensitivity 1/n, and a histogram (one count per category, each row
in one category) has L1 sensitivity 2: the changed row leaves one bin and joins another. (DP-SGD through
Opacus, notebooks 06-07, is analysed under add/remove instead; group privacy turns an (epsilon, delta)
add/remove guarantee into (2 epsilon, (1 + e^epsilon) delta) under replacement.)

Laplace noise with scale b has density `exp(-|x| / b) / (2 b)`; the Laplace mechanism uses
`b = sensitivity / epsilon` (Dwork, McSherry, Nissim & Smith 2006, "Calibrating noise to sensitivity in private
data analysis", TCC).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np
import torch

from course.lib.validators import as_database, as_vector, check_delta, check_epsilon, check_finite, check_positive_int

NoiseSampler = Callable[[tuple[int, ...]], torch.Tensor]


def _laplace_sampler(scale: float, generator: torch.Generator | None) -> NoiseSampler:
    """A sampler of Laplace(0, scale) noise in float64.

    A Laplace variable is the difference of two independent Exponential(1) variables times the scale; unlike the
    inverse-CDF formula this never hits log(0), and `exponential_` accepts a generator.
    """
    def sample(shape: tuple[int, ...]) -> torch.Tensor:
        first = torch.empty(shape, dtype=torch.float64).exponential_(generator=generator)
        second = torch.empty(shape, dtype=torch.float64).exponential_(generator=generator)
        return scale * (first - second)

    return sample


def _gaussian_sampler(sigma: float, generator: torch.Generator | None) -> NoiseSampler:
    """A sampler of N(0, sigma^2) noise in float64."""
    def sample(shape: tuple[int, ...]) -> torch.Tensor:
        return sigma * torch.randn(shape, dtype=torch.float64, generator=generator)

    return sample


def _add_noise(value, sample: NoiseSampler):
    """Return `value` plus independent noise per element: a float for a number, a new tensor for a tensor.

    A tensor result is floating point (an integer or bool tensor is promoted to the default float dtype) so the
    noise is never truncated; the input is not modified.
    """
    if torch.is_tensor(value):
        if not bool(torch.isfinite(value).all()):
            raise ValueError("value must hold only finite numbers")
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        noise = sample(tuple(value.shape)).to(device=value.device, dtype=dtype)
        return value.to(dtype) + noise
    value = check_finite(value, "value")
    return value + float(sample(()).item())


def laplace_mechanism(value, sensitivity: float, epsilon: float, generator: torch.Generator | None = None):
    """Release `value` with Laplace(0, sensitivity / epsilon) noise: pure epsilon-DP.

    Args:
        value: a number, or a tensor of any shape (each element gets its own independent noise draw; the
            sensitivity is then the L1 sensitivity of the whole tensor).
        sensitivity: L1 sensitivity of the query that produced `value`, > 0, under the neighbour notion the
            caller states (this course uses replacement from notebook 04 on).
        epsilon: privacy parameter, > 0.
        generator: optional `torch.Generator`; the global generator is used when absent.

    Returns:
        A float for a number; a new floating-point tensor of the same shape for a tensor.
    """
    sensitivity = check_epsilon(sensitivity, "sensitivity")
    epsilon = check_epsilon(epsilon)
    return _add_noise(value, _laplace_sampler(sensitivity / epsilon, generator))


def private_sum(db, epsilon: float, generator: torch.Generator | None = None) -> float:
    """The number of True rows of `db` plus Laplace(0, 1 / epsilon) noise.

    Replacement neighbours (size public): changing one 0/1 row changes the sum by at most 1.

    Args:
        db: 1-D bool (or 0/1) tensor of shape `(num_rows,)`.
        epsilon: privacy parameter, > 0.
        generator: optional `torch.Generator`.

    Returns:
        The noisy count as a Python float (never rounded: rounding is allowed post-processing, not required).
    """
    db = as_database(db)
    epsilon = check_epsilon(epsilon)
    return laplace_mechanism(float(db.sum().item()), 1.0, epsilon, generator)


def private_mean(db, epsilon: float, generator: torch.Generator | None = None) -> float:
    """The fraction of True rows of `db` plus Laplace(0, 1 / (n * epsilon)) noise, n = number of rows.

    Replacement neighbours (size n public): changing one 0/1 row changes the mean by at most 1/n.

    Args:
        db: 1-D bool (or 0/1) tensor of shape `(n,)`.
        epsilon: privacy parameter, > 0.
        generator: optional `torch.Generator`.

    Returns:
        The noisy mean as a Python float.
    """
    db = as_database(db)
    epsilon = check_epsilon(epsilon)
    num_rows = db.shape[0]
    true_mean = float(db.sum().item()) / num_rows
    return laplace_mechanism(true_mean, 1.0 / num_rows, epsilon, generator)


def total_epsilon(epsilons: Iterable[float]) -> float:
    """Basic sequential composition: running epsilon_i-DP mechanisms on the same data is (sum epsilon_i)-DP.

    Dwork & Roth (2014), theorem 3.16. The neighbour notion is whatever the composed mechanisms share.

    Args:
        epsilons: an iterable (list, tuple, 1-D array or tensor) of epsilons, each > 0. An empty iterable
            means no release at all and costs 0.

    Returns:
        The total epsilon as a Python float.
    """
    if torch.is_tensor(epsilons) or isinstance(epsilons, np.ndarray):
        epsilons = epsilons.tolist()
    if isinstance(epsilons, (str, bytes)) or not isinstance(epsilons, Iterable):
        raise ValueError(f"epsilons must be an iterable of numbers, got {type(epsilons).__name__}")
    checked = [check_epsilon(epsilon, f"epsilons[{index}]") for index, epsilon in enumerate(epsilons)]
    return math.fsum(checked)


def gaussian_sigma(l2_sensitivity: float, epsilon: float, delta: float) -> float:
    """The classic Gaussian-mechanism noise level `l2_sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon`.

    Dwork & Roth (2014), theorem A.1: (epsilon, delta)-DP for 0 < epsilon < 1; the proof does not cover
    epsilon >= 1, so it is refused with a ValueError.
    """
    l2_sensitivity = check_epsilon(l2_sensitivity, "l2_sensitivity")
    epsilon = check_epsilon(epsilon)
    if epsilon >= 1:
        raise ValueError(f"epsilon must be < 1 for the classic Gaussian calibration, got {epsilon!r}")
    delta = check_delta(delta)
    return l2_sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def gaussian_mechanism(value, l2_sensitivity: float, epsilon: float, delta: float,
                       generator: torch.Generator | None = None):
    """Release `value` with N(0, sigma^2) noise per element, sigma from `gaussian_sigma`: (epsilon, delta)-DP.

    Args:
        value: a number, or a tensor of any shape (independent noise per element; the sensitivity is the L2
            sensitivity of the whole tensor).
        l2_sensitivity: L2 sensitivity of the query, > 0, under the caller's neighbour notion.
        epsilon: in (0, 1).
        delta: in (0, 1); it should be far below 1/n.
        generator: optional `torch.Generator`.

    Returns:
        A float for a number; a new floating-point tensor of the same shape for a tensor.
    """
    sigma = gaussian_sigma(l2_sensitivity, epsilon, delta)
    return _add_noise(value, _gaussian_sampler(sigma, generator))


def _as_bin_edges(bins) -> np.ndarray:
    """Return `bins` as a 1-D, strictly increasing float64 array of at least two bin edges.

    An integer bin count is refused: `numpy.histogram` would choose separate ranges for the two sample sets and
    the bins being compared would not be the same intervals.
    """
    if isinstance(bins, numbers.Number) or isinstance(bins, str):
        raise ValueError("bins must be a sequence of bin edges shared by both sample sets (e.g. "
                         "numpy.linspace(-5, 5, 41)), not a bin count: with a count each sample set would get "
                         "its own range")
    edges = as_vector(bins, "bins")
    if edges.size < 2 or not (np.diff(edges) > 0).all():
        raise ValueError("bins must hold at least two strictly increasing bin edges")
    return edges


def empirical_epsilon(samples_x, samples_y, bins, min_count: int = 20) -> float:
    """A privacy audit: the largest log-ratio of bin frequencies of a mechanism's outputs on two neighbours.

    Both sample sets are histogrammed with `numpy.histogram(samples, bins=bins)`. Over the bins where both
    counts are at least `min_count` (rarer bins are too noisy to compare), return
    `max |ln(cx / nx) - ln(cy / ny)|` with nx, ny the numbers of samples (not only those inside the bins).

    What it estimates: the largest log-ratio of the bins' true probabilities, which is at most the mechanism's
    epsilon on that pair of databases. It is a *point estimate*, not a bound: each ratio carries sampling
    error, and the maximum over many bins picks the bins whose error is largest, so it is biased **upward**
    (in notebook 04's audit, 68 bins of width 0.25 and min_count = releases / 1000, a correct Laplace mechanism
    with epsilon 1 measured 1.02-1.04 over 10 seeds at 2 million releases and 1.05-1.19 over 30 seeds at
    200,000). To audit a claimed epsilon use `course.shown.audit_bounds.epsilon_lower_bound`, a lower confidence
    bound that a correct mechanism exceeds only with probability 1 - confidence.

    Args:
        samples_x: outputs of the mechanism on database x; 1-D array, list or tensor of shape `(nx,)`.
        samples_y: outputs on a neighbouring database y; shape `(ny,)`.
        bins: bin edges shared by both histograms (1-D, strictly increasing, at least two); a bin count is
            refused (see `_as_bin_edges`).
        min_count: smallest count, in both histograms, of a bin that is compared; a positive integer.

    Returns:
        The estimate as a Python float.

    Raises:
        ValueError: on bad input, or when no bin has at least `min_count` samples in both sets (nothing can be
            estimated; draw more samples, use wider bins or lower `min_count`).
    """
    samples_x = as_vector(samples_x, "samples_x")
    samples_y = as_vector(samples_y, "samples_y")
    edges = _as_bin_edges(bins)
    min_count = check_positive_int(min_count, "min_count")
    counts_x, _ = np.histogram(samples_x, bins=edges)
    counts_y, _ = np.histogram(samples_y, bins=edges)
    compared = (counts_x >= min_count) & (counts_y >= min_count)
    if not compared.any():
        raise ValueError(f"no bin has at least min_count={min_count} samples in both sample sets; use more "
                         "samples, wider bins or a smaller min_count")
    log_ratios = (np.log(counts_x[compared] / samples_x.size) - np.log(counts_y[compared] / samples_y.size))
    return float(np.abs(log_ratios).max())
