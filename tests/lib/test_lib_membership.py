"""Tests of course.lib.membership: the loss-threshold attack, its ROC summaries and the DP advantage bound."""

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from sklearn.metrics import roc_auc_score, roc_curve
from torch.nn import functional as F

from course.lib.membership import attack_auc, attack_roc, dp_advantage_bound, loss_scores, tpr_at_fpr


def _score_pairs(seed: int):
    """Yield (scores_in, scores_out) of several kinds: continuous, heavily tied, integer-valued, unbalanced."""
    rng = np.random.default_rng(seed)
    yield rng.normal(0, 1, 40), rng.normal(0.5, 1, 55)
    yield rng.integers(0, 3, 30).astype(float), rng.integers(0, 3, 25).astype(float)
    yield rng.integers(0, 10, 17), rng.integers(2, 12, 60)
    yield rng.exponential(1, 1), rng.exponential(1, 9)
    yield np.full(5, 2.0), np.full(7, 2.0)
    yield np.round(rng.normal(0, 1, 50), 1), np.round(rng.normal(0.3, 1, 50), 1)


def _sklearn_inputs(scores_in, scores_out):
    labels = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])
    # sklearn ranks high scores as positive; the attack calls LOW scores members, hence the minus sign.
    return labels, -np.concatenate([scores_in, scores_out]).astype(float)


@pytest.mark.parametrize("seed", range(20))
def test_attack_roc_matches_sklearn_roc_curve(seed):
    for scores_in, scores_out in _score_pairs(seed):
        fpr, tpr = attack_roc(scores_in, scores_out)
        expected_fpr, expected_tpr, _ = roc_curve(*_sklearn_inputs(scores_in, scores_out), drop_intermediate=False)
        np.testing.assert_array_equal(fpr, expected_fpr)
        np.testing.assert_array_equal(tpr, expected_tpr)


def test_attack_roc_has_one_point_per_distinct_threshold():
    fpr, tpr = attack_roc([1, 2, 2, 5], [2, 3, 3, 5])
    # thresholds: below all, 1, 2 (two members and one non-member tie), 3, 5
    np.testing.assert_array_equal(fpr, [0, 0, 0.25, 0.75, 1])
    np.testing.assert_array_equal(tpr, [0, 0.25, 0.75, 0.75, 1])


def test_attack_roc_accepts_lists_tensors_and_infinite_scores():
    fpr, tpr = attack_roc(torch.tensor([0.1, math.inf]), [0.5, 0.7])
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 1, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 0.5, 1])


def _pairwise_auc(scores_in, scores_out) -> float:
    wins = 0.0
    for member, non_member in itertools.product(scores_in, scores_out):
        wins += 1.0 if member < non_member else 0.5 if member == non_member else 0.0
    return wins / (len(scores_in) * len(scores_out))


@pytest.mark.parametrize("seed", range(20))
def test_attack_auc_matches_sklearn_and_the_pairwise_count(seed):
    for scores_in, scores_out in _score_pairs(seed):
        auc = attack_auc(scores_in, scores_out)
        assert auc == pytest.approx(roc_auc_score(*_sklearn_inputs(scores_in, scores_out)), abs=1e-12)
        assert auc == pytest.approx(_pairwise_auc(scores_in, scores_out), abs=1e-12)


def test_attack_auc_counts_ties_as_one_half():
    assert attack_auc([1.0, 1.0], [1.0]) == 0.5
    assert attack_auc([0.0, 1.0], [1.0, 2.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert attack_auc([0.0], [1.0]) == 1.0
    assert attack_auc([1.0], [0.0]) == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_tpr_at_fpr_is_the_best_roc_point_within_the_budget(seed):
    rng = np.random.default_rng(seed)
    for scores_in, scores_out in _score_pairs(seed):
        expected_fpr, expected_tpr, _ = roc_curve(*_sklearn_inputs(scores_in, scores_out), drop_intermediate=False)
        budgets = np.concatenate([rng.uniform(0, 1, 10), expected_fpr, [0.0, 1.0]])
        for budget in budgets:
            expected = expected_tpr[expected_fpr <= budget].max()
            assert tpr_at_fpr(scores_in, scores_out, float(budget)) == expected


def test_tpr_at_fpr_includes_the_boundary():
    members, non_members = [1, 2, 3, 4], [2.5, 3.5, 5, 6]
    assert tpr_at_fpr(members, non_members, 0.25) == 0.75
    assert tpr_at_fpr(members, non_members, np.nextafter(0.25, 0)) == 0.5
    assert tpr_at_fpr(members, non_members, 0.0) == 0.5
    assert tpr_at_fpr(members, non_members, 1.0) == 1.0


def _advantage_by_linear_program(epsilon: float, delta: float) -> float:
    """max TPR - FPR over the (epsilon, delta)-DP hypothesis-testing region (Kairouz et al. 2015), by LP."""
    e = math.exp(epsilon)
    # variables (fpr, tpr); each row a <= constraint of the region, both directions of the neighbour pair
    constraints = np.array([[-e, 1], [1, -e], [-1, e], [e, -1]])
    limits = np.array([delta, delta, e - 1 + delta, e - 1 + delta])
    result = linprog(c=[1, -1], A_ub=constraints, b_ub=limits, bounds=[(0, 1), (0, 1)], method="highs")
    assert result.success
    return -result.fun


@pytest.mark.parametrize("epsilon", [0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0])
@pytest.mark.parametrize("delta", [0.0, 1e-6, 1e-3, 0.05, 0.3, 0.9])
def test_dp_advantage_bound_is_the_maximum_over_the_dp_region(epsilon, delta):
    assert dp_advantage_bound(epsilon, delta) == pytest.approx(_advantage_by_linear_program(epsilon, delta), abs=1e-9)


def test_dp_advantage_bound_is_stable_at_the_extremes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dp_advantage_bound(1e4) == 1.0
        assert dp_advantage_bound(800.0, 0.5) == 1.0
        assert dp_advantage_bound(1e-12) == pytest.approx(math.expm1(1e-12) / (math.exp(1e-12) + 1), rel=1e-12)
    assert dp_advantage_bound(0.0, 0.3) == pytest.approx(0.3)
    assert dp_advantage_bound(1.0) == pytest.approx((math.e - 1) / (math.e + 1), rel=1e-15)
    grid = [dp_advantage_bound(epsilon, 1e-5) for epsilon in np.linspace(0, 30, 301)]
    assert all(later >= earlier for earlier, later in zip(grid, grid[1:]))


class _XrayLike(torch.utils.data.Dataset):
    """Yields (image, target) as medmnist.PneumoniaMNIST with ToTensor does: (1, 28, 28) float, int64 array (1,)."""

    def __init__(self, size: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(size, 1, 28, 28, generator=generator)
        self.labels = torch.randint(0, 2, (size, 1), generator=generator).numpy()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def _tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    # Dropout makes train-mode outputs random, so a scorer that forgot eval() would not be reproducible.
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1)
    )


def _per_example_losses(model, dataset):
    model.eval()
    losses = []
    with torch.no_grad():
        for image, target in (dataset[index] for index in range(len(dataset))):
            logit = model(image.unsqueeze(0)).reshape(1)
            label = torch.tensor(target, dtype=torch.float32).reshape(1)
            losses.append(F.binary_cross_entropy_with_logits(logit, label).item())
    model.train()
    return np.array(losses)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_loss_scores_match_a_per_example_loop(batch_size):
    model, dataset = _tiny_model(0), _XrayLike(37, seed=1)
    expected_losses = _per_example_losses(model, dataset)
    losses = loss_scores(model, dataset, batch_size=batch_size)
    assert isinstance(losses, np.ndarray) and losses.shape == (37,)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-7)


def test_scoring_leaves_the_model_in_its_mode_and_unchanged():
    model, dataset = _tiny_model(2), _XrayLike(10, seed=3)
    before = [parameter.clone() for parameter in model.parameters()]
    loss_scores(model, dataset)
    assert model.training
    assert all(torch.equal(old, new) for old, new in zip(before, model.parameters()))
    model.eval()
    loss_scores(model, dataset)
    assert not model.training


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [[1.0, 2.0]], "abc"])
def test_scores_are_validated(bad):
    for function in (attack_roc, attack_auc):
        with pytest.raises(ValueError):
            function(bad, [1.0])
        with pytest.raises(ValueError):
            function([1.0], bad)
    with pytest.raises(ValueError):
        tpr_at_fpr(bad, [1.0], 0.1)


@pytest.mark.parametrize("fpr", [-0.01, 1.01, math.nan, "0.1"])
def test_tpr_at_fpr_validates_the_budget(fpr):
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([1.0], [2.0], fpr)


@pytest.mark.parametrize("epsilon, delta", [(-0.1, 0.0), (math.inf, 0.0), (1.0, -0.1), (1.0, 1.0), (1.0, math.nan)])
def test_dp_advantage_bound_validates(epsilon, delta):
    with pytest.raises(ValueError):
        dp_advantage_bound(epsilon, delta)


def test_scoring_validates_model_dataset_and_outputs():
    dataset = _XrayLike(4, seed=0)
    with pytest.raises(ValueError, match="empty"):
        loss_scores(_tiny_model(0), _XrayLike(0, seed=0))
    with pytest.raises(ValueError, match="Module"):
        loss_scores(lambda images: images.sum(), dataset)
    with pytest.raises(ValueError, match="batch_size"):
        loss_scores(_tiny_model(0), dataset, batch_size=0)
    two_logits = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2))
    with pytest.raises(ValueError, match="one logit"):
        loss_scores(two_logits, dataset)
    dataset.labels[0] = 3
    with pytest.raises(ValueError, match="binary"):
        loss_scores(_tiny_model(0), dataset)
