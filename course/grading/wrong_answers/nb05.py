"""Realistic wrong answers to notebook 05 (PATE), with the student signatures.

`test_grading_05.py` checks that the hidden-test checks catch each of them. Every function here has a
deliberate bug, named in its docstring; none of them is course material. Several copy mistakes found in public
versions of this material (spec section 5).
"""

from __future__ import annotations

import math

import numpy as np


def _sampler(rng):
    return np.random if rng is None else rng


# --- partition_indices ---------------------------------------------------------------------------------------


def partition_overlapping(num_examples, num_teachers, seed=0):
    """Bug: every teacher draws its own random subset, so subsets overlap (and some examples go unused)."""
    rng = np.random.default_rng(seed)
    size = num_examples // num_teachers
    return [rng.choice(num_examples, size, replace=False) for _ in range(num_teachers)]


def partition_drops_remainder(num_examples, num_teachers, seed=0):
    """Bug: equal chunks of num_examples // num_teachers; the remainder is never used."""
    permutation = np.random.default_rng(seed).permutation(num_examples)
    size = num_examples // num_teachers
    return [permutation[teacher * size : (teacher + 1) * size] for teacher in range(num_teachers)]


def partition_range_from_one(num_examples, num_teachers, seed=0):
    """Bug: shuffles range(1, num_examples), so example 0 is never used."""
    permutation = np.random.default_rng(seed).permutation(np.arange(1, num_examples))
    return np.array_split(permutation, num_teachers)


def partition_drops_first_of_permutation(num_examples, num_teachers, seed=0):
    """Bug: permutation(n)[1:] loses one example (1-based thinking)."""
    permutation = np.random.default_rng(seed).permutation(num_examples)[1:]
    return np.array_split(permutation, num_teachers)


def partition_ignores_seed(num_examples, num_teachers, seed=0):
    """Bug: draws from the global generator, so the same seed gives different partitions."""
    return np.array_split(np.random.permutation(num_examples), num_teachers)


# --- vote_counts ---------------------------------------------------------------------------------------------


def vote_counts_reshaped(teacher_preds, num_classes):
    """Bug: reshapes (num_teachers, num_queries) to (num_queries, num_teachers) instead of transposing."""
    num_teachers, num_queries = teacher_preds.shape
    per_query = teacher_preds.reshape(num_queries, num_teachers)
    return np.array([np.bincount(votes, minlength=num_classes) for votes in per_query])


def vote_counts_no_minlength(teacher_preds, num_classes):
    """Bug: bincount without minlength: classes above the largest vote get no column."""
    votes = teacher_preds.T
    width = int(teacher_preds.max()) + 1
    return np.array([np.bincount(row, minlength=width)[:num_classes] for row in votes])


def vote_counts_per_teacher(teacher_preds, num_classes):
    """Bug: counts each teacher's votes over the queries: shape (num_teachers, num_classes)."""
    return np.array([np.bincount(row, minlength=num_classes) for row in teacher_preds])


# --- laplace_noisy_max ---------------------------------------------------------------------------------------


def laplace_noise_truncated(counts, gamma, rng=None):
    """Bug: noise written into the integer count array (as `counts[i] += np.random.laplace(...)` does), which
    truncates it; argmax then breaks ties towards the first class."""
    noisy = np.array(counts, copy=True)
    noisy[...] = noisy + _sampler(rng).laplace(0.0, 1.0 / gamma, size=noisy.shape)
    return np.argmax(noisy, axis=1)


def laplace_scale_gamma(counts, gamma, rng=None):
    """Bug: Laplace scale gamma instead of 1/gamma."""
    return np.argmax(counts + _sampler(rng).laplace(0.0, gamma, size=np.shape(counts)), axis=1)


def laplace_scale_two_over_gamma(counts, gamma, rng=None):
    """Bug: scale 2/gamma (the scale for a (gamma)-DP answer, not the PATE parametrisation)."""
    return np.argmax(counts + _sampler(rng).laplace(0.0, 2.0 / gamma, size=np.shape(counts)), axis=1)


def laplace_no_noise(counts, gamma, rng=None):
    """Bug: plain argmax, no noise at all."""
    return np.argmax(counts, axis=1)


def laplace_one_noise_per_query(counts, gamma, rng=None):
    """Bug: one noise value per query, shared by all classes, which cannot change the argmax."""
    counts = np.asarray(counts, dtype=float)
    return np.argmax(counts + _sampler(rng).laplace(0.0, 1.0 / gamma, size=(counts.shape[0], 1)), axis=1)


# --- gaussian_noisy_max --------------------------------------------------------------------------------------


def gaussian_scale_sigma_squared(counts, sigma, rng=None):
    """Bug: passes the variance sigma**2 as numpy's scale (the standard deviation)."""
    return np.argmax(counts + _sampler(rng).normal(0.0, sigma**2, size=np.shape(counts)), axis=1)


def gaussian_noise_truncated(counts, sigma, rng=None):
    """Bug: noise written into the integer count array, which truncates it."""
    noisy = np.array(counts, copy=True)
    noisy[...] = noisy + _sampler(rng).normal(0.0, sigma, size=noisy.shape)
    return np.argmax(noisy, axis=1)


def gaussian_scale_sqrt_sigma(counts, sigma, rng=None):
    """Bug: standard deviation sqrt(sigma), reading sigma as the variance."""
    return np.argmax(counts + _sampler(rng).normal(0.0, math.sqrt(sigma), size=np.shape(counts)), axis=1)


# --- pate_epsilon_data_independent ---------------------------------------------------------------------------


def _pate_epsilon(num_queries, delta, moments, alpha):
    return min((num_queries * alpha(l) + math.log(1 / delta)) / l for l in range(1, moments + 1))


def pate_epsilon_pure_term_gamma(num_queries, gamma, delta, moments=8):
    """Bug: the pure-DP term uses gamma l where the mechanism is (2 gamma)-DP: 2 gamma l."""
    return _pate_epsilon(num_queries, delta, moments, lambda l: min(2 * gamma**2 * l * (l + 1), gamma * l))


def pate_epsilon_epsilon_is_gamma(num_queries, gamma, delta, moments=8):
    """Bug: uses epsilon = gamma instead of 2 gamma in both terms: min(gamma^2 l (l+1) / 2, gamma l)."""
    return _pate_epsilon(num_queries, delta, moments, lambda l: min(0.5 * gamma**2 * l * (l + 1), gamma * l))


def pate_epsilon_double_counted(num_queries, gamma, delta, moments=8):
    """Bug: doubles gamma twice: epsilon = 4 gamma, so alpha(l) = min(8 gamma^2 l (l+1), 4 gamma l)."""
    return _pate_epsilon(num_queries, delta, moments, lambda l: min(8 * gamma**2 * l * (l + 1), 4 * gamma * l))


def pate_epsilon_moments_off_by_one(num_queries, gamma, delta, moments=8):
    """Bug: range(1, moments) leaves out the last moment."""
    return min(
        (num_queries * min(2 * gamma**2 * l * (l + 1), 2 * gamma * l) + math.log(1 / delta)) / l
        for l in range(1, moments)
    )


# --- gnmax_epsilon -------------------------------------------------------------------------------------------


def gnmax_epsilon_half_rdp(num_queries, sigma, delta, orders=None):
    """Bug: order / (2 sigma^2), the RDP of a sensitivity-1 Gaussian; a changed vote moves two counts."""
    orders = np.asarray(orders if orders is not None else np.arange(2, 100), dtype=float)
    return float(np.min(num_queries * orders / (2 * sigma**2) + math.log(1 / delta) / (orders - 1)))


def gnmax_epsilon_log_delta_over_order(num_queries, sigma, delta, orders=None):
    """Bug: divides ln(1/delta) by the order instead of order - 1."""
    orders = np.asarray(orders if orders is not None else np.arange(2, 100), dtype=float)
    return float(np.min(num_queries * orders / sigma**2 + math.log(1 / delta) / orders))


def gnmax_epsilon_sigma_not_squared(num_queries, sigma, delta, orders=None):
    """Bug: RDP order / sigma instead of order / sigma^2."""
    orders = np.asarray(orders if orders is not None else np.arange(2, 100), dtype=float)
    return float(np.min(num_queries * orders / sigma + math.log(1 / delta) / (orders - 1)))


def gnmax_epsilon_coarse_default(num_queries, sigma, delta, orders=None):
    """Bug: the default orders are only 2 and 3, far from the best order for typical settings."""
    orders = np.asarray(orders if orders is not None else [2.0, 3.0], dtype=float)
    return float(np.min(num_queries * orders / sigma**2 + math.log(1 / delta) / (orders - 1)))
