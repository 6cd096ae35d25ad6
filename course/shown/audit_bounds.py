"""Auditing a claimed epsilon from a mechanism's outputs: exact binomial confidence intervals and a lower
confidence bound on epsilon (shown in notebooks 04 and 07; not graded).

`course.lib.audit.empirical_epsilon` is the graded point estimate; the bound here is what an audit should
report, since a correct mechanism exceeds it only with probability 1 - confidence.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


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


def epsilon_lower_bound(
    counts_x, num_x: int, counts_y, num_y: int, confidence: float = 0.95, delta: float = 0.0
) -> float:
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
        raise ValueError(
            f"counts_x and counts_y must be 1-D with one count per bin and the same length, got "
            f"shapes {counts_x.shape} and {counts_y.shape}"
        )
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
