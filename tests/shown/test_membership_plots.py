"""The helpers shown in notebook 07 agree with the reference membership library and keep their promises."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from course.lib import membership
from course.shown import membership_plots

matplotlib.use("Agg")


def _model_and_data(seed: int = 0, size: int = 300):
    """A one-logit model with dropout (so eval mode matters) and a medmnist-shaped dataset of `size` examples."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1)
    )
    with torch.no_grad():
        model[-1].weight.mul_(20.0)  # logits of several units, as after training
    images = torch.rand(size, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 2, (size, 1), generator=generator)
    return model, TensorDataset(images, labels)


def test_logits_and_labels_keep_order_uses_eval_mode_and_restores_the_mode():
    model, dataset = _model_and_data()
    model.train()
    logits, labels = membership_plots.logits_and_labels(model, dataset, batch_size=64)
    assert model.training, "the caller's mode must be restored"
    model.eval()
    with torch.no_grad():
        expected = model(dataset.tensors[0]).reshape(-1)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert torch.equal(labels, dataset.tensors[1].reshape(-1)) and labels.dtype == torch.int64


def test_true_label_logits_match_the_reference_losses_and_probabilities():
    model, dataset = _model_and_data(seed=1)
    signed = membership_plots.true_label_logits(model, dataset)
    assert signed.shape == (300,) and signed.dtype == np.float64
    losses = membership.loss_scores(model, dataset)
    np.testing.assert_allclose(np.logaddexp(0.0, -signed), losses, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(1 / (1 + np.exp(-signed)), np.exp(-losses), rtol=1e-9)  # P(true label)


def test_logits_and_labels_reject_an_empty_dataset():
    model, _ = _model_and_data()
    with pytest.raises(ValueError, match="empty"):
        membership_plots.logits_and_labels(model, TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, 1)))


def test_calibrated_scores_standardise_against_the_references():
    references = np.array([[1.0, 0.0, 5.0], [3.0, 0.0, 5.0]])  # means 2, 0, 5; sds sqrt(2), 0, 0
    scores = membership_plots.calibrated_scores(np.array([4.0, 0.0, 5.0]), references)
    assert scores[0] == pytest.approx(-2 / math.sqrt(2)), "more confident than the references: a low score"
    assert scores[1] == 0.0 and scores[2] == 0.0, "no difference from unanimous references scores 0, not NaN"
    bad_shapes = [((3,), (1, 3)), ((3,), (2, 4)), ((3, 1), (2, 3))]  # one reference; sizes differ; target not 1-D
    for target_shape, reference_shape in bad_shapes:
        with pytest.raises(ValueError):
            membership_plots.calibrated_scores(np.zeros(target_shape), np.zeros(reference_shape))


def test_calibration_separates_members_a_global_threshold_cannot():
    """Synthetic check of the idea: easy and hard examples, members a fixed amount more confident than usual."""
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.0, 5.0, 400)  # per-example log-odds that any model gives
    references = difficulty + rng.normal(0.0, 1.0, (8, 400))
    target = difficulty + rng.normal(0.0, 1.0, 400) + np.r_[np.full(200, 3.0), np.zeros(200)]  # first 200: members
    calibrated = membership_plots.calibrated_scores(target, references)
    global_threshold = -target  # a loss-like score: lower means more confident
    assert membership.attack_auc(calibrated[:200], calibrated[200:]) > 0.9
    assert membership.attack_auc(global_threshold[:200], global_threshold[200:]) < 0.7


@pytest.mark.parametrize("epsilon, delta", [(0.0, 0.0), (0.5, 0.0), (math.log(3), 1e-3), (2.0, 0.05), (8.0, 1e-5)])
def test_dp_tpr_bound_region_peaks_at_the_advantage_bound(epsilon, delta):
    fpr = np.linspace(0.0, 1.0, 200_001)
    bound = membership_plots.dp_tpr_bound(fpr, epsilon, delta)
    assert bound.shape == fpr.shape and (bound >= 0).all() and (bound <= 1).all()
    assert (np.diff(bound) >= -1e-15).all(), "the limit never falls as FPR grows"
    assert bound[0] == pytest.approx(delta) and bound[-1] == 1.0
    assert (bound >= fpr - 1e-12).all(), "guessing is always possible"
    assert np.max(bound - fpr) == pytest.approx(membership.dp_advantage_bound(epsilon, delta), abs=1e-5)


@pytest.mark.parametrize("bad", [dict(epsilon=-1.0), dict(epsilon=float("inf")), dict(delta=1.0), dict(delta=-0.1)])
def test_dp_tpr_bound_rejects_bad_arguments(bad):
    arguments = {"fpr": np.array([0.1]), "epsilon": 1.0, "delta": 0.0, **bad}
    with pytest.raises(ValueError):
        membership_plots.dp_tpr_bound(**arguments)
    with pytest.raises(ValueError):
        membership_plots.dp_tpr_bound(np.array([1.5]), 1.0)


def test_plots_have_labelled_axes_and_one_curve_per_set():
    model, dataset = _model_and_data(seed=2, size=120)
    images, labels = dataset.tensors
    members, non_members = TensorDataset(images[:60], labels[:60]), TensorDataset(images[60:], labels[60:])
    figure = membership_plots.plot_confidence_cdfs(model, members, non_members, title="test")
    for axis in figure.axes:
        assert axis.get_xlabel() and axis.get_xscale() == "log" and len(axis.get_lines()) == 2
    assert figure.axes[0].get_ylabel()
    scores_in, scores_out = np.arange(10.0), np.arange(10.0) + 3
    curves = {"a": membership.attack_roc(scores_in, scores_out), "b": membership.attack_roc(scores_out, scores_in)}
    figure = membership_plots.plot_attack_rocs(curves, {"a": (1.0, 1e-5)})
    for axis in figure.axes:
        assert axis.get_xlabel() and axis.get_ylabel()
        assert len(axis.get_lines()) == 4, "two curves, one DP limit, the diagonal"
    with pytest.raises(ValueError, match="without a curve"):
        membership_plots.plot_attack_rocs(curves, {"c": (1.0, 0.0)})
    plt.close("all")
