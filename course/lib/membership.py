"""Membership inference: how much does a trained model reveal about who was in its training set?

The attack is the loss-threshold attack of Yeom et al., "Privacy Risk in Machine Learning: Analyzing the
Connection to Overfitting" (CSF 2018): a model fits its training examples better than unseen ones, so an
example whose loss is at most a threshold tau is called a *member*. Scores are per-example losses; members
are the positives. Sweeping tau gives a ROC curve; following Carlini et al., "Membership Inference Attacks
From First Principles" (S&P 2022), the course reports both the AUC and the true-positive rate at a small
false-positive rate.

Differential privacy limits every such attack: an (epsilon, delta)-DP training run keeps any attack's
TPR - FPR at most `dp_advantage_bound(epsilon, delta)`, where (epsilon, delta) must be for the neighbour
notion that links the attack's two worlds. In notebook 07 members and non-members come from one random split,
so "x trained on" and "x not trained on" differ by *replacing* one record (training set of fixed, public
size). DP-SGD's epsilons from Opacus are for *add/remove* neighbours instead; group privacy turns an
(epsilon, delta) add/remove guarantee into (2 epsilon, (1 + e^epsilon) delta) for replacement, and that is
what goes into the bound. (PATE's analysis, notebook 05, is already for replacement.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from .validators import as_vector, check_finite, check_positive_int, check_probability


def _model_outputs(model, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (logits, targets), both float tensors of shape `(len(dataset),)`, in dataset order.

    `dataset` yields (image, target) pairs as medmnist does (target: an array of shape (1,) holding 0 or 1).
    The model runs in eval mode (dropout off, normalisation frozen) without gradients; its previous mode is
    restored afterwards so a caller may keep training it.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = check_positive_int(batch_size, "batch_size")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: there is nothing to score")
    first_parameter = next(model.parameters(), None)
    device = first_parameter.device if first_parameter is not None else torch.device("cpu")
    logits, targets = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for images, batch_targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                batch_logits = model(images.to(device)).reshape(-1)
                batch_targets = torch.as_tensor(batch_targets).reshape(-1)
                if batch_logits.numel() != len(images) or batch_targets.numel() != len(images):
                    raise ValueError(
                        f"expected one logit and one target per example; a batch of {len(images)} "
                        f"images gave {batch_logits.numel()} logits and {batch_targets.numel()} "
                        "targets"
                    )
                logits.append(batch_logits.cpu())
                targets.append(batch_targets.cpu())
    finally:
        model.train(was_training)
    targets = torch.cat(targets).to(torch.float64)
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError("targets must be binary labels 0 or 1")
    return torch.cat(logits).to(torch.float64), targets


def loss_scores(model, dataset, batch_size: int = 256) -> np.ndarray:
    """Per-example binary cross-entropy of a one-logit model: the membership attack's scores.

    Returns a float64 array of shape `(len(dataset),)`, in dataset order; entry i is
    `BCEWithLogitsLoss(model(x_i), t_i)`. Lower loss means "more likely a training member".
    """
    logits, targets = _model_outputs(model, dataset, batch_size)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").numpy()


def attack_roc(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve of the attack "member if score <= tau", as (fpr, tpr), each of shape `(num_points,)`.

    `scores_in` are the members' scores (positives), `scores_out` the non-members' (negatives). There is one
    point per distinct threshold, from (0, 0) (tau below every score) to (1, 1) (tau at the largest score);
    tied scores move together, so a tie between a member and a non-member gives a diagonal step. This is
    `sklearn.metrics.roc_curve(labels, -scores, drop_intermediate=False)`.
    """
    scores_in = as_vector(scores_in, "scores_in", allow_infinite=True)
    scores_out = as_vector(scores_out, "scores_out", allow_infinite=True)
    scores = np.concatenate([scores_in, scores_out])
    is_member = np.concatenate([np.ones(len(scores_in), dtype=np.int64), np.zeros(len(scores_out), dtype=np.int64)])
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_members = scores[order], is_member[order]
    # A threshold equal to a score accepts its whole tie group, so the curve only stops at a group's last entry.
    group_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    true_positives = np.cumsum(sorted_members)[group_ends]
    false_positives = group_ends + 1 - true_positives
    fpr = np.concatenate([[0.0], false_positives / len(scores_out)])
    tpr = np.concatenate([[0.0], true_positives / len(scores_in)])
    return fpr, tpr


def attack_auc(scores_in, scores_out) -> float:
    """Area under the attack's ROC curve: P(member's score < non-member's score) + P(tie) / 2.

    This is the Mann-Whitney U statistic divided by `len(scores_in) * len(scores_out)`, counted exactly:
    for each member, the non-members scoring higher count 1 and those scoring the same count 1/2.
    """
    scores_in = as_vector(scores_in, "scores_in", allow_infinite=True)
    scores_out = as_vector(scores_out, "scores_out", allow_infinite=True)
    sorted_out = np.sort(scores_out)
    at_most = np.searchsorted(sorted_out, scores_in, side="right")
    below = np.searchsorted(sorted_out, scores_in, side="left")
    higher = len(sorted_out) - at_most
    tied = at_most - below
    # Doubling keeps the count in integers, so the only rounding is the final division.
    twice_wins = int(2 * higher.sum() + tied.sum())
    return twice_wins / (2 * len(scores_in) * len(scores_out))


def tpr_at_fpr(scores_in, scores_out, fpr: float) -> float:
    """The best true-positive rate among ROC points whose false-positive rate is at most `fpr`.

    The boundary counts: a threshold with false-positive rate exactly `fpr` is allowed. Only thresholds are
    considered (no randomised mixing of two thresholds), so the result is a point of `attack_roc`.
    """
    fpr = check_probability(fpr, "fpr")
    roc_fpr, roc_tpr = attack_roc(scores_in, scores_out)
    return float(roc_tpr[roc_fpr <= fpr].max())


def dp_advantage_bound(epsilon: float, delta: float = 0.0) -> float:
    """Largest TPR - FPR of any membership attack on an (epsilon, delta)-DP training run.

    `(e^epsilon - 1 + 2 delta) / (e^epsilon + 1)`, the maximum of TPR - FPR over the hypothesis-testing region
    of (epsilon, delta)-DP (Kairouz, Oh, Viswanath, "The Composition Theorem for Differential Privacy",
    ICML 2015, Theorem 2.1); Humphries et al., "Investigating Membership Inference Attacks under Data
    Dependencies" (CSF 2023) state it as a membership-advantage bound. Neighbours: whichever notion links the
    attack's "member" and "non-member" worlds (replacement in notebook 07); for an Opacus run, whose epsilon is
    for add/remove, pass the replacement guarantee (2 epsilon, (1 + e^epsilon) delta) from group privacy.
    Written as tanh(epsilon / 2) + 2 delta / (e^epsilon + 1), with the second term through e^-epsilon,
    so no exponential overflows for large epsilon and small epsilon loses no precision.
    """
    epsilon = check_finite(epsilon, "epsilon")
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
    delta = check_probability(delta, "delta", allow_one=False)
    shrink = math.exp(-epsilon)
    return math.tanh(epsilon / 2) + 2 * delta * shrink / (1 + shrink)
