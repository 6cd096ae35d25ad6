"""A privacy audit from samples: the empirical epsilon of a mechanism on two neighbouring databases (notebook 04).

`empirical_epsilon` is a point estimate (graded); the lower confidence bound an audit should report is
`course.shown.audit_bounds.epsilon_lower_bound`.
"""

from __future__ import annotations

import numbers

import numpy as np

from course.lib.validators import as_vector, check_positive_int


def _as_bin_edges(bins) -> np.ndarray:
    """Return `bins` as a 1-D, strictly increasing float64 array of at least two bin edges.

    An integer bin count is refused: `numpy.histogram` would choose separate ranges for the two sample sets and
    the bins being compared would not be the same intervals.
    """
    if isinstance(bins, numbers.Number) or isinstance(bins, str):
        raise ValueError(
            "bins must be a sequence of bin edges shared by both sample sets (e.g. "
            "numpy.linspace(-5, 5, 41)), not a bin count: with a count each sample set would get "
            "its own range"
        )
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
        raise ValueError(
            f"no bin has at least min_count={min_count} samples in both sample sets; use more "
            "samples, wider bins or a smaller min_count"
        )
    log_ratios = np.log(counts_x[compared] / samples_x.size) - np.log(counts_y[compared] / samples_y.size)
    return float(np.abs(log_ratios).max())
