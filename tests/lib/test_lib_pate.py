"""Unit tests of the PATE aggregation reference, `course.lib.pate`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from course.lib.pate import (
    gaussian_noisy_max,
    gaussian_noisy_max_probabilities,
    laplace_noisy_max,
    laplace_noisy_max_probabilities,
    partition_indices,
    vote_counts,
)
from course.shown.pate_accounting import confident_gnmax

# Significance level of the distribution tests below: they run on fixed seeds, so a pass is reproducible,
# and a correct implementation would fail one with probability below this.
ALPHA = 1e-6


def _two_sample_p_value(labels_a, labels_b, num_classes):
    """Chi-square test that two label samples come from the same distribution over `num_classes` classes."""
    table = np.array([np.bincount(labels_a, minlength=num_classes), np.bincount(labels_b, minlength=num_classes)])
    table = table[:, table.sum(axis=0) > 0]
    return stats.chi2_contingency(table).pvalue


def _goodness_of_fit_p_value(labels, probabilities):
    observed = np.bincount(labels, minlength=len(probabilities))
    return stats.chisquare(observed, probabilities * len(labels)).pvalue


# --- partition_indices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_examples, num_teachers", [(10, 3), (1, 1), (7, 7), (60_000, 250), (1001, 10)])
def test_partition_is_disjoint_covering_and_balanced(num_examples, num_teachers):
    parts = partition_indices(num_examples, num_teachers, seed=3)
    assert len(parts) == num_teachers
    assert all(part.ndim == 1 and np.issubdtype(part.dtype, np.integer) for part in parts)
    together = np.concatenate(parts)
    assert together.size == num_examples  # no index used twice ...
    assert np.array_equal(np.sort(together), np.arange(num_examples))  # ... and none left out
    assert 0 in together
    sizes = [part.size for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_partition_is_reproducible_and_depends_on_the_seed():
    first = partition_indices(100, 4, seed=7)
    again = partition_indices(100, 4, seed=7)
    other = partition_indices(100, 4, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_partition_is_shuffled():
    # a random permutation: teacher 0 does not simply get the first examples
    assert not np.array_equal(np.sort(partition_indices(1000, 10, seed=0)[0]), np.arange(100))


def test_example_zero_lands_with_every_teacher_for_some_seed():
    owners = {next(t for t, part in enumerate(partition_indices(20, 4, seed=seed)) if 0 in part) for seed in range(200)}
    assert owners == {0, 1, 2, 3}


@pytest.mark.parametrize("args", [(0, 1), (5, 0), (3, 4), (10, 2, -1), (10, 2, 1.5), (10.0, 2), (True, 1)])
def test_partition_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        partition_indices(*args)


# --- vote_counts ---------------------------------------------------------------------------------------------


def _vote_counts_loop(teacher_preds, num_classes):
    num_teachers, num_queries = teacher_preds.shape
    counts = np.zeros((num_queries, num_classes), dtype=np.int64)
    for query in range(num_queries):
        for teacher in range(num_teachers):
            counts[query, teacher_preds[teacher, query]] += 1
    return counts


@pytest.mark.parametrize("num_teachers, num_queries, num_classes", [(250, 40, 10), (3, 7, 5), (1, 1, 2), (6, 6, 3)])
def test_vote_counts_matches_a_loop(num_teachers, num_queries, num_classes):
    preds = np.random.default_rng(0).integers(0, num_classes, (num_teachers, num_queries))
    counts = vote_counts(preds, num_classes)
    assert counts.shape == (num_queries, num_classes)
    assert np.issubdtype(counts.dtype, np.integer)
    assert np.array_equal(counts, _vote_counts_loop(preds, num_classes))
    assert np.all(counts.sum(axis=1) == num_teachers)


def test_vote_counts_keeps_columns_for_classes_nobody_chose():
    counts = vote_counts(np.zeros((4, 3), dtype=int), num_classes=10)
    assert counts.shape == (3, 10)
    assert np.array_equal(counts[:, 0], [4, 4, 4]) and not counts[:, 1:].any()


def test_reshaped_votes_differ_from_transposed_votes():
    # teacher t votes t on every query: each query sees each class once
    num_teachers, num_queries = 4, 6
    preds = np.repeat(np.arange(num_teachers)[:, None], num_queries, axis=1)
    counts = vote_counts(preds, num_teachers)
    assert np.array_equal(counts, np.ones((num_queries, num_teachers)))
    # reading the same memory as (num_queries, num_teachers) scrambles the votes
    scrambled = vote_counts(preds.reshape(num_queries, num_teachers).T, num_teachers)
    assert not np.array_equal(scrambled, counts)
    assert np.array_equal(vote_counts(preds.T.T, num_teachers), counts)


def test_vote_counts_accepts_integer_valued_floats():
    preds = np.array([[0.0, 1.0], [1.0, 1.0]])
    assert np.array_equal(vote_counts(preds, 2), [[1, 1], [0, 2]])


@pytest.mark.parametrize(
    "preds, num_classes",
    [
        (np.array([0, 1, 2]), 3),  # 1-D
        (np.array([[0, 3]]), 3),  # label out of range
        (np.array([[0, -1]]), 3),  # negative label
        (np.array([[0.5, 1.0]]), 3),  # not a label
        (np.array([[0, 1]]), 0),  # no classes
    ],
)
def test_vote_counts_rejects_bad_arguments(preds, num_classes):
    with pytest.raises(ValueError):
        vote_counts(preds, num_classes)


# --- laplace_noisy_max and gaussian_noisy_max -----------------------------------------------------------------

AGGREGATORS = [
    (laplace_noisy_max, 1000.0, laplace_noisy_max_probabilities),
    (gaussian_noisy_max, 1e-3, gaussian_noisy_max_probabilities),
]


@pytest.mark.parametrize("aggregator, precise, _", AGGREGATORS)
def test_tiny_noise_returns_the_argmax(aggregator, precise, _):
    rng = np.random.default_rng(1)
    counts = rng.multinomial(250, np.full(10, 0.1), size=500)
    unique = np.sum(counts == counts.max(axis=1, keepdims=True), axis=1) == 1
    labels = aggregator(counts[unique], precise, rng)
    assert labels.shape == (unique.sum(),)
    assert np.array_equal(labels, np.argmax(counts[unique], axis=1))


@pytest.mark.parametrize("aggregator, precise, _", AGGREGATORS)
def test_ties_are_broken_at_random_even_for_integer_counts(aggregator, precise, _):
    # integer counts, tiny noise: truncated noise would favour the first tied class (or a class one behind)
    counts = np.tile(np.array([3, 7, 6, 7], dtype=np.int64), (4000, 1))
    original = counts.copy()
    labels = aggregator(counts, precise, np.random.default_rng(2))
    assert np.array_equal(counts, original)  # the input is left alone
    assert set(np.unique(labels)) == {1, 3}
    assert stats.binomtest(int(np.sum(labels == 1)), labels.size, 0.5).pvalue > ALPHA


def test_laplace_noisy_max_matches_direct_simulation():
    counts = np.array([10, 9, 8, 3, 0])
    gamma = 0.5
    reference = laplace_noisy_max(np.tile(counts, (20_000, 1)), gamma, np.random.default_rng(3))
    direct_rng = np.random.default_rng(4)
    direct = np.array([np.argmax(counts + direct_rng.laplace(0.0, 1 / gamma, counts.size)) for _ in range(20_000)])
    assert _two_sample_p_value(reference, direct, counts.size) > ALPHA
    # and the distribution test has power: scale gamma instead of 1/gamma is rejected
    wrong = np.argmax(np.tile(counts, (20_000, 1)) + direct_rng.laplace(0.0, gamma, (20_000, counts.size)), axis=1)
    assert _two_sample_p_value(reference, wrong, counts.size) < ALPHA


@pytest.mark.parametrize(
    "aggregator, value, probabilities",
    [
        (laplace_noisy_max, 0.5, laplace_noisy_max_probabilities),
        (laplace_noisy_max, 2.0, laplace_noisy_max_probabilities),
        (gaussian_noisy_max, 3.0, gaussian_noisy_max_probabilities),
        (gaussian_noisy_max, 0.7, gaussian_noisy_max_probabilities),
    ],
)
def test_noisy_max_follows_its_exact_distribution(aggregator, value, probabilities):
    counts = np.array([10, 9, 8, 3, 0])
    labels = aggregator(np.tile(counts, (20_000, 1)), value, np.random.default_rng(5))
    exact = probabilities(counts, value)
    assert _goodness_of_fit_p_value(labels, exact) > ALPHA


def test_gnmax_noise_scale_is_sigma_not_its_square():
    counts = np.array([10, 9, 8, 3, 0])
    labels = gaussian_noisy_max(np.tile(counts, (20_000, 1)), 3.0, np.random.default_rng(6))
    assert _goodness_of_fit_p_value(labels, gaussian_noisy_max_probabilities(counts, 3.0)) > ALPHA
    assert _goodness_of_fit_p_value(labels, gaussian_noisy_max_probabilities(counts, 9.0)) < ALPHA


@pytest.mark.parametrize("aggregator, value", [(laplace_noisy_max, 0.3), (gaussian_noisy_max, 2.0)])
def test_noisy_max_is_reproducible_with_a_generator_and_with_the_global_seed(aggregator, value):
    counts = np.random.default_rng(7).integers(0, 20, (50, 10))
    first = aggregator(counts, value, np.random.default_rng(8))
    assert np.array_equal(first, aggregator(counts, value, np.random.default_rng(8)))
    np.random.seed(9)
    global_first = aggregator(counts, value)
    np.random.seed(9)
    assert np.array_equal(global_first, aggregator(counts, value))
    assert not np.array_equal(global_first, aggregator(counts, value))


@pytest.mark.parametrize(
    "counts, value", [(np.array([[1, 2]]), 4.0), (np.array([[5, 5, 4]]), 1.0), (np.array([[0, 3, 1, 2]]), 0.4)]
)
def test_exact_probabilities_sum_to_one_and_respect_symmetry(counts, value):
    for probabilities in (laplace_noisy_max_probabilities, gaussian_noisy_max_probabilities):
        exact = probabilities(counts[0], value)
        assert exact.sum() == pytest.approx(1.0, abs=1e-9)
        for a in range(counts.shape[1]):
            for b in range(counts.shape[1]):
                if counts[0, a] == counts[0, b]:
                    assert exact[a] == pytest.approx(exact[b], abs=1e-9)
                elif counts[0, a] > counts[0, b]:
                    assert exact[a] > exact[b]


def test_two_class_laplace_probability_has_the_closed_form():
    # P(L1 - L2 >= gap) = (2 + gamma gap) / (4 exp(gamma gap)) for independent Laplace(0, 1/gamma)
    gamma, gap = 0.7, 3
    exact = laplace_noisy_max_probabilities(np.array([gap, 0]), gamma)
    assert exact[1] == pytest.approx((2 + gamma * gap) / (4 * np.exp(gamma * gap)), rel=1e-8)


@pytest.mark.parametrize("aggregator", [laplace_noisy_max, gaussian_noisy_max])
@pytest.mark.parametrize(
    "counts, value, rng",
    [
        (np.array([1, 2, 3]), 1.0, None),  # 1-D counts
        (np.array([[1, -2, 3]]), 1.0, None),  # negative count
        (np.array([[1, np.nan]]), 1.0, None),
        (np.array([[1, 2]]), 0.0, None),
        (np.array([[1, 2]]), -1.0, None),
        (np.array([[1, 2]]), float("inf"), None),
        (np.array([[1, 2]]), 1.0, 42),  # an int is not a numpy Generator
    ],
)
def test_noisy_max_rejects_bad_arguments(aggregator, counts, value, rng):
    with pytest.raises(ValueError):
        aggregator(counts, value, rng)


# --- confident_gnmax ---------------------------------------------------------------------------------------------


def test_confident_gnmax_answers_with_the_threshold_probability_and_then_like_gnmax():
    # max count 20, threshold 22, sigma1 2: step 1 passes with probability P(N(0, 4) >= 2) = 0.1587
    counts = np.tile([[20, 17, 3]], (20_000, 1))
    labels = confident_gnmax(counts, 22.0, 2.0, 3.0, np.random.default_rng(0))
    answered = labels >= 0
    assert set(np.unique(labels)) <= {-1, 0, 1, 2}
    assert stats.binomtest(int(answered.sum()), len(labels), stats.norm.sf(1.0)).pvalue > ALPHA
    # the answers follow GNMax's exact distribution with sigma2 (fresh noise, independent of step 1)
    probabilities = gaussian_noisy_max_probabilities(np.array([20, 17, 3]), 3.0)
    assert _goodness_of_fit_p_value(labels[answered], probabilities) > ALPHA


def test_confident_gnmax_with_tiny_noise_is_a_sharp_threshold():
    counts = np.array([[9, 1, 0], [5, 5, 0], [3, 2, 5], [10, 0, 0]])
    labels = confident_gnmax(counts, 6.0, 1e-6, 1e-6, np.random.default_rng(1))
    assert labels.tolist() == [0, -1, -1, 0]
    assert np.array_equal(counts, [[9, 1, 0], [5, 5, 0], [3, 2, 5], [10, 0, 0]])  # counts untouched
    np.random.seed(3)
    first = confident_gnmax(counts, 6.0, 1.0, 1.0)
    np.random.seed(3)
    assert np.array_equal(first, confident_gnmax(counts, 6.0, 1.0, 1.0))  # the global generator when rng is None


@pytest.mark.parametrize(
    "args",
    [
        (np.array([[1, 2]]), np.nan, 1.0, 1.0),
        (np.array([[1, 2]]), 1.0, 0.0, 1.0),
        (np.array([[1, 2]]), 1.0, 1.0, -1.0),
        (np.array([1, 2]), 1.0, 1.0, 1.0),
    ],
)
def test_confident_gnmax_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        confident_gnmax(*args)
