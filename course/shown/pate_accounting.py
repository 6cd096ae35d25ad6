"""The PATE privacy analysis notebook 05 shows: data-dependent bounds and Confident GNMax.

Shown to students in read-only cells (nothing here is graded); the data-independent bounds that are graded,
and the pieces they share with these (`rdp_to_epsilon`, `check_orders`, ...), live in `course.lib.pate_analysis`.

Neighbour notion: *replacement*, as in `course.lib.pate_analysis`. The data-dependent bounds are much
smaller when the teachers agree, but they are computed from the private votes, so the epsilon value itself
leaks information: it is not private unless it is released through a mechanism such as smooth sensitivity
(Papernot et al. 2018, Section 4; module `pate_smooth_sensitivity`).

Papers:
- [PATE17] Papernot, Abadi, Erlingsson, Goodfellow, Talwar, "Semi-supervised knowledge transfer for deep
  learning from private training data", ICLR 2017 (moments accountant: Theorems 1-3 and the q bound).
- [PATE18] Papernot, Song, Mironov, Raghunathan, Talwar, Erlingsson, "Scalable private learning with PATE",
  ICLR 2018 (Algorithm 1, Theorem 6, Proposition 7, and Proposition 10's choice of the higher orders).
- [Mironov17] Mironov, "Renyi differential privacy", CSF 2017 (composition and conversion to (eps, delta)).
- [Balle20] Balle, Barthe, Gaboardi, Hsu, Sato, "Hypothesis testing interpretations and Renyi differential
  privacy", AISTATS 2020 (Theorem 21: a tighter conversion to (eps, delta), the one Opacus uses).
- [RRUV16] Rogers, Roth, Ullman, Vadhan, "Privacy odometers and filters: pay-as-you-go composition", NeurIPS 2016
  (a filter: a budget fixed in advance, and the mechanism stops before it is exceeded).
- [FZ21] Feldman, Zrnic, "Individual privacy accounting via a Renyi filter", NeurIPS 2021 (the Renyi filter: adaptively
  chosen RDP costs whose sum never exceeds a budget fixed in advance compose to that budget).

The RDP epsilon functions take `conversion`, the RDP-to-(epsilon, delta) conversion: `rdp_to_epsilon` (Mironov's,
the default, which notebook 05 teaches and [PATE18] uses) or `rdp_to_epsilon_balle` ([Balle20]).

All bounds are evaluated in log space, so any number of moments/orders and any vote margin give a finite
answer.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import log_ndtr, logsumexp

from course.lib.pate_analysis import (
    check_num_queries,
    check_orders,
    gnmax_rdp_data_independent,
    laplace_log_moment_data_independent,
    moment_orders,
    rdp_to_epsilon,
)
from course.lib.validators import as_count_matrix, check_delta, check_epsilon, check_finite, numpy_generator


def confident_gnmax(
    counts,
    threshold: float,
    sigma1: float,
    sigma2: float,
    rng: np.random.Generator | None = None,
    max_answers: int | None = None,
) -> np.ndarray:
    """The Confident-GNMax aggregator of PATE (2018), Algorithm 1: answer only where the teachers agree.

    For each row of `counts` `(num_queries, num_classes)`, in order: if `max_j n_j + N(0, sigma1^2) >= threshold`
    (step 1, the noisy check of consensus), release the GNMax answer `argmax_j (n_j + N(0, sigma2^2))`
    (step 2, fresh noise); otherwise release nothing. With `max_answers` = M, fixed before any vote is seen, the
    aggregator stops once it has released M answers: the later queries are not answered (a filter, so that
    `confident_gnmax_epsilon(num_queries, M, ...)` bounds the cost whatever the votes). Returns int64 labels of
    shape `(num_queries,)`, with -1 where the query was not answered. Replacement neighbours: step 1 is a Gaussian
    mechanism on the maximum count (sensitivity 1), step 2 is GNMax; see `confident_gnmax_epsilon`.
    `rng` is a `numpy.random.Generator` (the global one when None); the noise drawn does not depend on
    `max_answers`, so a cap that is never reached changes nothing.
    """
    counts = as_count_matrix(counts)
    threshold = check_finite(threshold, "threshold")
    sigma1, sigma2 = check_epsilon(sigma1, "sigma1"), check_epsilon(sigma2, "sigma2")
    generator = numpy_generator(rng)
    answered = counts.max(axis=1) + generator.normal(0.0, sigma1, size=counts.shape[0]) >= threshold
    labels = np.argmax(counts + generator.normal(0.0, sigma2, size=counts.shape), axis=1)
    if max_answers is not None:
        answered &= np.cumsum(answered) <= check_num_queries(max_answers)
    return np.where(answered, labels, -1)


def pate_log_moments_data_dependent(counts, gamma: float, moments: int = 8) -> np.ndarray:
    """Per-query data-dependent log moments of Laplace noisy max ([PATE17]); shape `(num_queries, moments)`.

    `counts` has shape `(num_queries, num_classes)` (e.g. from `vote_counts`); column l - 1 bounds the log
    moment alpha(l) of that query's answer. For each query, q bounds the probability that the noisy max
    differs from the plurality class j*:
    q = sum over j != j* of (2 + gamma (n_j* - n_j)) / (4 exp(gamma (n_j* - n_j))).
    When q < (e^{2 gamma} - 1) / (e^{4 gamma} - 1), [PATE17] Theorem 2 bounds alpha(l) by
    log((1 - q) ((1 - q) / (1 - e^{2 gamma} q))^l + q e^{2 gamma l}); each entry is the smaller of this and
    the data-independent min(2 gamma^2 l (l+1), 2 gamma l). Queries the teachers agree on cost almost nothing.

    Caveat: these values depend on the private votes; see `pate_epsilon_data_dependent`.
    """
    counts, gamma = as_count_matrix(counts, min_classes=2), check_epsilon(gamma, "gamma")
    orders = moment_orders(moments)
    applies, alpha_dependent = laplace_log_moments_where_bounded(counts, gamma, orders)
    alpha = np.tile(laplace_log_moment_data_independent(gamma, orders), (counts.shape[0], 1))
    alpha[applies] = alpha_dependent
    return alpha


def pate_epsilon_data_dependent(counts, gamma: float, delta: float, moments: int = 8) -> float:
    """Data-dependent (epsilon, delta) of Laplace noisy max on the vote histograms `counts` ([PATE17]).

    `counts` has shape `(num_queries, num_classes)`. The per-query log moments of
    `pate_log_moments_data_dependent` add up over queries ([PATE17] Theorem 1) and epsilon is the tail bound
    min over l = 1..moments of (sum of alpha(l) + ln(1/delta)) / l, as in `pate_epsilon_data_independent`,
    which this never exceeds (and equals when no query has a clear plurality, e.g. uniform votes). Unlike the
    data-independent bound it is not monotone in the noise: more noise makes q larger and can switch the
    data-dependent bound off.

    Caveat: the result depends on the private votes, so publishing it is not differentially private
    unless it is released through smooth sensitivity ([PATE18] Section 4). Replacement neighbours.
    """
    counts, gamma = as_count_matrix(counts, min_classes=2), check_epsilon(gamma, "gamma")
    orders = moment_orders(moments)
    delta = check_delta(delta)
    _, alpha_dependent = laplace_log_moments_where_bounded(counts, gamma, orders)
    alpha_independent = laplace_log_moment_data_independent(gamma, orders)
    # The queries without a data-dependent bound all cost alpha_independent: multiply, do not sum, so that
    # uniform votes give exactly the data-independent epsilon.
    num_fallback = counts.shape[0] - alpha_dependent.shape[0]
    total_alpha = num_fallback * alpha_independent + alpha_dependent.sum(axis=0)
    return float(np.min((total_alpha + math.log(1 / delta)) / orders))


def gnmax_rdp_data_dependent(counts, sigma: float, orders=None) -> np.ndarray:
    """Per-query data-dependent RDP of GNMax with noise N(0, sigma^2); shape `(num_queries, len(orders))`.

    `counts` has shape `(num_queries, num_classes)`. For each query, [PATE18] Proposition 7 bounds the
    probability that GNMax misses the plurality class i*: q <= sum over i != i* of
    0.5 erfc((n_i* - n_i) / (2 sigma)) (evaluated as log Phi(-gap / (sqrt(2) sigma)) to stay finite).
    [PATE18] Theorem 6, with the higher orders mu2 = sigma sqrt(ln(1/q)) and mu1 = mu2 + 1 of Proposition 10
    (eps_i = mu_i / sigma^2), bounds the RDP at order lambda by
    (1 / (lambda - 1)) log((1 - q) A^(lambda - 1) + q B^(lambda - 1)), with
    A = (1 - q) / (1 - (q e^{eps2})^((mu2 - 1) / mu2)) and B = e^{eps1} / q^(1 / (mu1 - 1)),
    provided lambda <= mu1, mu2 > 1, q e^{eps2} < 1 and
    q <= e^{(mu2 - 1) eps2} / (mu1 / (mu1 - 1) * mu2 / (mu2 - 1))^mu2. Elsewhere, and whenever it is
    smaller, the entry is the data-independent lambda / sigma^2. `orders`: Renyi orders > 1 (default
    `DEFAULT_RDP_ORDERS`).

    Caveat: these values depend on the private votes; see `gnmax_epsilon_data_dependent`.
    """
    counts, sigma, orders = as_count_matrix(counts, min_classes=2), check_epsilon(sigma, "sigma"), check_orders(orders)
    applies, rdp_dependent = gnmax_rdp_where_bounded(counts, sigma, orders)
    rdp = np.tile(gnmax_rdp_data_independent(sigma, orders), (counts.shape[0], 1))
    rdp[applies] = rdp_dependent
    return rdp


def gnmax_epsilon_data_dependent(counts, sigma: float, delta: float, orders=None, conversion=rdp_to_epsilon) -> float:
    """Data-dependent (epsilon, delta) of GNMax with noise N(0, sigma^2) on the vote histograms `counts`.

    `counts` has shape `(num_queries, num_classes)`. The per-query RDP of `gnmax_rdp_data_dependent` adds up
    over queries and converts to (epsilon, delta) by `conversion` (Mironov's by default, as in `gnmax_epsilon`,
    which this then never exceeds, and equals when no query has a clear plurality). Like the Laplace version it
    is not monotone in sigma.

    Caveat: the result depends on the private votes, so publishing it is not differentially private
    unless it is released through smooth sensitivity ([PATE18] Section 4). Replacement neighbours.
    """
    counts, sigma, orders = as_count_matrix(counts, min_classes=2), check_epsilon(sigma, "sigma"), check_orders(orders)
    delta = check_delta(delta)
    _, rdp_dependent = gnmax_rdp_where_bounded(counts, sigma, orders)
    num_fallback = counts.shape[0] - rdp_dependent.shape[0]  # multiplied, as in pate_epsilon_data_dependent
    total_rdp = num_fallback * gnmax_rdp_data_independent(sigma, orders) + rdp_dependent.sum(axis=0)
    return conversion(total_rdp, orders, delta)


def confident_gnmax_epsilon(
    num_queries: int,
    max_answers: int,
    sigma1: float,
    sigma2: float,
    delta: float,
    orders=None,
    conversion=rdp_to_epsilon,
) -> float:
    """Data-independent (epsilon, delta) of Confident-GNMax ([PATE18] Algorithm 1) asked `num_queries` queries
    and stopped after `max_answers` answers, a cap fixed before any vote is seen (`confident_gnmax(...,
    max_answers=...)`). It holds for any votes and may be published.

    Step 1 releases whether `max_j n_j + N(0, sigma1^2)` clears the threshold: a Gaussian mechanism on the
    maximum count, whose sensitivity is 1 under replacement, so it is (order, order / (2 sigma1^2))-RDP; every
    query pays it. Step 2, GNMax with N(0, sigma2^2), costs order / sigma2^2 and runs only when step 1 said yes.
    How many queries pass step 1 is a random function of the private votes, so the realised count may not be
    billed ([Mironov17] Proposition 1 needs each step's bound to hold whatever the earlier outputs were; billing
    what was spent is an odometer, [RRUV16]). With the cap, the costs chosen adaptively add up to at most
    num_queries * order / (2 sigma1^2) + max_answers * order / sigma2^2 at every order, on every run: a Renyi
    filter ([FZ21], [RRUV16]), whose composition is RDP with that bound. `max_answers = num_queries`
    is the uncapped aggregator, every query charged both steps. RDP converts by `conversion` (Mironov's by
    default, as in `gnmax_epsilon`; or `rdp_to_epsilon_balle`). Replacement neighbours; the threshold does not
    enter the bound.
    """
    num_queries, max_answers = check_num_queries(num_queries), check_num_queries(max_answers)
    if max_answers > num_queries:
        raise ValueError(f"max_answers ({max_answers}) cannot exceed num_queries ({num_queries})")
    sigma1, sigma2 = check_epsilon(sigma1, "sigma1"), check_epsilon(sigma2, "sigma2")
    delta, orders = check_delta(delta), check_orders(orders)
    rdp = num_queries * gnmax_rdp_data_independent(
        math.sqrt(2) * sigma1, orders
    ) + max_answers * gnmax_rdp_data_independent(sigma2, orders)
    return conversion(rdp, orders, delta)


def threshold_rdp_data_dependent(counts, threshold: float, sigma1: float, orders=None) -> np.ndarray:
    """Per-query data-dependent RDP of Confident-GNMax's step 1; shape `(num_queries, len(orders))`.

    Step 1 has two outcomes (answer, or not). With p = P(round(max_j n_j) + N(0, sigma1^2) >= threshold), the
    less likely outcome has probability q = min(p, 1 - p), and the data-dependent bound of [PATE18] Theorem 6
    applies to this Gaussian mechanism of sensitivity 1 with noise sqrt(2) sigma1 (the GNMax analysis at
    sqrt(2) sigma1, as the reference code of [PATE18] does). Capped by the data-independent order / (2 sigma1^2).
    The maximum count is rounded to an integer, as in that code (a no-op for vote counts).
    """
    counts, orders = as_count_matrix(counts, min_classes=2), check_orders(orders)
    threshold, sigma1 = check_finite(threshold, "threshold"), check_epsilon(sigma1, "sigma1")
    log_q = threshold_log_q(np.round(counts.max(axis=1)), threshold, sigma1)
    return gaussian_rdp_given_log_q(log_q, math.sqrt(2) * sigma1, orders)


def confident_gnmax_rdp_data_dependent(
    counts, answered, threshold: float, sigma1: float, sigma2: float, orders=None
) -> np.ndarray:
    """Per-query data-dependent RDP of Confident-GNMax; shape `(num_queries, len(orders))`.

    Row i is step 1's cost (`threshold_rdp_data_dependent`) plus, if `answered[i]`, step 2's cost
    (`gnmax_rdp_data_dependent` at sigma2). `answered` is a bool array `(num_queries,)`: which queries step 1
    let through (`confident_gnmax(...) >= 0`). Caveat: computed from the private votes; see
    `confident_gnmax_epsilon_data_dependent`.
    """
    counts, orders = as_count_matrix(counts, min_classes=2), check_orders(orders)
    answered = check_answered(answered, counts.shape[0])
    rdp = threshold_rdp_data_dependent(counts, threshold, sigma1, orders)
    if answered.any():
        rdp[answered] += gnmax_rdp_data_dependent(counts[answered], sigma2, orders)
    return rdp


def confident_gnmax_epsilon_data_dependent(
    counts,
    answered,
    threshold: float,
    sigma1: float,
    sigma2: float,
    delta: float,
    orders=None,
    conversion=rdp_to_epsilon,
) -> float:
    """Data-dependent (epsilon, delta) of Confident-GNMax on the vote histograms `counts` ([PATE18] Section 4).

    The per-query costs of `confident_gnmax_rdp_data_dependent` add up over queries and convert by
    `conversion`. Never above `confident_gnmax_epsilon(len(counts), answered.sum(), ...)` with the same
    conversion. Queries with a clear consensus cost almost nothing in step 2, and queries far below or far above
    the threshold cost little in step 1.

    Caveat: the value depends on the private votes, so publishing it is not differentially private; release it
    through smooth sensitivity (module `pate_smooth_sensitivity`). And even sanitised it bounds the loss only
    against neighbours of *this* dataset: it is not an (epsilon, delta)-DP guarantee for every dataset.
    """
    delta = check_delta(delta)
    orders = check_orders(orders)
    total = confident_gnmax_rdp_data_dependent(counts, answered, threshold, sigma1, sigma2, orders).sum(axis=0)
    return conversion(total, orders, delta)


def laplace_log_moments_where_bounded(
    counts: np.ndarray, gamma: float, orders: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`(applies, alpha)`: which queries Theorem 2 applies to, shape `(num_queries,)`, and their log moments,
    already capped by the data-independent bound, shape `(applies.sum(), len(orders))`."""
    log_q = log_sum_over_runners_up(log_laplace_beat_probability(vote_gaps(counts), gamma), counts)
    # Theorem 2's condition q < (e^{2g} - 1) / (e^{4g} - 1), simplified to q < 1 / (1 + e^{2g}).
    applies = log_q < -np.logaddexp(0.0, 2 * gamma)
    alpha = np.minimum(
        theorem2_log_moment_bound(log_q[applies], gamma, orders), laplace_log_moment_data_independent(gamma, orders)
    )
    return applies, alpha


def log_laplace_beat_probability(gaps: np.ndarray, gamma: float) -> np.ndarray:
    """log of (2 + gamma gap) / (4 exp(gamma gap)), the chance that a class `gap` votes behind wins.

    It is exactly P(L1 - L2 >= gap) for independent L1, L2 ~ Laplace(0, 1/gamma).
    """
    return np.log(2 + gamma * gaps) - math.log(4) - gamma * gaps


def theorem2_log_moment_bound(log_q: np.ndarray, gamma: float, orders: np.ndarray) -> np.ndarray:
    """[PATE17] Theorem 2 in log space; shape `(len(log_q), len(orders))`. Needs q < 1 / (1 + e^{2 gamma})."""
    log_one_minus_q = log1mexp(log_q)[:, None]
    log_one_minus_scaled_q = log1mexp(2 * gamma + log_q)[:, None]  # log(1 - e^{2 gamma} q)
    stay = log_one_minus_q + orders * (log_one_minus_q - log_one_minus_scaled_q)
    move = log_q[:, None] + 2 * gamma * orders
    return np.logaddexp(stay, move)


def gnmax_rdp_where_bounded(counts: np.ndarray, sigma: float, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(applies, rdp)`: which queries Theorem 6 applies to, shape `(num_queries,)`, and their RDP, already
    capped by the data-independent bound, shape `(applies.sum(), len(orders))`."""
    log_q = log_sum_over_runners_up(log_ndtr(-vote_gaps(counts) / (math.sqrt(2) * sigma)), counts)
    applies, mu2 = theorem6_higher_order(log_q, sigma)
    rdp = np.minimum(
        theorem6_rdp_bound(log_q[applies], mu2[applies], sigma, orders), gnmax_rdp_data_independent(sigma, orders)
    )
    return applies, rdp


def gaussian_rdp_given_log_q(log_q: np.ndarray, sigma: float, orders: np.ndarray) -> np.ndarray:
    """RDP `(len(log_q), len(orders))` of a mechanism with data-independent RDP order / sigma^2 whose most
    likely outcome is missed with probability at most exp(log_q): [PATE18] Theorem 6 where it applies, capped by
    order / sigma^2, and exactly 0 where q = 0 (the output is fixed)."""
    log_q = np.asarray(log_q, dtype=np.float64)
    applies, mu2 = theorem6_higher_order(np.where(np.isneginf(log_q), 0.0, log_q), sigma)
    rdp = np.tile(gnmax_rdp_data_independent(sigma, orders), (log_q.shape[0], 1))
    rdp[applies] = np.minimum(theorem6_rdp_bound(log_q[applies], mu2[applies], sigma, orders), rdp[applies])
    rdp[np.isneginf(log_q)] = 0.0
    return rdp


def threshold_log_q(max_counts: np.ndarray, threshold: float, sigma1: float) -> np.ndarray:
    """log min(p, 1 - p) with p = P(max_counts + N(0, sigma1^2) >= threshold); shape `max_counts.shape`."""
    log_p = log_ndtr((max_counts - threshold) / sigma1)
    log_not_p = log_ndtr((threshold - max_counts) / sigma1)
    return np.minimum(log_p, log_not_p)


def theorem6_higher_order(log_q: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Which queries [PATE18] Theorem 6 applies to, and their mu2 = sigma sqrt(ln(1/q)) (Proposition 10).

    Returns `(applies, mu2)`, both of shape `log_q.shape`. The conditions on q (with mu1 = mu2 + 1 and
    eps_i = mu_i / sigma^2): mu2 > 1, q e^{eps2} < 1 and
    ln q <= (mu2 - 1) eps2 - mu2 ln(mu1 / (mu1 - 1) * mu2 / (mu2 - 1)).
    """
    mu2 = sigma * np.sqrt(-np.minimum(log_q, 0.0))  # a union bound q >= 1 gives mu2 = 0: no bound
    applies = mu2 > 1
    mu2_c, log_q_c = mu2[applies], log_q[applies]
    eps2 = mu2_c / sigma**2
    log_ratio = np.log1p(1 / mu2_c) + np.log1p(1 / (mu2_c - 1))  # ln(mu1/(mu1-1) * mu2/(mu2-1))
    applies[applies] = (log_q_c + eps2 < 0) & (log_q_c <= (mu2_c - 1) * eps2 - mu2_c * log_ratio)
    return applies, mu2


def theorem6_rdp_bound(log_q: np.ndarray, mu2: np.ndarray, sigma: float, orders: np.ndarray) -> np.ndarray:
    """[PATE18] Theorem 6 in log space; shape `(len(log_q), len(orders))`.

    Orders above mu1 = mu2 + 1, where the theorem does not apply, get the data-independent order / sigma^2.
    """
    mu2, log_q = mu2[:, None], log_q[:, None]
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    log_one_minus_q = log1mexp(log_q)
    log_a = log_one_minus_q - log1mexp((mu2 - 1) / mu2 * (log_q + eps2))
    log_b = eps1 - log_q / (mu1 - 1)
    steps = orders - 1
    log_sum = np.logaddexp(log_one_minus_q + steps * log_a, log_q + steps * log_b)
    return np.where(orders <= mu1, log_sum / steps, gnmax_rdp_data_independent(sigma, orders))


def vote_gaps(counts: np.ndarray) -> np.ndarray:
    """n_{j*} - n_j for every class j, with j* the (first) plurality class; shape `counts.shape`, >= 0."""
    return counts.max(axis=1, keepdims=True) - counts


def log_sum_over_runners_up(log_terms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """log of the sum of exp(log_terms) over every class but the (first) plurality one; shape `(num_queries,)`.

    That sum is the union bound on q, the chance that the noisy argmax misses the plurality class.
    """
    log_terms = log_terms.copy()
    log_terms[np.arange(counts.shape[0]), np.argmax(counts, axis=1)] = -np.inf
    return logsumexp(log_terms, axis=1)


def log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x < 0, accurate both near 0 and for very negative x."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    near_zero = x > -math.log(2)
    out[near_zero] = np.log(-np.expm1(x[near_zero]))
    out[~near_zero] = np.log1p(-np.exp(x[~near_zero]))
    return out


def rdp_to_epsilon_balle(rdp: np.ndarray, orders: np.ndarray, delta: float) -> float:
    """epsilon = min over orders of rdp + ln((order - 1) / order) - (ln delta + ln order) / (order - 1) ([Balle20]
    Theorem 21), as Opacus's `get_privacy_spent` computes it.

    Below `rdp_to_epsilon` (Mironov's) by ln(order) / (order - 1) - ln((order - 1) / order) at every order: about
    0.36 at order 10. Both hold for one pair of output distributions whose Renyi divergence is at most `rdp`, so
    both apply to data-dependent bounds too (against neighbours of the dataset they were computed on).
    """
    # Imported here: Opacus brings torch, which the rest of this module does not need.
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():  # Opacus warns when the best order is at an end of the grid: not an error here
        warnings.simplefilter("ignore")
        epsilon, _ = get_privacy_spent(
            orders=check_orders(orders), rdp=np.asarray(rdp, dtype=np.float64), delta=check_delta(delta)
        )
    return float(epsilon)


def check_answered(answered, num_queries: int) -> np.ndarray:
    """Return `answered` as a bool array of shape `(num_queries,)` after validating it."""
    array = np.asarray(answered)
    if array.shape != (num_queries,):
        raise ValueError(f"answered must have shape ({num_queries},), one flag per query, got {array.shape}")
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.number) or not np.all((array == 0) | (array == 1)):
            raise ValueError("answered must hold booleans (True where step 1 let the query through)")
        array = array.astype(bool)
    return array
