"""The hidden-test checks of notebook 05 pass correct answers and catch typical wrong answers.

Both halves of the grading contract (spec section 4): (a) the reference, and correct answers written
differently, pass every check (the reference for 200 seeds); (b) each wrong answer in
`course.grading.wrong_answers.nb05` is caught in at least 99% of 100 seeds. The measured rates are printed
(run pytest with -s to see them). The full sweeps are marked slow; a few seeds run in the fast suite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from grading_harness import (
    assert_fails_with_a_clean_message,
    failure_message,
    reference_failures,
    seed_sweeps,
    student_seeds,
)

from course.grading import nb05
from course.grading.wrong_answers import nb05 as wrong
from course.lib import pate, pate_analysis

REFERENCE_SEEDS = student_seeds(200, "05_pate")  # as the grader derives them
WRONG_ANSWER_SEEDS = student_seeds(100, "05_pate")
QUICK_SEEDS = range(3)
REQUIRED_CATCH_RATE = 0.99

CHECKS = {
    "partition_indices": (nb05.check_partition_indices, pate.partition_indices),
    "vote_counts": (nb05.check_vote_counts, pate.vote_counts),
    "laplace_noisy_max": (nb05.check_laplace_noisy_max, pate.laplace_noisy_max),
    "gaussian_noisy_max": (nb05.check_gaussian_noisy_max, pate.gaussian_noisy_max),
    "pate_epsilon_data_independent": (
        nb05.check_pate_epsilon_data_independent,
        pate_analysis.pate_epsilon_data_independent,
    ),
    "gnmax_epsilon": (nb05.check_gnmax_epsilon, pate_analysis.gnmax_epsilon),
}

WRONG_ANSWERS = {
    wrong.partition_overlapping: "partition_indices",
    wrong.partition_drops_remainder: "partition_indices",
    wrong.partition_range_from_one: "partition_indices",
    wrong.partition_drops_first_of_permutation: "partition_indices",
    wrong.partition_ignores_seed: "partition_indices",
    wrong.vote_counts_reshaped: "vote_counts",
    wrong.vote_counts_no_minlength: "vote_counts",
    wrong.vote_counts_per_teacher: "vote_counts",
    wrong.laplace_noise_truncated: "laplace_noisy_max",
    wrong.laplace_scale_gamma: "laplace_noisy_max",
    wrong.laplace_scale_two_over_gamma: "laplace_noisy_max",
    wrong.laplace_no_noise: "laplace_noisy_max",
    wrong.laplace_one_noise_per_query: "laplace_noisy_max",
    wrong.gaussian_scale_sigma_squared: "gaussian_noisy_max",
    wrong.gaussian_noise_truncated: "gaussian_noisy_max",
    wrong.gaussian_scale_sqrt_sigma: "gaussian_noisy_max",
    wrong.pate_epsilon_pure_term_gamma: "pate_epsilon_data_independent",
    wrong.pate_epsilon_epsilon_is_gamma: "pate_epsilon_data_independent",
    wrong.pate_epsilon_double_counted: "pate_epsilon_data_independent",
    wrong.pate_epsilon_moments_off_by_one: "pate_epsilon_data_independent",
    wrong.gnmax_epsilon_half_rdp: "gnmax_epsilon",
    wrong.gnmax_epsilon_log_delta_over_order: "gnmax_epsilon",
    wrong.gnmax_epsilon_sigma_not_squared: "gnmax_epsilon",
    wrong.gnmax_epsilon_coarse_default: "gnmax_epsilon",
}


# ---- correct answers written differently from the reference -----------------------------------------------


def partition_torch(num_examples, num_teachers, seed=0):
    """torch.randperm with a seeded generator; a list of int64 tensors."""
    permutation = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed))
    return list(torch.tensor_split(permutation, num_teachers))


def partition_round_robin(num_examples, num_teachers, seed=0):
    """Deals a seeded permutation out like cards: teacher t gets positions t, t + T, t + 2T, ..."""
    permutation = np.random.RandomState(seed).permutation(num_examples)
    return [permutation[teacher::num_teachers] for teacher in range(num_teachers)]


def vote_counts_loop(teacher_preds, num_classes):
    """Two nested loops over queries and teachers."""
    num_teachers, num_queries = teacher_preds.shape
    counts = np.zeros((num_queries, num_classes), dtype=int)
    for query in range(num_queries):
        for teacher in range(num_teachers):
            counts[query, teacher_preds[teacher, query]] += 1
    return counts


def vote_counts_one_hot(teacher_preds, num_classes):
    """One-hot votes summed over teachers, as a float torch tensor."""
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(teacher_preds), num_classes)
    return one_hot.sum(dim=0).float()


def laplace_loop_global_generator(counts, gamma, rng=None):
    """Row by row with np.random (ignores rng); returns a list."""
    labels = []
    for row in counts:
        labels.append(int(np.argmax(row.astype(float) + np.random.laplace(0, 1 / gamma, len(row)))))
    return labels


def laplace_torch(counts, gamma, rng=None):
    """torch.distributions.Laplace; returns a tensor."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    noise = torch.distributions.Laplace(0.0, 1.0 / gamma).sample(counts.shape)
    return torch.argmax(counts + noise, dim=1)


def gaussian_standard_normal_scaled(counts, sigma, rng=None):
    """standard_normal times sigma from the given generator."""
    return np.argmax(counts + sigma * rng.standard_normal(np.shape(counts)), axis=1)


def pate_epsilon_vectorised(num_queries, gamma, delta, moments=8):
    """numpy over all moments at once."""
    moment = np.arange(1, moments + 1)
    alpha = np.minimum(2 * gamma**2 * moment * (moment + 1), 2 * gamma * moment)
    return np.min((num_queries * alpha - np.log(delta)) / moment)


def gnmax_epsilon_loop(num_queries, sigma, delta, orders=None):
    """A loop over orders, with a default of integer and fractional orders up to 512."""
    if orders is None:
        orders = [1 + x / 10 for x in range(1, 100)] + list(range(11, 513))
    return min(num_queries * order / sigma**2 + math.log(1 / delta) / (order - 1) for order in orders)


def gnmax_epsilon_list_orders(num_queries, sigma, delta, orders=None):
    """Expects a list: `if not orders` is ambiguous for a NumPy array."""
    if not orders:
        orders = [1.5, 1.75] + list(range(2, 257))
    candidates = [num_queries * order / sigma**2 + math.log(1 / delta) / (order - 1) for order in orders]
    return min(candidates)


CORRECT_ALTERNATIVES = {
    partition_torch: "partition_indices",
    partition_round_robin: "partition_indices",
    vote_counts_loop: "vote_counts",
    vote_counts_one_hot: "vote_counts",
    laplace_loop_global_generator: "laplace_noisy_max",
    laplace_torch: "laplace_noisy_max",
    gaussian_standard_normal_scaled: "gaussian_noisy_max",
    pate_epsilon_vectorised: "pate_epsilon_data_independent",
    gnmax_epsilon_loop: "gnmax_epsilon",
    gnmax_epsilon_list_orders: "gnmax_epsilon",
}


(
    test_reference_passes_quick,
    test_reference_passes_every_check_for_200_seeds,
    test_wrong_answer_fails_quick,
    test_wrong_answer_caught_in_99_percent_of_seeds,
) = seed_sweeps(CHECKS, WRONG_ANSWERS, QUICK_SEEDS, REFERENCE_SEEDS, WRONG_ANSWER_SEEDS, REQUIRED_CATCH_RATE)


@pytest.mark.parametrize("correct", CORRECT_ALTERNATIVES, ids=lambda function: function.__name__)
def test_correct_alternatives_pass(correct):
    check, _ = CHECKS[CORRECT_ALTERNATIVES[correct]]
    assert not reference_failures(check, correct, range(5))


@pytest.mark.parametrize(
    "check, wrong_answer, phrase",
    [
        (nb05.check_partition_indices, wrong.partition_overlapping, "more than one partition"),
        (nb05.check_partition_indices, wrong.partition_drops_remainder, "remainder"),
        (nb05.check_partition_indices, wrong.partition_range_from_one, "example 0"),
        (nb05.check_partition_indices, wrong.partition_ignores_seed, "same seed"),
        (nb05.check_vote_counts, wrong.vote_counts_reshaped, "transpose"),
        (nb05.check_laplace_noisy_max, wrong.laplace_noise_truncated, "integer count array"),
        (nb05.check_laplace_noisy_max, wrong.laplace_scale_gamma, "1/gamma"),
        (nb05.check_laplace_noisy_max, wrong.laplace_no_noise, "tie"),
        (nb05.check_gaussian_noisy_max, wrong.gaussian_scale_sigma_squared, "sigma**2"),
        (nb05.check_pate_epsilon_data_independent, wrong.pate_epsilon_pure_term_gamma, "2 gamma l"),
        (nb05.check_gnmax_epsilon, wrong.gnmax_epsilon_coarse_default, "default"),
    ],
)
def test_messages_name_the_mistake(check, wrong_answer, phrase):
    assert_fails_with_a_clean_message(check, wrong_answer, [0], phrase)


def test_student_exceptions_become_grading_failures():
    def broken(*args, **kwargs):
        raise IndexError("list index out of range")

    for check, _ in CHECKS.values():
        message = failure_message(check, broken, seed=0)
        assert "IndexError" in message


def test_input_mutation_is_reported():
    def adds_noise_in_place(counts, gamma, rng=None):
        counts = np.asarray(counts)
        counts += 1  # integer-safe, but changes the caller's array
        return np.argmax(counts + rng.laplace(0, 1 / gamma, counts.shape), axis=1)

    message = failure_message(nb05.check_laplace_noisy_max, adds_noise_in_place, seed=0)
    assert "modified the counts" in message


def test_exact_probabilities_used_by_the_checks_sum_to_one():
    # a probability vector that lost mass would make every binomial test of its histogram miscalibrated
    for aggregator in (nb05._LAPLACE, nb05._GAUSSIAN):
        for counts, value in aggregator.histograms:
            probabilities = nb05._exact_probabilities(aggregator, counts, value)
            assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
