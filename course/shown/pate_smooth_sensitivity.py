"""Releasing a data-dependent PATE epsilon privately: smooth sensitivity ([PATE18] Section 4.3, Appendices B-C).

The data-dependent RDP of Confident-GNMax (`course.shown.pate_accounting`) is a function of the private votes, so
publishing it leaks. [PATE18] releases it through the *Gaussian noise with smooth sensitivity* (GNSS)
mechanism: fix a Renyi order `order` in advance, compute the total data-dependent RDP at that order,
f(D) = sum over queries of (step-1 cost + [answered] step-2 cost), bound its local sensitivity at every
distance d from D (how much f can change when one private example changes, on any dataset within d changes
of D), take the smooth sensitivity SS_beta = max_d e^{-beta d} LS(d), and publish f(D) + SS_beta sigma_ss Z with
Z ~ N(0, 1). Releasing that number costs its own RDP at `order` ([PATE18] Theorem 23, `gnss_rdp`), which is
added to the reported epsilon.

Neighbour notion: *replacement*, in units of teachers: one private example changes one teacher's vote.
Distance d between vote histograms is the number of teachers whose vote differs.

What a sanitised epsilon means: a noisy estimate, not a bound, of the total privacy loss (the labels' data-dependent
RDP plus the release's own cost) against neighbours of *this* dataset: the noise is symmetric, so the released
value is below that total about half the time. Sanitising makes the release of the number private; it does not
make the number an (epsilon, delta)-DP guarantee for every dataset, which only the data-independent bound is.

Papers and code:
- [PATE18] Papernot, Song, Mironov, Raghunathan, Talwar, Erlingsson, "Scalable private learning with PATE",
  ICLR 2018: Algorithm 3 and Proposition 13 (local sensitivity of GNMax through the functions BL and BU),
  conditions C5-C6 (Appendix B.4), Theorem 23 (RDP of GNSS).
- [NRS07] Nissim, Raskhodnikova, Smith, "Smooth sensitivity and sampling in private data analysis", STOC 2007.
- The authors' reference code, tensorflow/privacy `research/pate_2018/smooth_sensitivity.py`; its unit tests'
  published values are reproduced in `tests/shown/test_pate_smooth_sensitivity.py`. This is an independent,
  vectorised implementation (log space throughout), not a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtri_exp

from course.lib.pate_analysis import rdp_to_epsilon
from course.lib.validators import as_count_matrix, check_delta, check_epsilon, check_finite, check_positive_int
from course.shown.pate_accounting import (
    check_answered,
    gaussian_rdp_given_log_q,
    log1mexp,
    threshold_log_q,
    threshold_rdp_data_dependent,
)

# --- GNMax: the data-dependent bound as a function of q at one order ---


def _gnmax_dd_bound(log_q, sigma: float, order: float) -> np.ndarray:
    """[PATE18] Theorem 6 with Proposition 10's mu2 = sigma sqrt(ln 1/q), mu1 = mu2 + 1, at one order, without
    checking its conditions (callers use it only for log_q below `gnmax_log_q0`, where they hold)."""
    log_q = np.asarray(log_q, dtype=np.float64)
    mu2 = sigma * np.sqrt(-log_q)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    log_one_minus_q = log1mexp(log_q)
    log_a = log_one_minus_q - log1mexp((log_q + eps2) * (1 - 1 / mu2))
    log_b = eps1 - log_q / (mu1 - 1)
    steps = order - 1
    return np.logaddexp(log_one_minus_q + steps * log_a, log_q + steps * log_b) / steps


def gnmax_log_q0(sigma: float, order: float) -> float:
    """log q0: below it the data-dependent RDP bound of GNMax (at `order`) is valid and beats order / sigma^2.

    Starts from the largest log q at which Theorem 6's conditions surely hold (mu1 > order, mu2 > 1) and, if
    the data-dependent bound is not yet smaller there, finds the crossing with the data-independent bound by
    root finding ([PATE18] Appendix B.4; the reference code's `compute_logq0_gnmax` does the same).
    """
    sigma, order = check_epsilon(sigma, "sigma"), _check_order(order)
    independent = order / sigma**2
    upper = min(-((1 + 1 / sigma) ** 2), -(((order - 0.99) / sigma) ** 2), -1 / sigma**2)
    if not _theorem6_conditions_hold(upper, sigma, order):
        raise ValueError(f"Theorem 6 does not apply at sigma={sigma}, order={order}")

    def gap(log_q):
        return float(_gnmax_dd_bound(log_q, sigma, order)) - independent

    if gap(upper) < 0:
        return upper
    lower = 2 * upper
    while gap(lower) > 0:
        lower *= 1.5
        if lower < -1e5:
            raise ValueError(f"no data-dependent advantage found at sigma={sigma}, order={order}")
    return float(brentq(gap, lower, upper, xtol=1e-12))


def _theorem6_conditions_hold(log_q: float, sigma: float, order: float) -> bool:
    mu2 = sigma * math.sqrt(-log_q)
    mu1 = mu2 + 1
    if mu1 < order or mu2 <= 1:
        return False
    eps2 = mu2 / sigma**2
    return log_q <= (mu2 - 1) * eps2 - mu2 * math.log(mu1 / (mu1 - 1) * mu2 / (mu2 - 1))


def _gnmax_beta(log_q, sigma: float, order: float, log_q0: float) -> np.ndarray:
    """The per-query RDP whose sum is released: Theorem 6 below log q0, order / sigma^2 above, 0 at q = 0."""
    log_q = np.asarray(log_q, dtype=np.float64)
    out = np.full(log_q.shape, order / sigma**2)
    below = log_q < log_q0
    finite = below & (log_q > -np.inf)
    out[finite] = _gnmax_dd_bound(log_q[finite], sigma, order)
    out[log_q == -np.inf] = 0.0
    return out


def _log_bl(log_q: np.ndarray, sigma: float, num_classes: int) -> np.ndarray:
    """log BL(q), the smallest q one changed vote can lead to: (m - 1) Phi(Phi^-1(q / (m - 1)) - sqrt(2) / sigma)."""
    log_share = np.log(num_classes - 1)
    return log_share + log_ndtr(ndtri_exp(log_q - log_share) - math.sqrt(2) / sigma)


def _log_bu(log_q: np.ndarray, sigma: float, num_classes: int) -> np.ndarray:
    """log BU(q): the largest q one changed vote can lead to, min(1, (m - 1) Phi(Phi^-1(q / (m - 1)) + sqrt2/sigma))."""
    log_share = np.log(num_classes - 1)
    return np.minimum(0.0, log_share + log_ndtr(ndtri_exp(log_q - log_share) + math.sqrt(2) / sigma))


def _gnmax_ls_of_log_q(
    log_q: np.ndarray, sigma: float, order: float, num_classes: int, log_q0: float, log_q1: float
) -> np.ndarray:
    """[PATE18] Algorithm 3: a bound on the local sensitivity of the per-query RDP, given only q.

    On the plateau [q1, q0] the bound is `_gnmax_plateau`; elsewhere max(beta(BU(q)) - beta(q), beta(q) - beta(BL(q))).
    """
    log_q = np.asarray(log_q, dtype=np.float64)
    n = log_q.size
    log_share = math.log(num_classes - 1)
    z = ndtri_exp(log_q - log_share)  # shared by BU and BL
    log_bu = np.minimum(0.0, log_share + log_ndtr(z + math.sqrt(2) / sigma))
    log_bl = log_share + log_ndtr(z - math.sqrt(2) / sigma)
    beta, up, down = np.split(_gnmax_beta(np.concatenate([log_q, log_bu, log_bl]), sigma, order, log_q0), [n, 2 * n])
    on_plateau = (log_q1 <= log_q) & (log_q <= log_q0)
    return np.where(
        on_plateau, _gnmax_plateau(sigma, order, num_classes, log_q0, log_q1), np.maximum(up - beta, beta - down)
    )


def _gnmax_plateau(sigma: float, order: float, num_classes: int, log_q0: float, log_q1: float) -> float:
    """The largest local sensitivity, reached for q in [q1, q0] (q1 = BL(q0)).

    There it is at most beta just above q0 (the data-independent order / sigma^2) minus beta(q1). Algorithm 3
    evaluates beta(BU(q1)) - beta(q1) with BU(q1) = q0, the same value when beta is continuous at q0, but too
    small when the data-dependent bound is still below the data-independent one at the top of its validity
    range, where beta then jumps (an exhaustive test on small histograms found this case).
    """
    log_q1_array = np.array([log_q1])
    beta_q1 = float(_gnmax_beta(log_q1_array, sigma, order, log_q0)[0])
    up = float(_gnmax_beta(_log_bu(log_q1_array, sigma, num_classes), sigma, order, log_q0)[0])
    down = float(_gnmax_beta(_log_bl(log_q1_array, sigma, num_classes), sigma, order, log_q0)[0])
    return max(up - beta_q1, beta_q1 - down, order / sigma**2 - beta_q1)


def _gnmax_log_q(sorted_counts: np.ndarray, sigma: float) -> np.ndarray:
    """Union bound log q of GNMax (Proposition 7) on rows sorted in decreasing order, capped at log(1 - 1/m)."""
    return _log_q_from_terms(log_ndtr((sorted_counts[:, 1:] - sorted_counts[:, :1]) / (math.sqrt(2) * sigma)))


def _log_q_from_terms(terms: np.ndarray) -> np.ndarray:
    """log of the sum over the last axis of exp(terms), whose first entry is the largest, capped at log(1 - 1/m)."""
    largest = terms[..., 0]
    log_q = largest + np.log(np.sum(np.exp(terms - largest[..., None]), axis=-1))
    return np.minimum(log_q, math.log(1 - 1 / (terms.shape[-1] + 1)))


def gnmax_local_sensitivity(counts, sigma: float, order: float) -> np.ndarray:
    """Local sensitivity of each query's GNMax RDP at every distance, shape `(num_queries, num_teachers)`.

    Entry `[i, d]` bounds |beta(D') - beta(D'')| over neighbouring D', D'' with D' at most d teacher changes
    from query i's votes, where beta is the per-query RDP at `order` ([PATE18] Algorithms 4-5 and
    Proposition 13): from the votes, walk towards the plateau [q1, q0] of the largest local sensitivity, one
    vote per step (moving a vote from the runner-up to the winner when q > q0, from the winner to the
    runner-up when q < q1); after reaching it every further distance gets the plateau value. A running
    maximum over d makes each entry cover all distances up to d. Requires C5-C6 (`smooth_sensitivity_conditions`).

    Vectorised: identical sorted histograms are analysed once, the union-bound terms come from a table indexed
    by the integer vote gap, and Algorithm 3 runs once per distinct q met on all the walks.
    """
    counts = as_count_matrix(counts, min_classes=2)
    sigma, order = check_epsilon(sigma, "sigma"), _check_order(order)
    num_teachers = _num_teachers(counts)
    if not np.all(counts == np.round(counts)):
        raise ValueError("counts must be whole numbers of votes")
    num_classes = counts.shape[1]
    log_q0 = gnmax_log_q0(sigma, order)
    log_q1 = float(_log_bl(np.array(log_q0), sigma, num_classes))
    plateau = _gnmax_plateau(sigma, order, num_classes, log_q0, log_q1)

    def ls(log_q):  # Algorithm 3 once per distinct value
        distinct, inverse = np.unique(log_q, return_inverse=True)
        return _gnmax_ls_of_log_q(distinct, sigma, order, num_classes, log_q0, log_q1)[inverse.ravel()]

    sorted_votes, inverse = np.unique(-np.sort(-counts, axis=1).astype(np.int64), axis=0, return_inverse=True)
    # table[g + 2 n] = log P(N(0, 2 sigma^2) >= g): the union-bound term of a class g votes behind
    table = log_ndtr(-np.arange(-2 * num_teachers, 2 * num_teachers + 1) / (math.sqrt(2) * sigma))
    offset = 2 * num_teachers
    gaps = sorted_votes[:, :1] - sorted_votes[:, 1:]
    log_q = _log_q_from_terms(table[gaps + offset])
    result = np.full((len(sorted_votes), num_teachers), plateau)

    # right: a vote from the winner to the runner-up per step; after d steps the gaps are g - d (g2 - 2 d).
    # The walk ends once log q >= log q1, at the latest when the runner-up's own term reaches it, so a row with
    # runner-up gap g2 needs at most (g2 - g_end) / 2 + 1 steps, g_end the largest gap whose term is >= log q1.
    right = np.flatnonzero(log_q < log_q1)
    right = right[np.argsort(gaps[right, 0])]
    step = np.concatenate([[2], np.ones(num_classes - 2, dtype=np.int64)])
    gap_end = int(np.flatnonzero(table >= log_q1)[-1]) - offset
    probabilities = np.exp(table) if table.min() > -700 else None  # sum probabilities directly when none underflow
    for chunk in np.array_split(right, max(1, len(right) // 256)):
        if chunk.size == 0:
            continue
        length = min(num_teachers, max(1, (int(gaps[chunk, 0].max()) - gap_end) // 2 + 2))
        walked = gaps[chunk][:, None, :] - np.arange(length)[None, :, None] * step  # (rows, d, m - 1)
        index = np.clip(walked, -offset, offset) + offset
        if probabilities is not None:
            path = np.minimum(np.log(probabilities[index].sum(axis=2)), math.log(1 - 1 / num_classes))
        else:
            path = _log_q_from_terms(table[index])
        # entries up to and including the first that reaches q1 are evaluated; the plateau follows
        reached = np.cumsum(path >= log_q1, axis=1)
        evaluated = (reached == 0) | ((reached == 1) & (path >= log_q1))
        block = result[chunk, :length]
        block[evaluated] = ls(path[evaluated])
        result[chunk, :length] = block

    # left: a vote from the last of the tied runners-up to the winner per step (rows stay sorted)
    rows = np.flatnonzero(log_q > log_q0)
    votes, row_log_q = sorted_votes[rows].copy(), log_q[rows]
    for distance in range(num_teachers):
        if rows.size == 0:
            break
        result[rows, distance] = ls(row_log_q)
        walking = (row_log_q > log_q0) & (votes[:, 1] > 0)
        rows, votes = rows[walking], votes[walking]
        last_tied = np.sum(votes[:, 1:] == votes[:, 1:2], axis=1)
        votes[:, 0] += 1
        votes[np.arange(len(votes)), last_tied] -= 1
        row_log_q = _log_q_from_terms(table[votes[:, :1] - votes[:, 1:] + offset])
    return np.maximum.accumulate(result, axis=1)[inverse.ravel()]


# --- the threshold step ---


def threshold_local_sensitivity(counts, threshold: float, sigma1: float, order: float) -> np.ndarray:
    """Local sensitivity of each query's step-1 RDP at every distance, shape `(num_queries, num_teachers)`.

    Step 1's RDP depends on the votes only through v = round(max_j n_j). One changed vote moves v by at most
    one, so the local sensitivity at v is max(|beta(v+1) - beta(v)|, |beta(v-1) - beta(v)|), and at distance d
    it is the largest such value over v' in [v - d, v + d] (within [0, num_teachers]).
    """
    counts = as_count_matrix(counts, min_classes=2)
    threshold, sigma1 = check_finite(threshold, "threshold"), check_epsilon(sigma1, "sigma1")
    order = _check_order(order)
    num_teachers = _num_teachers(counts)
    values = np.arange(num_teachers + 1, dtype=np.float64)
    beta = gaussian_rdp_given_log_q(
        threshold_log_q(values, threshold, sigma1), math.sqrt(2) * sigma1, np.array([order])
    )[:, 0]
    steps = np.abs(np.diff(beta))
    local = np.maximum(np.concatenate([[0.0], steps]), np.concatenate([steps, [0.0]]))  # LS at each v
    window = np.empty((num_teachers + 1, num_teachers))  # window[v, d] = max of local over [v - d, v + d]
    window[:, 0] = local
    padded = np.concatenate([np.zeros(num_teachers), local, np.zeros(num_teachers)])
    for distance in range(1, num_teachers):
        below = padded[num_teachers - distance : 2 * num_teachers + 1 - distance]
        above = padded[num_teachers + distance : 2 * num_teachers + 1 + distance]
        window[:, distance] = np.maximum(window[:, distance - 1], np.maximum(below, above))
    return window[np.round(counts.max(axis=1)).astype(np.int64)]


# --- smooth sensitivity and the GNSS release ---


def smooth_sensitivity(local_sensitivity, beta: float) -> float:
    """SS_beta = max over d of e^{-beta d} LS(d) ([NRS07]); `local_sensitivity` has shape `(num_distances,)`."""
    local = np.asarray(local_sensitivity, dtype=np.float64)
    if local.ndim != 1 or local.size == 0 or not np.all(np.isfinite(local)) or np.any(local < 0):
        raise ValueError("local_sensitivity must be a non-empty 1-D array of finite values >= 0")
    beta = check_epsilon(beta, "beta")
    return float(np.max(local * np.exp(-beta * np.arange(local.size))))


def gnss_rdp(beta: float, sigma_ss: float, order: float) -> float:
    """RDP at `order` of releasing f(D) + SS_beta(D) sigma_ss N(0, 1) ([PATE18] Theorem 23).

    order e^{2 beta} / sigma_ss^2 + (beta order - ln(1 - 2 order beta) / 2) / (order - 1), for 1 < order < 1 / (2 beta).
    """
    beta, sigma_ss, order = check_epsilon(beta, "beta"), check_epsilon(sigma_ss, "sigma_ss"), _check_order(order)
    if not order < 1 / (2 * beta):
        raise ValueError(f"order must be below 1 / (2 beta) = {1 / (2 * beta):g}, got {order}")
    return order * math.exp(2 * beta) / sigma_ss**2 + (beta * order - 0.5 * math.log1p(-2 * order * beta)) / (order - 1)


@dataclass(frozen=True)
class SanitisedEpsilon:
    """The outcome of `sanitised_confident_gnmax_epsilon`; every RDP value is at `order`."""

    order: float
    rdp_data_dependent: float  # f(D): the private data-dependent RDP of the labels (not released)
    smooth_sensitivity: float  # SS_beta(D) (not released)
    noise_std: float  # SS_beta(D) * sigma_ss, the standard deviation of the added noise
    rdp_release: float  # the RDP cost of releasing the noisy value (Theorem 23)
    released_rdp: float  # the published value: f(D) + noise + rdp_release, a noisy RDP estimate at `order`
    epsilon_data_dependent: float  # f(D) converted to epsilon: the unsanitised epsilon at this order
    epsilon: float  # released_rdp converted to epsilon


def sanitised_confident_gnmax_epsilon(
    counts,
    answered,
    threshold: float,
    sigma1: float,
    sigma2: float,
    delta: float,
    order: float,
    beta: float,
    sigma_ss: float,
    rng: np.random.Generator | None = None,
    conversion=rdp_to_epsilon,
) -> SanitisedEpsilon:
    """The data-dependent epsilon of Confident-GNMax, released through GNSS with its own cost counted.

    At the fixed `order` (and `beta`, `sigma_ss`), all chosen without looking at the private votes:
    f(D) = sum over queries of the step-1 RDP and, for `answered` queries, the step-2 RDP (the step-2 bound is
    Theorem 6 below log q0, the data-independent one above; `confident_gnmax_rdp_data_dependent` agrees with it);
    its local sensitivity at distance d is at most the sum of the queries' (`threshold_local_sensitivity`,
    `gnmax_local_sensitivity`); the released epsilon is
    f(D) + SS_beta sigma_ss Z + gnss_rdp(beta, sigma_ss, order), Z ~ N(0, 1) drawn from `rng`, an RDP value at
    `order` that `conversion` turns into epsilon (Mironov's by default: + ln(1/delta) / (order - 1); or
    `rdp_to_epsilon_balle`). Raises ValueError when conditions C5-C6 fail for (sigma2, order), as the analysis
    needs them.
    """
    counts = as_count_matrix(counts, min_classes=2)
    answered = check_answered(answered, counts.shape[0])
    delta, order = check_delta(delta), _check_order(order)
    sigma2 = check_epsilon(sigma2, "sigma2")
    release_cost = gnss_rdp(beta, sigma_ss, order)
    c5, c6 = smooth_sensitivity_conditions(sigma2, counts.shape[1], order)
    if not (c5 and c6):
        raise ValueError(
            f"conditions C5-C6 of [PATE18] fail at sigma2={sigma2}, order={order}: the smooth "
            "sensitivity bound does not apply (use a larger sigma2 or a smaller order)"
        )
    rdp, local = confident_gnmax_rdp_and_local_sensitivity(counts, answered, threshold, sigma1, sigma2, order)
    ss = smooth_sensitivity(local, beta)
    generator = np.random if rng is None else rng
    noise = ss * sigma_ss * float(generator.normal())

    def epsilon(value):
        return conversion(np.array([value]), np.array([order]), delta)

    return SanitisedEpsilon(
        order=order,
        rdp_data_dependent=rdp,
        smooth_sensitivity=ss,
        noise_std=ss * sigma_ss,
        rdp_release=release_cost,
        released_rdp=rdp + noise + release_cost,
        epsilon_data_dependent=epsilon(rdp),
        epsilon=epsilon(rdp + noise + release_cost),
    )


def confident_gnmax_rdp_and_local_sensitivity(
    counts, answered, threshold: float, sigma1: float, sigma2: float, order: float
) -> tuple[float, np.ndarray]:
    """`(f, LS)`: the total data-dependent RDP f(D) of Confident-GNMax at `order` and the local sensitivity of f
    at distances 0..num_teachers - 1 (shape `(num_teachers,)`), bounded by the sum over queries of step 1's and,
    for answered queries, step 2's. Both are private; `sanitised_confident_gnmax_epsilon` releases f."""
    counts = as_count_matrix(counts, min_classes=2)
    answered = check_answered(answered, counts.shape[0])
    order, sigma2 = _check_order(order), check_epsilon(sigma2, "sigma2")
    step1 = threshold_rdp_data_dependent(counts, threshold, sigma1, np.array([order]))[:, 0]
    local = threshold_local_sensitivity(counts, threshold, sigma1, order).sum(axis=0)
    rdp = float(step1.sum())
    if answered.any():
        log_q0 = gnmax_log_q0(sigma2, order)
        votes = -np.sort(-counts[answered], axis=1)
        rdp += float(_gnmax_beta(_gnmax_log_q(votes, sigma2), sigma2, order, log_q0).sum())
        local = local + gnmax_local_sensitivity(counts[answered], sigma2, order).sum(axis=0)
    return rdp, local


def smooth_sensitivity_conditions(
    sigma: float, num_classes: int, order: float, grid_size: int = 4_000
) -> tuple[bool, bool]:
    """Numerical check of [PATE18]'s conditions C5 and C6 for GNMax at (sigma, num_classes, order).

    C5: beta(q) is non-decreasing on (0, q0); C6: beta(BU(q)) - beta(q) is non-decreasing on (0, BL(q0)).
    Checked on a grid of `grid_size` values of log q from -700 (q ~ 1e-304) to the end of each interval,
    with a relative tolerance of 1e-9 for rounding. The reference code checks the same symbolically.
    """
    sigma, order = check_epsilon(sigma, "sigma"), _check_order(order)
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    log_q0 = gnmax_log_q0(sigma, order)

    def non_decreasing(values):
        return bool(np.all(np.diff(values) >= -1e-9 * np.maximum(1e-300, np.abs(values[1:]))))

    grid = np.linspace(-700.0, log_q0, grid_size, endpoint=False)
    c5 = non_decreasing(_gnmax_dd_bound(grid, sigma, order))
    log_bl_q0 = float(_log_bl(np.array(log_q0), sigma, num_classes))
    grid = np.linspace(-700.0, log_bl_q0, grid_size)
    beta = _gnmax_beta(grid, sigma, order, log_q0)
    c6 = non_decreasing(_gnmax_beta(_log_bu(grid, sigma, num_classes), sigma, order, log_q0) - beta)
    return c5, c6


def _num_teachers(counts: np.ndarray) -> int:
    totals = counts.sum(axis=1)
    if totals.size == 0 or not np.all(totals == totals[0]) or totals[0] != round(totals[0]) or totals[0] < 1:
        raise ValueError("every row of counts must hold the votes of the same number of teachers (>= 1)")
    return int(totals[0])


def _check_order(order) -> float:
    order = check_finite(order, "order")
    if order <= 1:
        raise ValueError(f"order must be > 1, got {order}")
    return order
