"""Global differential privacy: the Laplace mechanism and sequential composition (notebook 04).

The Gaussian mechanism is in `course.lib.gaussian`, the audit in `course.lib.audit`.

Definitions (Dwork & Roth 2014, "The Algorithmic Foundations of Differential Privacy", definition 2.4): a
mechanism M is (epsilon, delta)-DP when for all neighbouring databases x, y and every set of outputs S,
`P[M(x) in S] <= exp(epsilon) * P[M(y) in S] + delta`; delta = 0 is pure epsilon-DP.

Neighbour notion in this module: *replacement* (same size, one row changed, size public). Under it a sum of
0/1 rows has L1 sensitivity 1, a mean has sensitivity 1/n, and a histogram (one count per category, each row
in one category) has L1 sensitivity 2: the changed row leaves one bin and joins another. (DP-SGD through
Opacus, notebooks 06-07, is analysed under add/remove instead; group privacy turns an (epsilon, delta)
add/remove guarantee into (2 epsilon, (1 + e^epsilon) delta) under replacement.)

Laplace noise with scale b has density `exp(-|x| / b) / (2 b)`; the Laplace mechanism uses
`b = sensitivity / epsilon` (Dwork, McSherry, Nissim & Smith 2006, "Calibrating noise to sensitivity in private
data analysis", TCC).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from course.lib.noise import NoiseSampler, add_noise
from course.lib.validators import as_database, check_epsilon


def _laplace_sampler(scale: float, generator: torch.Generator | None) -> NoiseSampler:
    """A sampler of Laplace(0, scale) noise in float64.

    A Laplace variable is the difference of two independent Exponential(1) variables times the scale; unlike the
    inverse-CDF formula this never hits log(0), and `exponential_` accepts a generator.
    """

    def sample(shape: tuple[int, ...]) -> torch.Tensor:
        first = torch.empty(shape, dtype=torch.float64).exponential_(generator=generator)
        second = torch.empty(shape, dtype=torch.float64).exponential_(generator=generator)
        return scale * (first - second)

    return sample


def laplace_mechanism(value, sensitivity: float, epsilon: float, generator: torch.Generator | None = None):
    """Release `value` with Laplace(0, sensitivity / epsilon) noise: pure epsilon-DP.

    Args:
        value: a number, or a tensor of any shape (each element gets its own independent noise draw; the
            sensitivity is then the L1 sensitivity of the whole tensor).
        sensitivity: L1 sensitivity of the query that produced `value`, > 0, under the neighbour notion the
            caller states (notebook 04's mechanisms and PATE use replacement; DP-SGD in 06 uses add/remove).
        epsilon: privacy parameter, > 0.
        generator: optional `torch.Generator`; the global generator is used when absent.

    Returns:
        A float for a number; a new floating-point tensor of the same shape for a tensor.
    """
    sensitivity = check_epsilon(sensitivity, "sensitivity")
    epsilon = check_epsilon(epsilon)
    return add_noise(value, _laplace_sampler(sensitivity / epsilon, generator))


def private_sum(db, epsilon: float, generator: torch.Generator | None = None) -> float:
    """The number of True rows of `db` plus Laplace(0, 1 / epsilon) noise.

    Replacement neighbours (size public): changing one 0/1 row changes the sum by at most 1.

    Args:
        db: 1-D bool (or 0/1) tensor of shape `(num_rows,)`.
        epsilon: privacy parameter, > 0.
        generator: optional `torch.Generator`.

    Returns:
        The noisy count as a Python float (never rounded: rounding is allowed post-processing, not required).
    """
    db = as_database(db)
    epsilon = check_epsilon(epsilon)
    return laplace_mechanism(float(db.sum().item()), 1.0, epsilon, generator)


def private_mean(db, epsilon: float, generator: torch.Generator | None = None) -> float:
    """The fraction of True rows of `db` plus Laplace(0, 1 / (n * epsilon)) noise, n = number of rows.

    Replacement neighbours (size n public): changing one 0/1 row changes the mean by at most 1/n.

    Args:
        db: 1-D bool (or 0/1) tensor of shape `(n,)`.
        epsilon: privacy parameter, > 0.
        generator: optional `torch.Generator`.

    Returns:
        The noisy mean as a Python float.
    """
    db = as_database(db)
    epsilon = check_epsilon(epsilon)
    num_rows = db.shape[0]
    true_mean = float(db.sum().item()) / num_rows
    return laplace_mechanism(true_mean, 1.0 / num_rows, epsilon, generator)


def total_epsilon(epsilons: Iterable[float]) -> float:
    """Basic sequential composition: running epsilon_i-DP mechanisms on the same data is (sum epsilon_i)-DP.

    Dwork & Roth (2014), theorem 3.16. The neighbour notion is whatever the composed mechanisms share.

    Args:
        epsilons: an iterable (list, tuple, 1-D array or tensor) of epsilons, each > 0. An empty iterable
            means no release at all and costs 0.

    Returns:
        The total epsilon as a Python float.
    """
    if torch.is_tensor(epsilons) or isinstance(epsilons, np.ndarray):
        epsilons = epsilons.tolist()
    if isinstance(epsilons, (str, bytes)) or not isinstance(epsilons, Iterable):
        raise ValueError(f"epsilons must be an iterable of numbers, got {type(epsilons).__name__}")
    checked = [check_epsilon(epsilon, f"epsilons[{index}]") for index, epsilon in enumerate(epsilons)]
    return math.fsum(checked)
