"""Numbers quoted in the text of the notebooks that a cheap computation reproduces.

Each test recomputes one quoted number with the same library the notebook uses, so a new version of torch or
Opacus that changes it fails here instead of leaving the text stale.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from course.shown.membership_plots import roc_epsilon_lower_bound


def test_float32_bce_is_exactly_zero_from_logit_minus_14_5561():
    """07, section 3: float32 BCEWithLogitsLoss of label 0 is exactly 0 once the logit is <= -14.5561."""
    zero, target = torch.tensor([-14.5561, -15.0, -20.0, -100.0]), torch.zeros(4)
    assert (F.binary_cross_entropy_with_logits(zero, target, reduction="none") == 0).all()
    positive = torch.tensor([-14.5560, -14.0, -10.0])
    assert (F.binary_cross_entropy_with_logits(positive, torch.zeros(3), reduction="none") > 0).all()
    assert (
        F.binary_cross_entropy_with_logits(
            torch.tensor(-20.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
        ).item()
        > 2e-9
    )


def test_one_sided_ks_level_for_the_best_advantage():
    """07, section 5: the 1% level of max(TPR - FPR) for 250 vs 250 is sqrt(ln(100)/2) sqrt(2/250) = 0.136, and a
    permutation test on continuous scores agrees (the asymptotic level is slightly conservative)."""
    constant = math.sqrt(math.log(100) / 2)
    assert round(constant, 2) == 1.52
    level = constant * math.sqrt(500 / (250 * 250))
    assert round(level, 3) == 0.136
    rng = np.random.default_rng(0)
    exceed = 0
    for _ in range(2000):
        scores = rng.permutation(500)  # ranks of 500 continuous scores; the first 250 are the "members"
        members = np.sort(scores[:250])
        non_members = np.sort(scores[250:])
        thresholds = np.arange(500)
        tpr = np.searchsorted(members, thresholds, side="right") / 250
        fpr = np.searchsorted(non_members, thresholds, side="right") / 250
        exceed += (tpr - fpr).max() > level
    # the asymptotic level is conservative for finite samples: the exceedance rate is at most about 1%
    assert exceed / 2000 < 0.01 + 4 * math.sqrt(0.01 * 0.99 / 2000)


def test_rdp_conversions_quoted_in_06():
    """06, section 3: q = 0.1, 100 steps, sigma from get_noise_multiplier for epsilon 1 at delta 1e-5 is 4.30; the
    same RDP gives 0.99 with Balle et al.'s conversion and 1.22 with Mironov's, which needs sigma 5.15."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis
    from opacus.accountants.utils import get_noise_multiplier

    orders = np.array(RDPAccountant.DEFAULT_ALPHAS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma = get_noise_multiplier(
            target_epsilon=1.0, target_delta=1e-5, sample_rate=0.1, epochs=10, accountant="rdp"
        )
        rdp = rdp_analysis.compute_rdp(q=0.1, noise_multiplier=sigma, steps=100, orders=orders)
        balle, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=1e-5)

    def mironov(noise):
        values = rdp_analysis.compute_rdp(q=0.1, noise_multiplier=noise, steps=100, orders=orders)
        return float(np.min(values + math.log(1e5) / (orders - 1)))

    assert round(sigma, 2) == 4.30
    assert round(balle, 2) == 0.99
    assert round(mironov(sigma), 2) == 1.22
    assert mironov(5.16) <= 1.0 < mironov(5.15)  # sigma 5.154 rounds to 5.15


def test_vacuous_replacement_delta_quoted_in_07():
    """07, section 6: (1 + e^eps) 1e-5 for the trained epsilons 7.994, 1.991 and 0.496 (default mode, PRV) is
    0.03, 8.3e-5 and 2.6e-5; 1/n = 0.004 for n = 250."""
    assert round((1 + math.exp(7.994)) * 1e-5, 2) == 0.03 > 1 / 250
    assert round((1 + math.exp(1.991)) * 1e-5, 6) == 8.3e-5
    assert round((1 + math.exp(0.496)) * 1e-5, 6) == 2.6e-5


def test_epsilon_lower_bounds_quoted_in_07():
    """07, section 8: a perfect attack on 125 + 125 held-out examples proves at most 3.18; the default run's loss
    attack on the non-private model (all 125 members and 102 of 125 non-members accused) proves 0.98."""
    from course.shown.audit_bounds import epsilon_lower_bound

    assert round(epsilon_lower_bound([125, 0], 125, [0, 125], 125), 2) == 3.18
    assert round(epsilon_lower_bound([125, 0], 125, [102, 23], 125), 2) == 0.98
    # the calibrated attack on it: 72 of 125 members and 44 of 125 non-members accused, which proves nothing
    assert epsilon_lower_bound([72, 53], 125, [44, 81], 125) == 0.0


def test_roc_epsilon_lower_bound_is_honest_for_a_useless_attack_and_catches_a_leak():
    """Scores that do not depend on membership give a bound of 0 in at least 95% of runs; well separated
    scores give a clearly positive bound."""
    rng = np.random.default_rng(0)
    bounds = [
        roc_epsilon_lower_bound(rng.normal(size=250), rng.normal(size=250), seed=seed)["epsilon"] for seed in range(40)
    ]
    assert np.mean(np.array(bounds) > 0) <= 0.05 + 4 * math.sqrt(0.05 * 0.95 / 40)
    leak = roc_epsilon_lower_bound(rng.normal(-3, 1, 250), rng.normal(0, 1, 250))
    assert leak["epsilon"] > 1.0 and leak["n_in"] == 125 and leak["n_out"] == 125
    members, non_members = rng.normal(-3, 1, 250), rng.normal(0, 1, 250)
    assert (
        roc_epsilon_lower_bound(members, non_members, delta=0.05)["epsilon"]
        < roc_epsilon_lower_bound(members, non_members)["epsilon"]
    ), "a larger delta explains more, so proves less"


@pytest.mark.parametrize("args", [([0.0], [0.0, 1.0]), ([0.0, np.nan], [0.0, 1.0])])
def test_roc_epsilon_lower_bound_rejects_bad_input(args):
    with pytest.raises(ValueError):
        roc_epsilon_lower_bound(*args)


def _classic_gaussian_epsilon(delta0: float, sigma: float) -> float:
    """Section 5 of 04 solved for epsilon: sigma = sqrt(2 ln(1.25 / delta0)) / epsilon, sensitivity 1."""
    return math.sqrt(2 * math.log(1.25 / delta0)) / sigma


def test_composition_numbers_quoted_in_04():
    """04, after section 5: k Gaussian queries with sigma 20 at a total delta of 1e-6. Basic composition
    (delta/k each) 2.86, 30.53, 324 for k = 10, 100, 1,000; advanced composition (Dwork & Roth theorem 3.20,
    delta/(2k) each and delta' = delta/2) 5.96, 28.09, 184, better than basic from k = 76 on; RDP 9.6 at
    k = 1,000 (computed here at every order from 1.01 to 1,000 by steps of 0.01, not on the notebook's grid)."""
    sigma, delta = 20.0, 1e-6

    def basic(k):
        return k * _classic_gaussian_epsilon(delta / k, sigma)

    def advanced(k):
        epsilon0 = _classic_gaussian_epsilon(delta / (2 * k), sigma)
        return math.sqrt(2 * k * math.log(1 / (delta / 2))) * epsilon0 + k * epsilon0 * (math.exp(epsilon0) - 1)

    orders = np.arange(1.01, 1000, 0.01)
    assert [round(basic(k), 2) for k in (10, 100)] == [2.86, 30.53] and round(basic(1000)) == 324
    assert [round(advanced(k), 2) for k in (10, 100)] == [5.96, 28.09] and round(advanced(1000)) == 184
    assert min(k for k in range(1, 1001) if advanced(k) < basic(k)) == 76
    assert round(float(np.min(1000 * orders / (2 * sigma**2) + math.log(1 / delta) / (orders - 1))), 1) == 9.6
    assert _classic_gaussian_epsilon(delta / 2000, sigma) < 1  # the classic calibration needs epsilon < 1


def test_data_independent_epsilons_quoted_in_05():
    """05, section 6 ('What to look for'), at the notebook's delta of 1e-6: Laplace noisy max with gamma 0.05
    costs 14.41 (500 queries) and 21.91 (1,000) by the moments accountant; GNMax with sigma 40 costs 4.47 and
    6.50, with sigma 80 2.16 and 3.10 (RDP, Mironov's conversion)."""
    from course.lib.pate_analysis import gnmax_epsilon, pate_epsilon_data_independent

    assert [round(pate_epsilon_data_independent(q, 0.05, 1e-6), 2) for q in (500, 1000)] == [14.41, 21.91]
    assert [round(gnmax_epsilon(q, 40.0, 1e-6), 2) for q in (500, 1000)] == [4.47, 6.50]
    assert [round(gnmax_epsilon(q, 80.0, 1e-6), 2) for q in (500, 1000)] == [2.16, 3.10]
