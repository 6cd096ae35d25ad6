"""Realistic wrong answers to notebooks 03 and 04, with the student signatures (global generators only).

`test_grading_03_04.py` checks that the hidden-test checks catch each of them. Every function here has a
deliberate bug, named in its docstring; none of them is course material.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _laplace(scale: float, shape=()) -> torch.Tensor:
    """Correct Laplace(0, scale) draws (a difference of two exponentials: faster than torch.distributions)."""
    return scale * (torch.empty(shape).exponential_() - torch.empty(shape).exponential_())


# --- notebook 03: randomized response ---------------------------------------------------------------------


def rr_probabilities_swapped(db, p_noise=0.5):
    """Bug: tells the truth with probability p_noise and tosses the coin with probability 1 - p_noise."""
    honest = torch.rand(db.shape) < p_noise
    coin = torch.rand(db.shape) < 0.5
    return torch.where(honest, db.bool(), coin)


def rr_one_coin_for_database(db, p_noise=0.5):
    """Bug: one fair coin is tossed and every noisy row reports that same coin."""
    honest = torch.rand(db.shape) >= p_noise
    coin = bool(torch.rand(()) < 0.5)
    return torch.where(honest, db.bool(), torch.full(db.shape, coin))


def rr_one_decision_for_database(db, p_noise=0.5):
    """Bug: decides once, for the whole database, whether to tell the truth."""
    if torch.rand(()) < p_noise:
        return torch.rand(db.shape) < 0.5
    return db.bool().clone()


def rr_flips_instead_of_coin(db, p_noise=0.5):
    """Bug: with probability p_noise the row is flipped, instead of being replaced by a fair coin."""
    flip = torch.rand(db.shape) < p_noise
    return (db.bool() ^ flip).to(db.dtype)


def rr_no_noise(db, p_noise=0.5):
    """Bug: reports the database unchanged."""
    return db.bool().clone()


def debias_only_for_half(noisy_mean, p_noise=0.5):
    """Bug: the notebook's p_noise = 0.5 formula, 2 * noisy_mean - 0.5, used for every p_noise."""
    return 2 * noisy_mean - 0.5


def debias_forgets_offset(noisy_mean, p_noise=0.5):
    """Bug: rescales by 1 - p_noise but forgets to remove the coins' contribution p_noise / 2."""
    return noisy_mean / (1 - p_noise)


def rr_epsilon_wrong_ratio(p_noise):
    """Bug: uses the truth/noise probabilities (1 - p) / p instead of the two output probabilities."""
    return math.log((1 - p_noise) / p_noise)


def rr_epsilon_half_missing(p_noise):
    """Bug: forgets that the coin lands on the true value half of the time in the numerator."""
    return math.log((1 - p_noise) / (p_noise / 2))


# --- notebook 04: Laplace and Gaussian mechanisms ---------------------------------------------------------


def laplace_scale_inverted(value, sensitivity, epsilon):
    """Bug: scale epsilon / sensitivity instead of sensitivity / epsilon."""
    if torch.is_tensor(value):
        return value + _laplace(epsilon / sensitivity, value.shape)
    return value + float(_laplace(epsilon / sensitivity))


def laplace_shared_noise(value, sensitivity, epsilon):
    """Bug: one noise draw added to every element of a tensor."""
    return value + float(_laplace(sensitivity / epsilon))


def laplace_truncated_noise(value, sensitivity, epsilon):
    """Bug: the noise is cast to the value's dtype, so an integer tensor gets integer (truncated) noise."""
    if torch.is_tensor(value):
        return value + _laplace(sensitivity / epsilon, value.shape).to(value.dtype)
    return value + float(_laplace(sensitivity / epsilon))


def laplace_with_gaussian_noise(value, sensitivity, epsilon):
    """Bug: Gaussian noise with standard deviation sensitivity / epsilon instead of Laplace noise."""
    scale = sensitivity / epsilon
    if torch.is_tensor(value):
        return value + scale * torch.randn(value.shape)
    return value + scale * float(torch.randn(()))


def laplace_reseeds(value, sensitivity, epsilon):
    """Bug: reseeds the generator inside the function, so every call adds the same noise."""
    torch.manual_seed(0)
    if torch.is_tensor(value):
        return value + _laplace(sensitivity / epsilon, value.shape)
    return value + float(_laplace(sensitivity / epsilon))


def private_sum_scale_inverted(db, epsilon):
    """Bug: Laplace scale epsilon instead of 1 / epsilon."""
    return float(db.sum()) + float(_laplace(epsilon))


def private_sum_no_noise(db, epsilon):
    """Bug: releases the exact sum."""
    return float(db.sum())


def private_mean_sum_sensitivity(db, epsilon):
    """Bug: noise on the mean calibrated to the sum's sensitivity 1 instead of 1/n."""
    return float(db.float().mean()) + float(_laplace(1 / epsilon))


def private_mean_noisy_sum_not_divided(db, epsilon):
    """Bug: a correctly noised sum that is never divided by n."""
    return float(db.sum()) + float(_laplace(1 / epsilon))


def total_epsilon_max(epsilons):
    """Bug: takes the largest epsilon (parallel composition) instead of the sum."""
    return max(epsilons)


def gaussian_sigma_missing_sqrt(value, l2_sensitivity, epsilon, delta):
    """Bug: sigma = l2_sensitivity * 2 ln(1.25 / delta) / epsilon, without the square root."""
    if not 0 < epsilon < 1:
        raise ValueError("epsilon must be in (0, 1)")
    sigma = l2_sensitivity * 2 * math.log(1.25 / delta) / epsilon
    if torch.is_tensor(value):
        return value + sigma * torch.randn(value.shape)
    return value + sigma * float(torch.randn(()))


def gaussian_no_epsilon_check(value, l2_sensitivity, epsilon, delta):
    """Bug: correct noise, but accepts epsilon >= 1 (and <= 0) without complaint."""
    sigma = l2_sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    if torch.is_tensor(value):
        return value + sigma * torch.randn(value.shape)
    return value + sigma * float(torch.randn(()))


def empirical_epsilon_unnormalised(samples_x, samples_y, bins, min_count=20):
    """Bug: compares raw counts, forgetting to divide by each sample set's size."""
    counts_x, _ = np.histogram(samples_x, bins=bins)
    counts_y, _ = np.histogram(samples_y, bins=bins)
    both = (counts_x >= min_count) & (counts_y >= min_count)
    return float(np.abs(np.log(counts_x[both]) - np.log(counts_y[both])).max())


def empirical_epsilon_ignores_min_count(samples_x, samples_y, bins, min_count=20):
    """Bug: compares every bin where both counts are non-zero, whatever min_count says."""
    counts_x, _ = np.histogram(samples_x, bins=bins)
    counts_y, _ = np.histogram(samples_y, bins=bins)
    both = (counts_x > 0) & (counts_y > 0)
    ratios = np.log(counts_x[both] / len(samples_x)) - np.log(counts_y[both] / len(samples_y))
    return float(np.abs(ratios).max())
