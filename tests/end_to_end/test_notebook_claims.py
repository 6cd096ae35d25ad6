"""Numbers quoted in the text of the notebooks that a cheap computation reproduces.

Each test recomputes one quoted number with the same library the notebook uses, so a new version of torch or
Opacus that changes it fails here instead of leaving the text stale.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

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
    6.50, with sigma 80 2.16 and 3.09 (RDP, Mironov's conversion, on the orders of the notebook's own
    `gnmax_epsilon`: 1.1 to 10.9 by 0.1, then 11 to 512)."""
    from course.lib.pate_analysis import gnmax_epsilon, pate_epsilon_data_independent

    notebook_orders = np.concatenate([np.arange(1.1, 11.0, 0.1), np.arange(11.0, 513.0)])
    assert "np.arange(1.1, 11.0, 0.1), np.arange(11.0, 513.0)" in _notebook_05_cell("gnmax_epsilon")
    assert [round(pate_epsilon_data_independent(q, 0.05, 1e-6), 2) for q in (500, 1000)] == [14.41, 21.91]
    assert [round(gnmax_epsilon(q, 40.0, 1e-6, notebook_orders), 2) for q in (500, 1000)] == [4.47, 6.50]
    assert [round(gnmax_epsilon(q, 80.0, 1e-6, notebook_orders), 2) for q in (500, 1000)] == [2.16, 3.09]
    quoted = _notebook_05_cell("md-29")
    assert all(x in quoted for x in ("14.41", "21.91", "4.47", "6.50", "2.16", "3.09"))


# --- notebook 05 -------------------------------------------------------------------------------------------------

NOTEBOOK_05 = Path(__file__).resolve().parents[2] / "source" / "05_pate" / "05_pate.ipynb"
PATE2018_RESULTS = Path(__file__).resolve().parents[2] / "results" / "pate2018_mnist.md"


def _notebook_05_cell(grade_id: str) -> str:
    import nbformat

    notebook = nbformat.read(NOTEBOOK_05, 4)
    return next(c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_sizes_and_deltas_quoted_in_05():
    """05, sections 1-2: 250 teachers share 60,000 private images, 240 each; the papers' delta 1e-5 is 0.6/n, the
    course's 1e-6 is 0.06/n."""
    assert 60_000 // 250 == 240 and 60_000 % 250 == 0
    assert round(1e-5 * 60_000, 1) == 0.6 and round(1e-6 * 60_000, 2) == 0.06
    for grade_id, quoted in [("md-08", "0.6/n"), ("md-11", "240 images each")]:
        assert quoted in _notebook_05_cell(grade_id)


def test_accounting_values_quoted_in_05():
    """05, section 5: the moments accountant gives 11.7565 for 100 queries, gamma 0.1, delta 1e-5. Section 7: public
    tutorials' 500 and 1,000 queries at gamma 0.05 and the papers' delta 1e-5 cost 13 and 21; no attack beats
    TPR - FPR = 0.999995 at epsilon 13 (notebook 07's bound); Balle et al.'s conversion is 0.36 below Mironov's at
    order 10."""
    from course.lib.membership import dp_advantage_bound
    from course.lib.pate_analysis import pate_epsilon_data_independent

    assert f"{pate_epsilon_data_independent(100, 0.1, 1e-5):.4f}" == "11.7565"
    assert "11.7565" in _notebook_05_cell("md-21")
    assert [round(pate_epsilon_data_independent(q, 0.05, 1e-5)) for q in (500, 1000)] == [13, 21]
    assert f"{dp_advantage_bound(13.0):.6f}" == "0.999995"
    intro = _notebook_05_cell("md-pate18-intro")
    assert "13 to 21" in intro and "0.999995" in intro
    assert f"{math.log(10) / 9 - math.log(9 / 10):.2f}" == "0.36"


def test_every_number_in_05s_reading_of_the_pate2018_table_comes_from_the_table():
    """05, section 7 ('What the committed table shows'): every decimal number and percentage in the text is a number
    of results/pate2018_mnist.md rounded as quoted (a percentage as the table's fraction), or one of the paper's
    values it compares with (PATE 2018, Table 2: 98.5%, 1.97), or the conversion gap 0.36."""
    import re

    if not PATE2018_RESULTS.exists() or "## Release: " not in PATE2018_RESULTS.read_text():
        pytest.skip("results/pate2018_mnist.md not regenerated with the cap yet")
    table = PATE2018_RESULTS.read_text()
    table_numbers = [float(x) for x in re.findall(r"(?<![\w.])\d+\.\d+", table)]
    text = _notebook_05_cell("md-pate18-read")
    text = re.sub(r"\$[^$]*\\delta[^$]*\$", " ", text)  # the deltas, written in LaTeX
    papers = {98.5, 1.97, 0.36}
    for match in re.finditer(r"(?<![\w.^{])(\d+\.\d+)(?: ± (\d+\.\d+))?(%?)", text):
        percent = match.group(3) == "%"
        for token in filter(None, match.group(1, 2)):
            value = float(token)
            if value in papers:
                continue
            digits = len(token.split(".")[1])
            scale = 100 if percent else 1  # a percentage quotes a fraction of the table
            assert any(round(scale * number, digits) == value for number in table_numbers), (
                f"05 quotes {token}, which results/pate2018_mnist.md does not give"
            )


def _run_notebook_05_in_default_mode() -> dict[str, str]:
    """Execute the source notebook as a student would in default mode; the printed output of each cell by id."""
    import os

    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK_05, 4)
    os.environ.pop("DP_COURSE_FAST", None)
    NotebookClient(notebook, timeout=3600, resources={"metadata": {"path": str(NOTEBOOK_05.parent)}}).execute()
    return {
        cell.metadata.get("nbgrader", {}).get("grade_id"): "".join(
            output.get("text", "") for output in cell.get("outputs", []) if output.get("output_type") == "stream"
        )
        for cell in notebook.cells
        if cell.cell_type == "code"
    }


@pytest.mark.slow
def test_section_6_numbers_quoted_in_05(monkeypatch):
    """05, 'What to look for' after section 6 (default mode, seeded): teachers of about 90% (86% to 94%), a 94%
    plurality vote (also quoted in section 7), a median margin of about 246 of 250, GNMax sigma 40 students of about
    94 to 95% within a point or two of the non-private ones, Laplace's data-dependent epsilon about 3.2 and 4.6, and
    with sigma 80 almost a fifth of the labels wrong and students of about 90 to 93%. Trains 250 teachers and 9
    students: a few minutes."""
    import re

    monkeypatch.delenv("DP_COURSE_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    printed = _run_notebook_05_in_default_mode()
    teachers = re.search(r"accuracy ([\d.]+) on average \(from ([\d.]+) to ([\d.]+)\)", printed["code-14"])
    plurality = float(re.search(r"plurality vote of all 250 teachers: accuracy ([\d.]+)", printed["code-14"]).group(1))
    assert [round(100 * float(x)) for x in teachers.groups()] + [round(100 * plurality)] == [90, 86, 94, 94]
    quoted = _notebook_05_cell("md-29")
    assert "about 90% accuracy each (from about 86% to 94%)" in quoted and "about 94% correct labels" in quoted
    assert "246 of 250" in quoted and "about\n94% right" in _notebook_05_cell("md-pate18-table")
    assert abs(int(re.search(r"median margin: (\d+) votes", printed["code-16"]).group(1)) - 246) <= 2
    rows = {}
    for line in printed["code-27"].splitlines():
        match = re.match(
            r"^(.+?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(moments accountant|RDP|none \(non-private\))\s", line
        )
        if match:
            rows[match.group(1), int(match.group(2))] = (float(match.group(3)), float(match.group(4)), line.split()[-1])
    for queries, laplace_dependent in ((500, 3.2), (1000, 4.6)):
        _, student, _ = rows["GNMax, sigma 40", queries]
        assert 0.935 <= student < 0.955, (queries, student)
        assert abs(student - rows["plurality, no noise", queries][1]) <= 0.02
        assert abs(float(rows["Laplace, gamma 0.05", queries][2]) - laplace_dependent) < 0.05
        label_quality, student, _ = rows["GNMax, sigma 80", queries]
        assert 0.15 <= 1 - label_quality <= 0.2 and 0.895 <= student < 0.935, (queries, label_quality, student)
    assert abs(rows["GNMax, sigma 40", 1000][1] - rows["true labels", 1000][1]) <= 0.02
