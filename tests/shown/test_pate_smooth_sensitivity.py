"""Tests of the smooth-sensitivity release of PATE 2018 data-dependent epsilons, `course.shown.pate_smooth_sensitivity`.

Three kinds of evidence:
- the published unit-test values of the authors' reference code (tensorflow/privacy,
  research/pate_2018/smooth_sensitivity_test.py), reproduced by an independent implementation;
- exhaustive checks on small vote histograms, where every dataset within distance d can be enumerated, that
  the local-sensitivity bounds really bound the change of the released function;
- the formulas of Theorem 23 and of smooth sensitivity, and argument validation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from course.lib.pate import vote_counts
from course.shown.pate_accounting import (
    confident_gnmax_rdp_data_dependent,
    gaussian_rdp_given_log_q,
    rdp_to_epsilon_balle,
    threshold_log_q,
)
from course.shown.pate_smooth_sensitivity import (
    _gnmax_beta,
    _gnmax_log_q,
    gnmax_local_sensitivity,
    gnmax_log_q0,
    gnss_rdp,
    sanitised_confident_gnmax_epsilon,
    smooth_sensitivity,
    smooth_sensitivity_conditions,
    threshold_local_sensitivity,
)

# --- the reference implementation's published test values ----------------------------------------------------


def test_gnmax_local_sensitivity_reproduces_the_reference_values():
    # "going right" (a clear winner): votes (10, 0, 0) of 10 teachers, sigma 0.5, order 1.5
    expected = np.array([3.13503646e-17, 1.60178280e-08, 5.90681786e-03] + [5.99981308e00] * 7)
    np.testing.assert_allclose(
        gnmax_local_sensitivity(np.array([[10, 0, 0]]), 0.5, 1.5)[0], expected, rtol=1e-8, atol=0
    )
    # "going left" (no clear winner): votes (1000, 500, 300, 200, 0) of 2,000 teachers, sigma 250, order 10
    expected = np.array([0.0] * 298 + [2.77693450548e-7, 2.10853979548e-6] + [2.73113623988e-6] * 1700)
    np.testing.assert_allclose(
        gnmax_local_sensitivity(np.array([[1000, 500, 300, 200, 0]]), 250.0, 10.0)[0], expected, rtol=1e-8, atol=0
    )


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (
            16,
            [0] * 3
            + [
                1.48454129e-04,
                1.47826870e-02,
                3.94153241e-02,
                6.45775697e-02,
                9.01543247e-02,
                1.16054002e-01,
                1.42180452e-01,
                1.42180452e-01,
                1.48454129e-04,
                1.47826870e-02,
                3.94153241e-02,
                6.45775697e-02,
                9.01543266e-02,
                1.16054000e-01,
                1.42180452e-01,
                1.68302106e-01,
                1.93127860e-01,
            ]
            + [0] * 10,
        ),
        (
            2,
            [
                1.60212079e-01,
                2.07021132e-01,
                2.07021132e-01,
                1.93127860e-01,
                1.68302106e-01,
                1.42180452e-01,
                1.16054002e-01,
                9.01543247e-02,
                6.45775697e-02,
                3.94153241e-02,
                1.47826870e-02,
                1.48454129e-04,
            ]
            + [0] * 18,
        ),
        (
            50,
            [
                1.35750725752e-19,
                1.88990500499e-17,
                2.05403154065e-15,
                1.74298153642e-13,
                1.15489723995e-11,
                5.97584949325e-10,
                2.41486826748e-08,
                7.62150641922e-07,
                1.87846248741e-05,
                0.000360973025976,
                0.000360973025976,
                2.76377015215e-50,
                1.00904975276e-53,
                2.87254164748e-57,
                6.37583360761e-61,
                1.10331620211e-64,
                1.48844393335e-68,
                1.56535552444e-72,
                1.28328011060e-76,
                8.20047697109e-81,
            ]
            + [0] * 10,
        ),
    ],
)
def test_threshold_local_sensitivity_is_the_running_maximum_of_the_reference_values(threshold, expected):
    """The reference evaluates only the two datasets whose maximum count is v - d and v + d at distance d;
    every maximum count in between is also reachable within d changes, so this library takes the running
    maximum, which equals the reference where the reference is monotone and bounds it everywhere."""
    ours = threshold_local_sensitivity(np.array([[20, 10, 0]]), threshold, 2.0, 10.0)[0]
    np.testing.assert_allclose(ours, np.maximum.accumulate(expected), rtol=1e-6, atol=1e-300)
    assert np.all(ours >= np.array(expected) * (1 - 1e-6))


def test_conditions_c5_c6_agree_with_the_reference():
    assert smooth_sensitivity_conditions(20.0, 10, 25.0) == (True, False)
    assert smooth_sensitivity_conditions(30.0, 10, 25.0) == (True, True)


# --- exhaustive small cases ---------------------------------------------------------------------------------


def _histograms(num_teachers, num_classes):
    """Every vote histogram of `num_teachers` votes over `num_classes` classes, shape (count, num_classes)."""
    rows = [c for c in itertools.product(range(num_teachers + 1), repeat=num_classes) if sum(c) == num_teachers]
    return np.array(rows, dtype=np.float64)


def _distance(a, b):
    """Teachers that must change their vote to turn histogram a into b (replacement, one vote at a time)."""
    return int(np.abs(a - b).sum(axis=-1) // 2) if a.ndim == 1 and b.ndim == 1 else (np.abs(a - b).sum(-1) // 2)


def _true_local_sensitivity(values, histograms):
    """max |f(y) - f(z)| over z one vote away from y, for every histogram y (`values` = f on `histograms`)."""
    distances = np.abs(histograms[:, None, :] - histograms[None, :, :]).sum(axis=2) // 2
    return np.array([np.max(np.abs(values[distances[i] == 1] - values[i])) for i in range(len(histograms))]), distances


@pytest.mark.parametrize("num_teachers, sigma, order", [(12, 1.0, 2.0), (16, 0.7, 2.0), (10, 0.5, 1.5), (18, 2.0, 2.0)])
def test_gnmax_local_sensitivity_bounds_every_dataset_within_distance_d(num_teachers, sigma, order):
    assert smooth_sensitivity_conditions(sigma, 3, order) == (True, True)
    histograms = _histograms(num_teachers, 3)
    log_q0 = gnmax_log_q0(sigma, order)
    beta = _gnmax_beta(_gnmax_log_q(-np.sort(-histograms, axis=1), sigma), sigma, order, log_q0)
    true_ls, distances = _true_local_sensitivity(beta, histograms)
    bounds = gnmax_local_sensitivity(histograms, sigma, order)
    for i in range(len(histograms)):
        for d in range(num_teachers):
            reachable = distances[i] <= d
            assert bounds[i, d] >= true_ls[reachable].max() * (1 - 1e-9) - 1e-15
    assert np.any(bounds[:, 0] < bounds[:, -1])  # the bound is data-dependent: small near consensus


@pytest.mark.parametrize("threshold, sigma1, order", [(8.0, 1.5, 4.0), (11.0, 1.0, 2.0), (3.0, 2.0, 8.0)])
def test_threshold_local_sensitivity_bounds_every_dataset_within_distance_d(threshold, sigma1, order):
    histograms = _histograms(12, 3)
    beta = gaussian_rdp_given_log_q(
        threshold_log_q(histograms.max(axis=1), threshold, sigma1), math.sqrt(2) * sigma1, np.array([order])
    )[:, 0]
    true_ls, distances = _true_local_sensitivity(beta, histograms)
    bounds = threshold_local_sensitivity(histograms, threshold, sigma1, order)
    for i in range(len(histograms)):
        for d in range(12):
            assert bounds[i, d] >= true_ls[distances[i] <= d].max() - 1e-15


# --- the release ----------------------------------------------------------------------------------------------


def test_gnss_rdp_follows_theorem_23_and_refuses_orders_outside_its_range():
    beta, sigma_ss, order = 0.01, 5.0, 20.0
    expected = order * math.exp(2 * beta) / sigma_ss**2 + (beta * order - 0.5 * math.log(1 - 2 * order * beta)) / (
        order - 1
    )
    assert gnss_rdp(beta, sigma_ss, order) == pytest.approx(expected, rel=1e-14)
    with pytest.raises(ValueError):
        gnss_rdp(0.03, 5.0, 20.0)  # order must be below 1 / (2 beta) = 16.7


def test_smooth_sensitivity_is_the_discounted_maximum():
    local = np.array([0.0, 1.0, 3.0, 3.0])
    assert smooth_sensitivity(local, 0.5) == pytest.approx(max(math.exp(-0.5), 3 * math.exp(-1.0)), rel=1e-14)
    assert smooth_sensitivity(local, 100.0) == pytest.approx(math.exp(-100.0), rel=1e-12)


def _mnist_like_votes(seed, num_queries=400, num_teachers=250):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, num_queries)
    agree = rng.random((num_teachers, num_queries)) < rng.beta(8, 1.5, num_queries)
    return vote_counts(np.where(agree, truth, rng.integers(0, 10, (num_teachers, num_queries))), 10)


def test_released_value_is_the_data_dependent_analysis_plus_scaled_gaussian_noise_plus_its_cost():
    counts = _mnist_like_votes(0)
    answered = counts.max(axis=1) > 200
    order, beta, sigma_ss = 20.0, 0.4 / 20.0, 8.0
    direct = confident_gnmax_rdp_data_dependent(counts, answered, 200.0, 150.0, 40.0, [order]).sum()
    for seed in range(3):
        result = sanitised_confident_gnmax_epsilon(
            counts, answered, 200.0, 150.0, 40.0, 1e-5, order, beta, sigma_ss, np.random.default_rng(seed)
        )
        assert result.rdp_data_dependent == pytest.approx(direct, rel=1e-9)
        assert result.epsilon_data_dependent == pytest.approx(direct + math.log(1e5) / 19, rel=1e-12)
        assert result.rdp_release == pytest.approx(gnss_rdp(beta, sigma_ss, order), rel=1e-14)
        noise = result.noise_std * np.random.default_rng(seed).normal()  # the one standard normal draw
        assert result.epsilon == pytest.approx(result.epsilon_data_dependent + result.rdp_release + noise, rel=1e-12)
    assert 0 < result.smooth_sensitivity and result.noise_std == pytest.approx(result.smooth_sensitivity * sigma_ss)
    # the tighter conversion of Balle et al. 2020 applies to the same released RDP value (same noise draw)
    balle = sanitised_confident_gnmax_epsilon(
        counts,
        answered,
        200.0,
        150.0,
        40.0,
        1e-5,
        order,
        beta,
        sigma_ss,
        np.random.default_rng(seed),
        conversion=rdp_to_epsilon_balle,
    )
    gap = math.log(order) / (order - 1) - math.log((order - 1) / order)
    assert balle.epsilon == pytest.approx(result.epsilon - gap, rel=1e-12)
    assert balle.epsilon_data_dependent == pytest.approx(result.epsilon_data_dependent - gap, rel=1e-12)
    # the smooth sensitivity is the discounted maximum of the summed local sensitivities
    local = gnmax_local_sensitivity(counts[answered], 40.0, order).sum(axis=0) + threshold_local_sensitivity(
        counts, 200.0, 150.0, order
    ).sum(axis=0)
    assert result.smooth_sensitivity == pytest.approx(smooth_sensitivity(local, beta), rel=1e-12)


def test_release_refuses_settings_where_the_analysis_does_not_hold():
    counts = _mnist_like_votes(1, num_queries=20)
    answered = np.ones(20, bool)
    with pytest.raises(ValueError):  # C6 fails at sigma2 20, order 25 (as in the reference code's test)
        sanitised_confident_gnmax_epsilon(counts, answered, 200.0, 150.0, 20.0, 1e-5, 25.0, 0.01, 5.0)
    with pytest.raises(ValueError):  # order above 1 / (2 beta)
        sanitised_confident_gnmax_epsilon(counts, answered, 200.0, 150.0, 40.0, 1e-5, 20.0, 0.05, 5.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: gnmax_local_sensitivity(np.array([[3, 1], [2, 1]]), 1.0, 2.0),  # rows of different sizes
        lambda: gnmax_local_sensitivity(np.array([[3, 1]]), 1.0, 1.0),
        lambda: gnmax_local_sensitivity(np.array([[3, 1]]), 0.0, 2.0),
        lambda: threshold_local_sensitivity(np.array([[3, 1]]), np.inf, 1.0, 2.0),
        lambda: smooth_sensitivity([], 0.1),
        lambda: smooth_sensitivity([1.0, -1.0], 0.1),
        lambda: smooth_sensitivity([1.0], 0.0),
        lambda: gnss_rdp(0.01, 0.0, 2.0),
        lambda: smooth_sensitivity_conditions(1.0, 1, 2.0),
        lambda: sanitised_confident_gnmax_epsilon(np.array([[3, 1]]), [True, True], 2, 1, 1, 1e-5, 2, 0.1, 1),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
