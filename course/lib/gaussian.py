"""The Gaussian mechanism with the classic calibration (notebook 04).

(epsilon, delta)-DP as defined in `course.lib.laplace` (Dwork & Roth 2014, definition 2.4), under the caller's
neighbour notion: the noise is calibrated to the query's L2 sensitivity under that notion.
"""

from __future__ import annotations

import math

import torch

from course.lib.noise import NoiseSampler, add_noise
from course.lib.validators import check_delta, check_epsilon


def _gaussian_sampler(sigma: float, generator: torch.Generator | None) -> NoiseSampler:
    """A sampler of N(0, sigma^2) noise in float64."""

    def sample(shape: tuple[int, ...]) -> torch.Tensor:
        return sigma * torch.randn(shape, dtype=torch.float64, generator=generator)

    return sample


def gaussian_sigma(l2_sensitivity: float, epsilon: float, delta: float) -> float:
    """The classic Gaussian-mechanism noise level `l2_sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon`.

    Dwork & Roth (2014), theorem A.1: (epsilon, delta)-DP for 0 < epsilon < 1; the proof does not cover
    epsilon >= 1, so it is refused with a ValueError.
    """
    l2_sensitivity = check_epsilon(l2_sensitivity, "l2_sensitivity")
    epsilon = check_epsilon(epsilon)
    if epsilon >= 1:
        raise ValueError(f"epsilon must be < 1 for the classic Gaussian calibration, got {epsilon!r}")
    delta = check_delta(delta)
    return l2_sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def gaussian_mechanism(
    value, l2_sensitivity: float, epsilon: float, delta: float, generator: torch.Generator | None = None
):
    """Release `value` with N(0, sigma^2) noise per element, sigma from `gaussian_sigma`: (epsilon, delta)-DP.

    Args:
        value: a number, or a tensor of any shape (independent noise per element; the sensitivity is the L2
            sensitivity of the whole tensor).
        l2_sensitivity: L2 sensitivity of the query, > 0, under the caller's neighbour notion.
        epsilon: in (0, 1).
        delta: in (0, 1); it should be far below 1/n.
        generator: optional `torch.Generator`.

    Returns:
        A float for a number; a new floating-point tensor of the same shape for a tensor.
    """
    sigma = gaussian_sigma(l2_sensitivity, epsilon, delta)
    return add_noise(value, _gaussian_sampler(sigma, generator))
