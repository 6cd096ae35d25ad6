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
from scipy import stats

from course.lib._checks import as_database, check_delta, check_epsilon, check_finite, check_positive_int

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


def _as_samples(samples, name: str) -> np.ndarray:
    """Return `samples` (array, list or tensor) as a non-empty, finite, 1-D float64 numpy array."""
    if torch.is_tensor(samples):
        samples = samples.detach().cpu().numpy()
    try:
        array = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of numbers") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold only finite numbers")
    return array


def _as_bin_edges(bins) -> np.ndarray:
    """Return `bins` as a 1-D, strictly increasing float64 array of at least two bin edges.

    An integer bin count is refused: `numpy.histogram` would choose separate ranges for the two sample sets and
    the bins being compared would not be the same intervals.
    """
    if isinstance(bins, numbers.Number) or isinstance(bins, str):
        raise ValueError("bins must be a sequence of bin edges shared by both sample sets (e.g. "
                         "numpy.linspace(-5, 5, 41)), not a bin count: with a count each sample set would get "
                         "its own range")
    edges = _as_samples(bins, "bins")
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
    200,000). To audit a claimed epsilon use `epsilon_lower_bound`, a lower confidence bound that a
    correct mechanism exceeds only with probability 1 - confidence.

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
    samples_x = _as_samples(samples_x, "samples_x")
    samples_y = _as_samples(samples_y, "samples_y")
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


def clopper_pearson(counts, totals, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) two-sided 1 - alpha confidence intervals for binomial proportions, elementwise.

    For `counts` successes out of `totals` trials the interval is
    `[Beta(alpha/2; k, n - k + 1), Beta(1 - alpha/2; k + 1, n - k)]` (quantiles of Beta distributions), with
    lower end 0 when k = 0 and upper end 1 when k = n (Clopper & Pearson, Biometrika 1934). Each end on its own
    is a one-sided 1 - alpha/2 bound. Arrays (or numbers) of the same shape in, two float64 arrays out.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = np.broadcast_to(np.asarray(totals, dtype=np.float64), counts.shape)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if ((counts < 0) | (counts > totals) | (totals < 1) | (counts != np.round(counts))).any():
        raise ValueError("counts must be whole numbers with 0 <= count <= total, and totals at least 1")
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(counts > 0, stats.beta.ppf(alpha / 2, counts, totals - counts + 1), 0.0)
        upper = np.where(counts < totals, stats.beta.ppf(1 - alpha / 2, counts + 1, totals - counts), 1.0)
    return lower, upper


def epsilon_lower_bound(counts_x, num_x: int, counts_y, num_y: int, confidence: float = 0.95,
                        delta: float = 0.0) -> float:
    """A lower confidence bound on a mechanism's epsilon from the bin counts of its outputs on two neighbours.

    `counts_x[j]` of the `num_x` outputs on database x fell in bin j, `counts_y[j]` of `num_y` on its
    neighbour y (outputs outside every bin count in `num_x`, `num_y` only). If the mechanism is
    (epsilon, delta)-DP, every bin's probabilities satisfy p_x <= e^epsilon p_y + delta and the same the other
    way round, so epsilon >= ln((p_x - delta) / p_y). Each of the 2m probabilities (m bins, two databases) gets
    a Clopper-Pearson interval at level 1 - (1 - confidence) / (2m) (Bonferroni), so all of them hold at once
    with probability at least `confidence`; on that event every `ln((lower p_x - delta) / upper p_y)` (and the
    mirror image) is below the true epsilon. The largest of them (0 if none is positive) is returned.

    Read it as: "with probability >= confidence over the samples, epsilon is at least this". A correct
    mechanism claiming epsilon exceeds the bound's claim only with probability <= 1 - confidence, whatever the
    number of bins; a mechanism whose bound exceeds its claimed epsilon is caught leaking. An audit can only
    prove a leak, never privacy. For a membership attack the two bins are "accused" and "not accused" and x,
    y are the members and the non-members.

    Returns:
        The bound as a Python float, >= 0.
    """
    counts_x = np.atleast_1d(np.asarray(counts_x, dtype=np.float64))
    counts_y = np.atleast_1d(np.asarray(counts_y, dtype=np.float64))
    if counts_x.ndim != 1 or counts_x.shape != counts_y.shape or counts_x.size == 0:
        raise ValueError(f"counts_x and counts_y must be 1-D with one count per bin and the same length, got "
                         f"shapes {counts_x.shape} and {counts_y.shape}")
    if counts_x.sum() > num_x or counts_y.sum() > num_y:
        raise ValueError("the bins hold more outputs than num_x or num_y: pass the number of all outputs")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")
    alpha = (1 - confidence) / (2 * counts_x.size)
    lower_x, upper_x = clopper_pearson(counts_x, num_x, alpha)
    lower_y, upper_y = clopper_pearson(counts_y, num_y, alpha)
    numerators = np.concatenate([lower_x - delta, lower_y - delta])
    denominators = np.concatenate([upper_y, upper_x])
    usable = numerators > 0
    if not usable.any():
        return 0.0
    return float(max(0.0, np.log(numerators[usable] / denominators[usable]).max()))
