"""Randomized response: local differential privacy for one yes/no answer per person (notebook 03).

Each person randomises their own row before anyone sees it (Warner, 1965, "Randomized response: a survey
technique for eliminating evasive answer bias", JASA 60(309)). With probability `1 - p_noise` a row is reported
truthfully; otherwise it is replaced by a fresh fair coin. The two-coin version of Dwork & Roth (2014, "The
Algorithmic Foundations of Differential Privacy", section 3.2) is `p_noise = 0.5` and gives epsilon = ln 3.

Neighbour notion: local DP compares two possible values of *one person's* row (replacement of that row), so the
epsilon below holds per person whatever the rest of the database holds.
"""

from __future__ import annotations

import math

import torch

from course.lib.validators import as_database, check_probability


def randomized_response(db, p_noise: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomise every row of `db` independently.

    Each row is kept with probability `1 - p_noise` and otherwise replaced by a fresh fair coin, so a true row
    is reported true with probability `1 - p_noise / 2` and a false row with probability `p_noise / 2`.

    Args:
        db: 1-D bool (or 0/1) tensor of shape `(num_rows,)`, one row per person; it is not modified.
        p_noise: probability in [0, 1) that a row is replaced by a coin. 0 reports the truth (no privacy);
            1 is refused because the output would carry no information and `debias_mean` could not invert it.
        generator: optional `torch.Generator`; the global generator is used when absent.

    Returns:
        A new tensor of shape `(num_rows,)` with the dtype of `db` (bool in, bool out; 0/1 float in, 0/1 float
        out).
    """
    db = as_database(db)
    p_noise = check_probability(p_noise, "p_noise", allow_one=False)
    num_rows = db.shape[0]
    # Two independent uniform draws per row: one decides honesty, the other is the coin.
    honest = torch.rand(num_rows, generator=generator, device=db.device) >= p_noise
    coin = torch.rand(num_rows, generator=generator, device=db.device) < 0.5
    reported = torch.where(honest, db.to(torch.bool), coin)
    return reported.to(db.dtype)


def debias_mean(noisy_mean, p_noise: float = 0.5) -> float:
    """Unbiased estimate of the true fraction of True rows from the mean of randomised rows.

    The randomised mean has expectation `(1 - p_noise) * true_mean + p_noise / 2`; solving for the true mean
    gives `(noisy_mean - p_noise / 2) / (1 - p_noise)`. The estimate is unbiased, not clipped, so on a small
    database it can fall slightly outside [0, 1].

    Args:
        noisy_mean: the mean of `randomized_response(db, p_noise)`, a number (or one-element tensor) in [0, 1].
        p_noise: the same probability in [0, 1) that produced the randomised rows.

    Returns:
        The estimate as a Python float.
    """
    if torch.is_tensor(noisy_mean):
        if noisy_mean.numel() != 1:
            raise ValueError(f"noisy_mean must be a single number, got a tensor of shape {tuple(noisy_mean.shape)}")
        noisy_mean = noisy_mean.item()
    noisy_mean = check_probability(noisy_mean, "noisy_mean")
    p_noise = check_probability(p_noise, "p_noise", allow_one=False)
    return (noisy_mean - p_noise / 2) / (1 - p_noise)


def rr_epsilon(p_noise: float) -> float:
    """The local epsilon of randomized response with noise probability `p_noise`.

    The worst-case ratio of output probabilities between a true and a false row is
    `(1 - p_noise / 2) / (p_noise / 2)`, so epsilon = `ln((1 - p_noise / 2) / (p_noise / 2))` (ln 3 at 0.5).

    Args:
        p_noise: probability in [0, 1) that a row is replaced by a fair coin.

    Returns:
        epsilon as a Python float; `math.inf` when `p_noise == 0`, because truthful answers give no privacy.
    """
    p_noise = check_probability(p_noise, "p_noise", allow_one=False)
    if p_noise == 0:
        return math.inf
    return math.log((1 - p_noise / 2) / (p_noise / 2))
