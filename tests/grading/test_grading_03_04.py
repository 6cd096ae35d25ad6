"""The hidden-test checks of notebooks 03 and 04 pass the reference and catch typical wrong answers.

Both halves of the grading contract (spec section 4): (a) the reference passes every check for 200 seeds; (b)
each wrong answer in `course.grading.wrong_answers.nb03_04` is caught in at least 99% of 100 seeds. The
measured rates are printed (run pytest with -s to see them). The full sweeps are marked slow; a few seeds run
in the fast suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from grading_harness import assert_fails_with_a_clean_message, failure_message, seed_sweeps, student_seeds

from course.grading import GradingFailure, nb03, nb04, stats
from course.grading.wrong_answers import nb03_04 as wrong
from course.lib.audit import empirical_epsilon
from course.lib.gaussian import gaussian_mechanism
from course.lib.laplace import laplace_mechanism, private_mean, private_sum, total_epsilon
from course.lib.randomized_response import debias_mean, randomized_response, rr_epsilon

REFERENCE_SEEDS = student_seeds(200, "04_laplace")  # as the grader derives them
WRONG_ANSWER_SEEDS = student_seeds(100, "03_randomized_response")
QUICK_SEEDS = range(3)
REQUIRED_CATCH_RATE = 0.99

CHECKS = {
    "randomized_response": (nb03.check_randomized_response, randomized_response),
    "debias_mean": (nb03.check_debias_mean, debias_mean),
    "rr_epsilon": (nb03.check_rr_epsilon, rr_epsilon),
    "laplace_mechanism": (nb04.check_laplace_mechanism, laplace_mechanism),
    "private_sum": (nb04.check_private_sum, private_sum),
    "private_mean": (nb04.check_private_mean, private_mean),
    "total_epsilon": (nb04.check_total_epsilon, total_epsilon),
    "gaussian_mechanism": (nb04.check_gaussian_mechanism, gaussian_mechanism),
    "empirical_epsilon": (nb04.check_empirical_epsilon, empirical_epsilon),
}

WRONG_ANSWERS = {
    wrong.rr_probabilities_swapped: "randomized_response",
    wrong.rr_one_coin_for_database: "randomized_response",
    wrong.rr_one_decision_for_database: "randomized_response",
    wrong.rr_flips_instead_of_coin: "randomized_response",
    wrong.rr_no_noise: "randomized_response",
    wrong.debias_only_for_half: "debias_mean",
    wrong.debias_forgets_offset: "debias_mean",
    wrong.rr_epsilon_wrong_ratio: "rr_epsilon",
    wrong.rr_epsilon_half_missing: "rr_epsilon",
    wrong.laplace_scale_inverted: "laplace_mechanism",
    wrong.laplace_shared_noise: "laplace_mechanism",
    wrong.laplace_truncated_noise: "laplace_mechanism",
    wrong.laplace_with_gaussian_noise: "laplace_mechanism",
    wrong.laplace_reseeds: "laplace_mechanism",
    wrong.private_sum_scale_inverted: "private_sum",
    wrong.private_sum_no_noise: "private_sum",
    wrong.private_mean_sum_sensitivity: "private_mean",
    wrong.private_mean_noisy_sum_not_divided: "private_mean",
    wrong.total_epsilon_max: "total_epsilon",
    wrong.gaussian_sigma_missing_sqrt: "gaussian_mechanism",
    wrong.gaussian_no_epsilon_check: "gaussian_mechanism",
    wrong.empirical_epsilon_unnormalised: "empirical_epsilon",
    wrong.empirical_epsilon_ignores_min_count: "empirical_epsilon",
}


(
    test_reference_passes_quick,
    test_reference_passes_every_check_for_200_seeds,
    test_wrong_answer_fails_quick,
    test_wrong_answer_caught_in_99_percent_of_seeds,
) = seed_sweeps(CHECKS, WRONG_ANSWERS, QUICK_SEEDS, REFERENCE_SEEDS, WRONG_ANSWER_SEEDS, REQUIRED_CATCH_RATE)


def test_messages_name_the_mistake():
    cases = [
        (nb04.check_private_mean, wrong.private_mean_sum_sensitivity, "standard deviation"),
        (nb04.check_laplace_mechanism, wrong.laplace_shared_noise, "same noise"),
        (nb04.check_laplace_mechanism, wrong.laplace_truncated_noise, "whole number"),
        (nb04.check_laplace_mechanism, wrong.laplace_reseeds, "same noise on two calls"),
        (nb04.check_private_sum, wrong.private_sum_no_noise, "no noise was added"),
        (nb04.check_gaussian_mechanism, wrong.gaussian_no_epsilon_check, "ValueError"),
        (nb03.check_randomized_response, wrong.rr_probabilities_swapped, "all-True database"),
        (nb03.check_debias_mean, wrong.debias_only_for_half, "every p_noise"),
    ]
    for check, wrong_answer, phrase in cases:
        assert_fails_with_a_clean_message(check, wrong_answer, [0], phrase)


def test_private_mean_message_reports_both_standard_deviations():
    message = failure_message(nb04.check_private_mean, wrong.private_mean_sum_sensitivity, seed=0)
    assert "for n=1000, epsilon=1" in message
    assert "expected about 0.0014" in message


def test_a_crashing_answer_is_reported_not_raised():
    def crashes(value, sensitivity, epsilon):
        raise RuntimeError("boom")

    message = failure_message(nb04.check_laplace_mechanism, crashes, seed=0)
    assert "RuntimeError" in message and "boom" in message


# --- calibration of the statistical helpers -------------------------------------------------------------


def test_alpha_per_test_splits_the_budget():
    assert stats.alpha_per_test(1) == stats.FALSE_FAILURE_PER_CHECK
    assert stats.alpha_per_test(4) == pytest.approx(stats.FALSE_FAILURE_PER_CHECK / 4)
    with pytest.raises(ValueError):
        stats.alpha_per_test(0)


def _rejection_count(test, trials: int) -> int:
    rejected = 0
    for trial in range(trials):
        try:
            test(np.random.default_rng(trial))
        except GradingFailure:
            rejected += 1
    return rejected


def test_ks_helper_rejects_correct_noise_at_its_nominal_rate():
    """At alpha = 0.05 a valid p-value rejects ~5% of correct samples; 400 trials keep the count in [6, 40]
    except with probability below 1e-4 (binomial(400, 0.05) has mean 20 and standard deviation 4.4)."""

    def test(rng):
        stats.require_noise_distribution(rng.laplace(0, 2.0, 300), "laplace", 2.0, 0.05, "noise", "", "")

    assert 6 <= _rejection_count(test, 400) <= 40


def test_binomial_helper_rejects_correct_counts_at_most_at_its_nominal_rate():
    """The exact binomial test is conservative: at alpha = 0.05 it rejects at most ~5% (count <= 40 of 400)."""

    def test(rng):
        stats.require_binomial(int(rng.binomial(500, 0.3)), 500, 0.3, 0.05, "rate", "")

    assert _rejection_count(test, 400) <= 40


def test_noise_distribution_helper_messages():
    rng = np.random.default_rng(0)
    with pytest.raises(GradingFailure, match="standard deviation 0.7"):
        stats.require_noise_distribution(rng.laplace(0, 0.5, 1000), "laplace", 0.001, 1e-6, "noise", "here", "")
    with pytest.raises(GradingFailure, match="whole number"):
        stats.require_noise_distribution(np.round(rng.laplace(0, 3, 1000)), "laplace", 3, 1e-6, "noise", "", "")
    with pytest.raises(GradingFailure, match="infinite or NaN"):
        stats.require_noise_distribution(np.array([0.5, np.inf]), "gaussian", 1, 1e-6, "noise", "", "")
    with pytest.raises(ValueError):
        stats.require_noise_distribution(np.zeros(10_001), "gaussian", 1, 1e-6, "noise", "", "")


def test_independence_helper_catches_partly_shared_noise():
    rng = np.random.default_rng(0)
    stats.require_noise_independent_per_element(rng.laplace(0, 1, 2000), 1e-6, "noise")
    shared_by_pairs = np.repeat(rng.laplace(0, 1, 1000), 2)
    with pytest.raises(GradingFailure, match="neighbouring elements"):
        stats.require_noise_independent_per_element(shared_by_pairs, 1e-6, "noise")
    shared_by_halves = np.tile(rng.laplace(0, 1, 1000), 2)
    with pytest.raises(GradingFailure, match="distant elements"):
        stats.require_noise_independent_per_element(shared_by_halves, 1e-6, "noise")
    with pytest.raises(GradingFailure, match="exactly the same noise"):
        stats.require_noise_independent_per_element(torch.full((100,), 0.3).numpy(), 1e-6, "noise")
