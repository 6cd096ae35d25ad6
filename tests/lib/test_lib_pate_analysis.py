"""Unit tests of the PATE privacy accounting: `course.lib.pate_analysis` (graded) and `course.shown.pate_accounting`."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import special

from course.lib.pate import gaussian_noisy_max_probabilities, laplace_noisy_max_probabilities, vote_counts
from course.lib.pate_analysis import DEFAULT_RDP_ORDERS, gnmax_epsilon, pate_epsilon_data_independent, rdp_to_epsilon
from course.shown.pate_accounting import (
    confident_gnmax,
    confident_gnmax_epsilon,
    confident_gnmax_epsilon_data_dependent,
    confident_gnmax_rdp_data_dependent,
    gnmax_epsilon_data_dependent,
    gnmax_rdp_data_dependent,
    pate_epsilon_data_dependent,
    pate_log_moments_data_dependent,
    rdp_to_epsilon_balle,
    threshold_rdp_data_dependent,
)

LOG_INV_DELTA = math.log(1e5)


def _random_histograms(rng, num_queries, num_teachers, num_classes, concentration):
    """Vote histograms whose class probabilities are Dirichlet(concentration): small values mean agreement."""
    probabilities = rng.dirichlet(np.full(num_classes, concentration), size=num_queries)
    return np.array([rng.multinomial(num_teachers, p) for p in probabilities])


def _agreeing_votes(rng, num_queries=10_000, num_teachers=250, num_classes=10):
    """Realistic votes: each teacher agrees with the query's true label with a per-query rate around 0.85."""
    truth = rng.integers(0, num_classes, num_queries)
    agreement = rng.beta(8, 1.5, num_queries)
    agree = rng.random((num_teachers, num_queries)) < agreement
    preds = np.where(agree, truth, rng.integers(0, num_classes, (num_teachers, num_queries)))
    return vote_counts(preds, num_classes)


# --- data-independent bounds ---------------------------------------------------------------------------------


def test_published_pate_values_exactly():
    assert pate_epsilon_data_independent(100, 0.1, 1e-5) == 11.756462732485115
    assert pate_epsilon_data_independent(100, 0.1, 1e-5, moments=8) == 11.756462732485115
    assert pate_epsilon_data_independent(100, 0.1, 1e-5, moments=20) == 11.756462732485115
    assert pate_epsilon_data_independent(163, 0.1, 1e-5) == 15.536462732485116


def test_data_independent_pate_follows_the_formula_term_by_term():
    rng = np.random.default_rng(0)
    for _ in range(200):
        num_queries, moments = int(rng.integers(0, 10_000)), int(rng.integers(1, 60))
        gamma, delta = float(np.exp(rng.uniform(-6, 2))), float(np.exp(rng.uniform(-25, -3)))
        expected = min(
            (num_queries * min(2 * gamma**2 * l * (l + 1), 2 * gamma * l) + math.log(1 / delta)) / l
            for l in range(1, moments + 1)
        )
        assert pate_epsilon_data_independent(num_queries, gamma, delta, moments) == expected


def test_gnmax_epsilon_follows_the_formula_and_the_closed_form_optimum():
    orders = np.array([1.5, 2.0, 8.0, 32.0])
    expected = min(1000 * a / 40**2 + LOG_INV_DELTA / (a - 1) for a in orders)
    assert gnmax_epsilon(1000, 40.0, 1e-5, orders) == pytest.approx(expected, rel=1e-14)
    # the default grid gets within 0.1% of the best order over a wide range of settings
    for num_queries, sigma in itertools.product([1, 30, 1000, 100_000], [0.5, 5.0, 40.0, 200.0]):
        rdp = num_queries / sigma**2
        best = rdp + 2 * math.sqrt(rdp * LOG_INV_DELTA)
        assert best <= gnmax_epsilon(num_queries, sigma, 1e-5) <= best * 1.001


def test_default_orders_are_a_sensible_grid():
    assert DEFAULT_RDP_ORDERS.size >= 100
    assert np.all(DEFAULT_RDP_ORDERS > 1) and np.all(np.diff(DEFAULT_RDP_ORDERS) > 0)


@pytest.mark.parametrize(
    "function, noise_levels",
    [
        (lambda noise: pate_epsilon_data_independent(500, 1 / noise, 1e-5, 20), [1, 2, 5, 10, 20, 50, 100]),
        (lambda noise: gnmax_epsilon(500, noise, 1e-5), [1, 2, 5, 10, 20, 50, 100]),
    ],
)
def test_data_independent_epsilon_falls_as_the_noise_grows(function, noise_levels):
    epsilons = [function(noise) for noise in noise_levels]
    assert all(later < earlier for earlier, later in zip(epsilons, epsilons[1:]))


def test_zero_queries_cost_only_the_tail_term():
    assert pate_epsilon_data_independent(0, 0.1, 1e-5, moments=10) == LOG_INV_DELTA / 10
    empty = np.zeros((0, 10))
    assert pate_epsilon_data_dependent(empty, 0.1, 1e-5, 10) == LOG_INV_DELTA / 10
    assert gnmax_epsilon_data_dependent(empty, 5.0, 1e-5) == gnmax_epsilon(0, 5.0, 1e-5)


# --- data-dependent bounds: agreement with the papers' formulas ------------------------------------------------


def _theorem2_direct(counts_row, gamma, moment):
    """[PATE17] Theorem 2 with the q bound, in plain floating point (fine for moderate values)."""
    winner = int(np.argmax(counts_row))
    gaps = counts_row[winner] - np.delete(counts_row, winner)
    q = float(np.sum((2 + gamma * gaps) / (4 * np.exp(gamma * gaps))))
    data_independent = min(2 * gamma**2 * moment * (moment + 1), 2 * gamma * moment)
    if q >= (math.exp(2 * gamma) - 1) / (math.exp(4 * gamma) - 1):
        return data_independent
    bound = math.log((1 - q) * ((1 - q) / (1 - math.exp(2 * gamma) * q)) ** moment + q * math.exp(2 * gamma * moment))
    return min(bound, data_independent)


def _theorem6_direct(counts_row, sigma, order):
    """[PATE18] Theorem 6 with Proposition 7's q and Proposition 10's orders, in plain floating point."""
    winner = int(np.argmax(counts_row))
    gaps = counts_row[winner] - np.delete(counts_row, winner)
    q = float(np.sum(0.5 * special.erfc(gaps / (2 * sigma))))
    data_independent = order / sigma**2
    if not 0 < q < 1:
        return data_independent
    mu2 = sigma * math.sqrt(math.log(1 / q))
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    if (
        mu2 <= 1
        or order > mu1
        or q * math.exp(eps2) >= 1
        or q > math.exp((mu2 - 1) * eps2) / (mu1 / (mu1 - 1) * mu2 / (mu2 - 1)) ** mu2
    ):
        return data_independent
    a = (1 - q) / (1 - (q * math.exp(eps2)) ** ((mu2 - 1) / mu2))
    b = math.exp(eps1) / q ** (1 / (mu1 - 1))
    bound = math.log((1 - q) * a ** (order - 1) + q * b ** (order - 1)) / (order - 1)
    return min(bound, data_independent)


def test_log_space_laplace_moments_match_the_theorem_in_plain_arithmetic():
    rng = np.random.default_rng(1)
    counts = np.vstack([_random_histograms(rng, 30, 50, 5, 0.3), [[50, 0, 0, 0, 0], [25, 25, 0, 0, 0]]])
    for gamma in (0.05, 0.2, 1.0):
        moments = pate_log_moments_data_dependent(counts, gamma, moments=12)
        for row, alphas in zip(counts, moments):
            direct = [_theorem2_direct(row, gamma, l) for l in range(1, 13)]
            np.testing.assert_allclose(alphas, direct, rtol=1e-9, atol=1e-14)
    l = np.arange(1, 13)
    assert np.any(moments < np.minimum(2 * l * (l + 1), 2 * l))  # the data-dependent branch ran (gamma 1)


def test_log_space_gnmax_rdp_matches_the_theorem_in_plain_arithmetic():
    rng = np.random.default_rng(2)
    counts = np.vstack([_random_histograms(rng, 30, 100, 5, 0.3), [[100, 0, 0, 0, 0], [50, 50, 0, 0, 0]]])
    orders = np.array([1.1, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0])  # higher ones overflow plain arithmetic
    for sigma in (2.0, 5.0, 15.0):
        rdp = gnmax_rdp_data_dependent(counts, sigma, orders)
        for row, values in zip(counts, rdp):
            direct = [_theorem6_direct(row, sigma, order) for order in orders]
            np.testing.assert_allclose(values, direct, rtol=1e-9, atol=1e-14)
        assert np.any(rdp < orders / sigma**2)  # the data-dependent branch was exercised


def _replacement_neighbours(counts_row):
    """Histograms where one teacher's vote moved from class a to class b."""
    for a, b in itertools.permutations(range(len(counts_row)), 2):
        if counts_row[a] > 0:
            neighbour = counts_row.astype(float).copy()
            neighbour[a] -= 1
            neighbour[b] += 1
            yield neighbour


@pytest.mark.parametrize("counts_row, gamma", [([10, 1, 0], 1.0), ([10, 3, 0], 0.5), ([20, 5, 5], 0.3), ([6, 0], 2.0)])
def test_laplace_moments_bound_the_exact_log_moments(counts_row, gamma):
    counts_row = np.array(counts_row)
    moments = np.arange(1, 16)
    bound = pate_log_moments_data_dependent(counts_row[None], gamma, moments=15)[0]
    data_independent = np.minimum(2 * gamma**2 * moments * (moments + 1), 2 * gamma * moments)
    assert np.all(bound < data_independent)  # the data-dependent branch applies to these histograms
    p = laplace_noisy_max_probabilities(counts_row, gamma)
    for neighbour in _replacement_neighbours(counts_row):
        p_neighbour = laplace_noisy_max_probabilities(neighbour, gamma)
        exact = np.array([math.log(np.sum(p * (p / p_neighbour) ** l)) for l in moments])
        assert np.all(bound >= exact * (1 - 1e-7))


@pytest.mark.parametrize("counts_row, sigma", [([12, 2, 0], 2.0), ([30, 5, 0], 4.0), ([8, 0], 1.0), ([50, 10, 5], 6.0)])
def test_gnmax_rdp_bounds_the_exact_renyi_divergence(counts_row, sigma):
    counts_row = np.array(counts_row)
    orders = np.array([1.1, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0])
    bound = gnmax_rdp_data_dependent(counts_row[None], sigma, orders)[0]
    assert bound[0] < orders[0] / sigma**2  # the data-dependent branch applies
    p = gaussian_noisy_max_probabilities(counts_row, sigma)
    for neighbour in _replacement_neighbours(counts_row):
        p_neighbour = gaussian_noisy_max_probabilities(neighbour, sigma)
        exact = np.array([math.log(np.sum(p**a * p_neighbour ** (1 - a))) / (a - 1) for a in orders])
        assert np.all(bound >= exact * (1 - 1e-7))


# --- data-dependent bounds: behaviour ------------------------------------------------------------------------


def test_data_dependent_never_exceeds_data_independent():
    rng = np.random.default_rng(3)
    for _ in range(150):
        num_classes, num_teachers = int(rng.integers(2, 12)), int(rng.integers(1, 300))
        counts = _random_histograms(
            rng, int(rng.integers(1, 60)), num_teachers, num_classes, rng.choice([0.05, 0.3, 1.0, 5.0])
        )
        gamma, sigma = float(np.exp(rng.uniform(-7, 3))), float(np.exp(rng.uniform(-3, 6)))
        delta, moments = float(np.exp(rng.uniform(-25, -3))), int(rng.integers(1, 120))
        assert pate_epsilon_data_dependent(counts, gamma, delta, moments) <= pate_epsilon_data_independent(
            len(counts), gamma, delta, moments
        )
        assert gnmax_epsilon_data_dependent(counts, sigma, delta) <= gnmax_epsilon(len(counts), sigma, delta)
        moments_table = pate_log_moments_data_dependent(counts, gamma, moments)
        assert moments_table.shape == (len(counts), moments) and np.all(moments_table >= 0)
        rdp_table = gnmax_rdp_data_dependent(counts, sigma)
        assert rdp_table.shape == (len(counts), DEFAULT_RDP_ORDERS.size)
        assert np.all(rdp_table >= 0) and np.all(rdp_table <= DEFAULT_RDP_ORDERS / sigma**2)


def test_epsilon_is_the_tail_bound_of_the_summed_per_query_costs():
    counts = _agreeing_votes(np.random.default_rng(4), num_queries=300)
    alpha = pate_log_moments_data_dependent(counts, 0.05, moments=30).sum(axis=0)
    moments = np.arange(1, 31)
    assert pate_epsilon_data_dependent(counts, 0.05, 1e-5, 30) == pytest.approx(
        np.min((alpha + LOG_INV_DELTA) / moments), rel=1e-12
    )
    rdp = gnmax_rdp_data_dependent(counts, 20.0).sum(axis=0)
    assert gnmax_epsilon_data_dependent(counts, 20.0, 1e-5) == pytest.approx(
        np.min(rdp + LOG_INV_DELTA / (DEFAULT_RDP_ORDERS - 1)), rel=1e-12
    )


def _histograms_with_top_votes(top_votes, num_queries=1000, num_teachers=250, num_classes=10):
    """Every query: `top_votes` for class 0, the other votes spread as evenly as possible over the rest."""
    rest = num_teachers - top_votes
    row = np.full(num_classes, rest // (num_classes - 1))
    row[1 : 1 + rest % (num_classes - 1)] += 1
    row[0] = top_votes
    return np.tile(row, (num_queries, 1))


def test_data_dependent_epsilon_falls_towards_zero_as_teachers_agree():
    top_votes = [30, 60, 100, 150, 200, 250]
    laplace = [pate_epsilon_data_dependent(_histograms_with_top_votes(k), 0.05, 1e-5, 100) for k in top_votes]
    gnmax = [gnmax_epsilon_data_dependent(_histograms_with_top_votes(k), 40.0, 1e-5) for k in top_votes]
    for epsilons in (laplace, gnmax):
        # (up to float rounding: a bound equal to the data-independent one may be summed, not multiplied)
        assert all(later <= earlier * (1 + 1e-12) for earlier, later in zip(epsilons, epsilons[1:]))
        assert epsilons[-1] < epsilons[0] / 10
    assert laplace[0] == pate_epsilon_data_independent(1000, 0.05, 1e-5, 100)
    assert gnmax[0] == gnmax_epsilon(1000, 40.0, 1e-5)


def test_unanimous_answers_with_little_noise_cost_nothing_beyond_the_tail_term():
    # q is about 1e-106 (Laplace, gamma 1) or 1e-272 (Gaussian, sigma 5): the 1000 answers cost next to
    # nothing at these orders, and only the tail term ln(1/delta) / (largest order - 1) remains
    unanimous = _histograms_with_top_votes(250)
    assert pate_epsilon_data_dependent(unanimous, 1.0, 1e-5, 100) == pytest.approx(LOG_INV_DELTA / 100, rel=1e-6)
    orders = np.arange(2.0, 51.0)
    assert gnmax_epsilon_data_dependent(unanimous, 5.0, 1e-5, orders) == pytest.approx(LOG_INV_DELTA / 49, rel=1e-6)


@pytest.mark.parametrize("num_teachers, num_classes", [(250, 10), (7, 7), (0, 3)])
def test_uniform_votes_give_exactly_the_data_independent_epsilon(num_teachers, num_classes):
    counts = np.full((400, num_classes), num_teachers // num_classes)
    for gamma in (0.01, 0.1, 1.0):
        assert pate_epsilon_data_dependent(counts, gamma, 1e-5, 50) == pate_epsilon_data_independent(
            400, gamma, 1e-5, 50
        )
    for sigma in (1.0, 40.0):
        assert gnmax_epsilon_data_dependent(counts, sigma, 1e-5) == gnmax_epsilon(400, sigma, 1e-5)


def test_large_analyses_stay_finite_and_warning_free():
    counts = _agreeing_votes(np.random.default_rng(5))
    orders = 1 + np.geomspace(0.01, 1000, 100)
    extremes = np.array([[250] + [0] * 9, [25] * 10, [125, 125] + [0] * 8, [0] * 10])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for gamma in (1e-4, 0.05, 1.0, 50.0):
            epsilon = pate_epsilon_data_dependent(counts, gamma, 1e-5, moments=100)
            assert math.isfinite(epsilon) and epsilon > 0
            assert np.all(np.isfinite(pate_log_moments_data_dependent(extremes, gamma, 100)))
        for sigma in (0.01, 1.0, 40.0, 1e4):
            epsilon = gnmax_epsilon_data_dependent(counts, sigma, 1e-5, orders)
            assert math.isfinite(epsilon) and epsilon > 0
            assert np.all(np.isfinite(gnmax_rdp_data_dependent(extremes, sigma, orders)))
        assert math.isfinite(pate_epsilon_data_independent(10_000, 50.0, 1e-12, 100))
        assert math.isfinite(gnmax_epsilon(10_000, 0.01, 1e-12, orders))


# --- argument validation -------------------------------------------------------------------------------------

GOOD_COUNTS = np.array([[3, 1, 0], [0, 4, 0]])


@pytest.mark.parametrize(
    "call",
    [
        lambda: pate_epsilon_data_independent(10, 0.0, 1e-5),
        lambda: pate_epsilon_data_independent(10, -0.1, 1e-5),
        lambda: pate_epsilon_data_independent(10, 0.1, 0.0),
        lambda: pate_epsilon_data_independent(10, 0.1, 1.0),
        lambda: pate_epsilon_data_independent(-1, 0.1, 1e-5),
        lambda: pate_epsilon_data_independent(2.5, 0.1, 1e-5),
        lambda: pate_epsilon_data_independent(10, 0.1, 1e-5, moments=0),
        lambda: gnmax_epsilon(10, 0.0, 1e-5),
        lambda: gnmax_epsilon(10, 1.0, 1.5),
        lambda: gnmax_epsilon(-3, 1.0, 1e-5),
        lambda: gnmax_epsilon(10, 1.0, 1e-5, orders=[1.0, 2.0]),
        lambda: gnmax_epsilon(10, 1.0, 1e-5, orders=[0.5]),
        lambda: gnmax_epsilon(10, 1.0, 1e-5, orders=[]),
        lambda: gnmax_epsilon(10, 1.0, 1e-5, orders=[[2.0]]),
        lambda: pate_epsilon_data_dependent(np.array([3, 1, 0]), 0.1, 1e-5),  # counts not 2-D
        lambda: pate_epsilon_data_dependent(np.array([[3, -1, 0]]), 0.1, 1e-5),  # negative count
        lambda: pate_epsilon_data_dependent(np.array([[3]]), 0.1, 1e-5),  # one class
        lambda: pate_epsilon_data_dependent(GOOD_COUNTS, 0.0, 1e-5),
        lambda: pate_epsilon_data_dependent(GOOD_COUNTS, 0.1, 0.0),
        lambda: pate_epsilon_data_dependent(GOOD_COUNTS, 0.1, 1e-5, moments=0),
        lambda: pate_log_moments_data_dependent(GOOD_COUNTS, -1.0),
        lambda: gnmax_epsilon_data_dependent(np.array([[np.inf, 1.0]]), 1.0, 1e-5),
        lambda: gnmax_epsilon_data_dependent(np.array([[3, -1, 0]]), 1.0, 1e-5),
        lambda: gnmax_epsilon_data_dependent(np.zeros((2, 3, 4)), 1.0, 1e-5),
        lambda: gnmax_epsilon_data_dependent(GOOD_COUNTS, -2.0, 1e-5),
        lambda: gnmax_epsilon_data_dependent(GOOD_COUNTS, 1.0, 2.0),
        lambda: gnmax_epsilon_data_dependent(GOOD_COUNTS, 1.0, 1e-5, orders=[1.0]),
        lambda: gnmax_rdp_data_dependent(GOOD_COUNTS, 1.0, orders=[np.nan]),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# --- cross-check against Opacus's RDP accountant ----------------------------------------------------------------


def test_gnmax_rdp_curve_equals_opacus_gaussian_mechanism_at_sigma_over_root_two():
    """GNMax's data-independent RDP order / sigma^2 is the Gaussian mechanism's order / (2 s^2) at s = sigma / sqrt 2.

    Opacus's `compute_rdp` with sampling rate 1 is that Gaussian mechanism; votes without a clear plurality
    make `gnmax_rdp_data_dependent` fall back to the data-independent curve.
    """
    rdp_analysis = pytest.importorskip("opacus.accountants.analysis.rdp")
    orders = np.array([1.25, 1.5, 2.0, 3.0, 8.0, 32.0, 128.0, 1000.0])
    uniform = np.full((7, 10), 25)
    for sigma in (0.7, 5.0, 40.0, 150.0):
        ours = gnmax_rdp_data_dependent(uniform, sigma, orders).sum(axis=0)
        theirs = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=sigma / math.sqrt(2), steps=7, orders=orders)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
        # step 1 of Confident-GNMax is the Gaussian mechanism of sensitivity 1 itself (noise multiplier sigma1),
        # step 2 is GNMax: the data-independent bound composes both curves
        step1 = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=sigma, steps=7, orders=orders)
        step2 = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=20.0 / math.sqrt(2), steps=3, orders=orders)
        assert confident_gnmax_epsilon(7, 3, sigma, 20.0, 1e-5, orders) == pytest.approx(
            float(np.min(step1 + step2 + LOG_INV_DELTA / (orders - 1))), rel=1e-12
        )


def test_mironov_conversion_is_never_below_opacus_balle_conversion():
    """The course converts RDP to (eps, delta) with Mironov's rdp + ln(1/delta)/(order - 1); Opacus's
    `get_privacy_spent` uses the tighter conversion of Balle et al. 2020, so ours is never smaller."""
    rdp_analysis = pytest.importorskip("opacus.accountants.analysis.rdp")
    orders = DEFAULT_RDP_ORDERS
    for num_queries, sigma, delta in itertools.product([1, 100, 5000], [2.0, 40.0, 150.0], [1e-5, 1e-6, 1e-9]):
        ours = gnmax_epsilon(num_queries, sigma, delta, orders)
        rdp = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=sigma / math.sqrt(2), steps=num_queries, orders=orders)
        theirs, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
        assert ours >= theirs - 1e-12
        assert ours == pytest.approx(float(np.min(rdp + math.log(1 / delta) / (orders - 1))), rel=1e-12)


def test_balle_conversion_is_below_mironov_by_the_closed_form_gap_at_one_order():
    """[Balle20] Theorem 21 at one order: rdp + ln((order - 1)/order) - (ln delta + ln order)/(order - 1), that is
    Mironov's value minus ln(order)/(order - 1) - ln((order - 1)/order) (0.36 at order 10)."""
    for order, rdp, delta in itertools.product([1.5, 10.0, 30.0], [0.0, 0.7, 4.0], [1e-5, 1e-6]):
        mironov = rdp_to_epsilon(np.array([rdp]), np.array([order]), delta)
        balle = rdp_to_epsilon_balle(np.array([rdp]), np.array([order]), delta)
        gap = math.log(order) / (order - 1) - math.log((order - 1) / order)
        assert balle == pytest.approx(mironov - gap, rel=1e-12, abs=1e-12)
    assert rdp_to_epsilon(np.array([0.0]), np.array([10.0]), 1e-5) - rdp_to_epsilon_balle(
        np.array([0.0]), np.array([10.0]), 1e-5
    ) == pytest.approx(0.361, abs=1e-3)


def test_every_confident_gnmax_epsilon_takes_the_balle_conversion_and_it_is_smaller():
    rdp_analysis = pytest.importorskip("opacus.accountants.analysis.rdp")
    orders = DEFAULT_RDP_ORDERS
    # data-independent: the composed Gaussian curves of step 1 and step 2, converted by Opacus itself
    step1 = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=150.0, steps=1000, orders=orders)
    step2 = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=40.0 / math.sqrt(2), steps=600, orders=orders)
    theirs, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=step1 + step2, delta=1e-5)
    balle = confident_gnmax_epsilon(1000, 600, 150.0, 40.0, 1e-5, conversion=rdp_to_epsilon_balle)
    assert balle == pytest.approx(theirs, rel=1e-12)
    assert balle < confident_gnmax_epsilon(1000, 600, 150.0, 40.0, 1e-5) - 0.1
    # data-dependent: the same RDP curve, either conversion
    rng = np.random.default_rng(4)
    counts = vote_counts(np.where(rng.random((250, 300)) < 0.9, 3, rng.integers(0, 10, (250, 300))), 10)
    answered = confident_gnmax(counts, 200.0, 150.0, 40.0, rng) >= 0
    for delta in (1e-5, 1e-6):
        mironov = confident_gnmax_epsilon_data_dependent(counts, answered, 200.0, 150.0, 40.0, delta)
        balle = confident_gnmax_epsilon_data_dependent(
            counts, answered, 200.0, 150.0, 40.0, delta, conversion=rdp_to_epsilon_balle
        )
        curve = confident_gnmax_rdp_data_dependent(counts, answered, 200.0, 150.0, 40.0, orders).sum(axis=0)
        assert balle == pytest.approx(
            rdp_analysis.get_privacy_spent(orders=orders, rdp=curve, delta=delta)[0], rel=1e-12
        )
        assert 0 < balle < mironov
        assert gnmax_epsilon_data_dependent(
            counts, 40.0, delta, conversion=rdp_to_epsilon_balle
        ) < gnmax_epsilon_data_dependent(counts, 40.0, delta)


def test_balle_conversion_rejects_bad_input():
    for orders, delta in [([1.0], 1e-5), ([], 1e-5), ([10.0], 0.0), ([10.0], 1.5)]:
        with pytest.raises(ValueError):
            rdp_to_epsilon_balle(np.zeros(len(orders)), orders, delta)


# --- Confident-GNMax ---------------------------------------------------------------------------------------------


def test_confident_gnmax_data_independent_bound_adds_both_steps():
    orders = np.array([2.0, 10.0, 40.0])
    expected = min(1000 * a / (2 * 150**2) + 300 * a / 40**2 + LOG_INV_DELTA / (a - 1) for a in orders)
    assert confident_gnmax_epsilon(1000, 300, 150.0, 40.0, 1e-5, orders) == pytest.approx(expected, rel=1e-14)
    # no answers: only step 1; all answered with sigma1 = inf-like noise: GNMax alone
    assert confident_gnmax_epsilon(50, 0, 10.0, 1.0, 1e-5, orders) == pytest.approx(
        gnmax_epsilon(50, 10.0 * math.sqrt(2), 1e-5, orders), rel=1e-14
    )


def _threshold_rdp_direct(max_count, threshold, sigma1, order):
    """Step 1 in plain arithmetic: Theorem 6 at noise sqrt(2) sigma1 with q = min(p, 1 - p)."""
    p = 0.5 * special.erfc((threshold - max_count) / (sigma1 * math.sqrt(2)))
    q = min(p, 0.5 * special.erfc((max_count - threshold) / (sigma1 * math.sqrt(2))))  # min(p, 1 - p)
    sigma = math.sqrt(2) * sigma1
    data_independent = order / sigma**2
    mu2 = sigma * math.sqrt(math.log(1 / q))
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    if (
        mu2 <= 1
        or order > mu1
        or q * math.exp(eps2) >= 1
        or q > math.exp((mu2 - 1) * eps2) / (mu1 / (mu1 - 1) * mu2 / (mu2 - 1)) ** mu2
    ):
        return data_independent
    a = (1 - q) / (1 - (q * math.exp(eps2)) ** ((mu2 - 1) / mu2))
    b = math.exp(eps1) / q ** (1 / (mu1 - 1))
    return min(math.log((1 - q) * a ** (order - 1) + q * b ** (order - 1)) / (order - 1), data_independent)


def test_threshold_rdp_matches_the_theorem_in_plain_arithmetic():
    counts = np.array([[v, 30 - v, 0] for v in range(15, 31)])
    orders = np.array([1.5, 2.0, 4.0, 8.0, 16.0])
    for threshold, sigma1 in ((20.0, 2.0), (28.0, 1.0), (5.0, 3.0)):
        rdp = threshold_rdp_data_dependent(counts, threshold, sigma1, orders)
        direct = [[_threshold_rdp_direct(row.max(), threshold, sigma1, a) for a in orders] for row in counts]
        np.testing.assert_allclose(rdp, direct, rtol=1e-9, atol=1e-14)
        assert np.any(rdp < orders / (2 * sigma1**2))  # the data-dependent branch was exercised


def _threshold_exact_rdp(max_count, other_max, threshold, sigma1, order):
    """Exact Renyi divergence of step 1's binary output between max counts `max_count` and `other_max`."""
    p = 0.5 * special.erfc((threshold - max_count) / (sigma1 * math.sqrt(2)))
    r = 0.5 * special.erfc((threshold - other_max) / (sigma1 * math.sqrt(2)))
    return math.log(p**order * r ** (1 - order) + (1 - p) ** order * (1 - r) ** (1 - order)) / (order - 1)


def test_threshold_rdp_bounds_the_exact_renyi_divergence_of_step_one():
    """Replacement moves the maximum count by at most one: the bound must cover both directions."""
    orders = [1.5, 2.0, 4.0, 8.0]
    for threshold, sigma1 in ((20.0, 2.0), (28.0, 1.5)):
        for v in range(16, 30):
            bound = threshold_rdp_data_dependent(np.array([[v, 30 - v]]), threshold, sigma1, orders)[0]
            for other in (v - 1, v + 1):
                exact = [_threshold_exact_rdp(v, other, threshold, sigma1, a) for a in orders]
                assert np.all(bound >= np.array(exact) - 1e-12)


def test_confident_gnmax_data_dependent_adds_step_two_only_for_answered_queries():
    rng = np.random.default_rng(7)
    counts = _agreeing_votes(rng, num_queries=500)
    answered = rng.random(500) < 0.6
    orders = np.array([2.0, 8.0, 32.0])
    total = confident_gnmax_rdp_data_dependent(counts, answered, 200.0, 150.0, 40.0, orders)
    expected = threshold_rdp_data_dependent(counts, 200.0, 150.0, orders)
    expected[answered] += gnmax_rdp_data_dependent(counts[answered], 40.0, orders)
    np.testing.assert_allclose(total, expected, rtol=1e-14)
    epsilon = confident_gnmax_epsilon_data_dependent(counts, answered, 200.0, 150.0, 40.0, 1e-5, orders)
    assert epsilon == pytest.approx(float(np.min(total.sum(axis=0) + LOG_INV_DELTA / (orders - 1))), rel=1e-14)
    assert epsilon <= confident_gnmax_epsilon(500, int(answered.sum()), 150.0, 40.0, 1e-5, orders) + 1e-12
    # strong consensus with little selection noise far from the threshold: far below data-independent
    unanimous = np.tile([250] + [0] * 9, (1000, 1))
    dd = confident_gnmax_epsilon_data_dependent(unanimous, np.ones(1000, bool), 100.0, 20.0, 10.0, 1e-5)
    assert dd < 0.1 * confident_gnmax_epsilon(1000, 1000, 20.0, 10.0, 1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: confident_gnmax_epsilon(10, 11, 1.0, 1.0, 1e-5),
        lambda: confident_gnmax_epsilon(10, -1, 1.0, 1.0, 1e-5),
        lambda: confident_gnmax_epsilon(10, 5, 0.0, 1.0, 1e-5),
        lambda: confident_gnmax_epsilon(10, 5, 1.0, 1.0, 0.0),
        lambda: threshold_rdp_data_dependent(GOOD_COUNTS, np.nan, 1.0),
        lambda: threshold_rdp_data_dependent(GOOD_COUNTS, 2.0, -1.0),
        lambda: confident_gnmax_rdp_data_dependent(GOOD_COUNTS, [True], 2.0, 1.0, 1.0),
        lambda: confident_gnmax_rdp_data_dependent(GOOD_COUNTS, [0.5, 1.0], 2.0, 1.0, 1.0),
        lambda: confident_gnmax_epsilon_data_dependent(GOOD_COUNTS, [True, False], 2.0, 1.0, 1.0, 1.5),
    ],
)
def test_confident_gnmax_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# --- the committed PATE 2018 results table (scripts/pate2018_results.py) and the numbers notebook 05 quotes ---------


def _results_table():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "results" / "pate2018_mnist.md"
    if not path.exists():
        pytest.skip("results/pate2018_mnist.md not generated yet")
    return path.read_text()


def _summary_rows(text, delta, conversion):
    """The rows of the release table for `delta` and `conversion` ("Balle" or "Mironov"), as lists of cell texts."""
    section = next(
        part
        for part in text.split("## Release: ")[1:]
        if part.startswith(f"δ = {delta:g} ") and conversion in part.splitlines()[0]
    ).split("##")[0]
    rows = [
        line.split("|")[1:-1]
        for line in section.splitlines()
        if line.startswith("| Confident") or line.startswith("| GNMax")
    ]
    return [[cell.strip() for cell in row] for row in rows]


def _mean(cell):
    return float(cell.split("±")[0])


def test_committed_pate2018_table_data_independent_column_recomputes():
    import re

    text = _results_table()
    if "## Release: " not in text:
        pytest.skip("results/pate2018_mnist.md not regenerated with the cap yet")
    orders = DEFAULT_RDP_ORDERS
    for delta, (conversion, convert) in itertools.product(
        (1e-5, 1e-6), [("Balle", rdp_to_epsilon_balle), ("Mironov", rdp_to_epsilon)]
    ):
        rows = _summary_rows(text, delta, conversion)
        assert len(rows) == 3
        for row in rows:
            aggregator, asked = row[0], int(row[2].split("/")[1])
            if aggregator == "GNMax":
                expected = convert(asked * orders / 40.0**2, orders, delta)
                if conversion == "Mironov":
                    assert expected == pytest.approx(gnmax_epsilon(asked, 40.0, delta), rel=1e-12)
            else:
                cap = int(re.search(r"cap M=(\d+)", row[1]).group(1))
                expected = confident_gnmax_epsilon(asked, cap, 150.0, 40.0, delta, conversion=convert)
            assert _mean(row[5]) == pytest.approx(expected, abs=6e-4)


def test_notebook_05_quotes_the_committed_pate2018_table():
    """Section 7's reading quotes the headline row (1,000 queries) at the course's delta 1e-6 with both conversions:
    the student's mean ± spread over its training runs, the data-independent guarantee and the sanitised estimate;
    and the paper's delta 1e-5 comparison values."""
    from pathlib import Path

    import nbformat

    text = _results_table()
    if "## Release: " not in text:
        pytest.skip("results/pate2018_mnist.md not regenerated with the cap yet")
    notebook = nbformat.read(Path(__file__).resolve().parents[2] / "source" / "05_pate" / "05_pate.ipynb", 4)
    quoted = next(
        cell.source for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == "md-pate18-read"
    )
    for delta, conversion in itertools.product((1e-6, 1e-5), ("Balle", "Mironov")):
        headline = next(
            row for row in _summary_rows(text, delta, conversion) if row[0] == "Confident-GNMax" and "/ 1000" in row[2]
        )
        student_mean, student_std = (float(x) for x in headline[4].split("±"))
        assert f"{100 * student_mean:.1f} ± {100 * student_std:.1f}%" in quoted
        assert f"{float(headline[5]):.2f}" in quoted, (delta, conversion)
        assert f"{float(headline[6]):.2f}" in quoted, (delta, conversion)
