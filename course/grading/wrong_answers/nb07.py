"""Typical wrong answers to notebook 07's graded functions; the hidden-test checks must reject each one.

Each is written the way a student might plausibly write it, with exactly one mistake.
"""

import math

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader


def _targets_and_logits(model, batch):
    images, targets = batch
    return model(images).reshape(-1), torch.as_tensor(targets).reshape(-1).float()


# ---- loss_scores ------------------------------------------------------------------------------------------


def loss_scores_without_eval(model, dataset):
    """Forgets model.eval(): dropout stays on while scoring."""
    losses = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=256):
            logits, targets = _targets_and_logits(model, batch)
            losses.append(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"))
    return torch.cat(losses).numpy()


def loss_scores_confidence(model, dataset):
    """Returns the probability of the true label instead of the loss."""
    model.eval()
    scores = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=256):
            logits, targets = _targets_and_logits(model, batch)
            probabilities = torch.sigmoid(logits)
            scores.append(torch.where(targets == 1, probabilities, 1 - probabilities))
    return torch.cat(scores).numpy()


def loss_scores_mean(model, dataset):
    """Uses the default reduction: one mean loss per batch instead of one loss per example."""
    model.eval()
    with torch.no_grad():
        losses = [
            F.binary_cross_entropy_with_logits(*_targets_and_logits(model, batch))
            for batch in DataLoader(dataset, batch_size=256)
        ]
    return torch.stack(losses).numpy()


def loss_scores_first_batch(model, dataset):
    """Scores only the first batch of 256 examples."""
    model.eval()
    with torch.no_grad():
        logits, targets = _targets_and_logits(model, next(iter(DataLoader(dataset, batch_size=256))))
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").numpy()


# ---- attack_roc -------------------------------------------------------------------------------------------


def _rates(scores_in, scores_out, thresholds, member):
    fpr = [np.mean(member(np.asarray(scores_out), tau)) for tau in thresholds]
    tpr = [np.mean(member(np.asarray(scores_in), tau)) for tau in thresholds]
    return np.array(fpr), np.array(tpr)


def attack_roc_reversed(scores_in, scores_out):
    """Calls HIGH scores members: 'member if score >= tau'."""
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([scores_in, scores_out]))[::-1]])
    return _rates(scores_in, scores_out, thresholds, lambda scores, tau: scores >= tau)


def attack_roc_ties_split(scores_in, scores_out):
    """Walks through the sorted scores one example at a time, so tied examples get separate points."""
    scores = np.concatenate([scores_in, scores_out])
    is_member = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])[np.argsort(scores, kind="stable")]
    tpr = np.concatenate([[0.0], np.cumsum(is_member) / len(scores_in)])
    fpr = np.concatenate([[0.0], np.cumsum(1 - is_member) / len(scores_out)])
    return fpr, tpr


def attack_roc_swapped(scores_in, scores_out):
    """Returns (tpr, fpr) instead of (fpr, tpr)."""
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([scores_in, scores_out]))])
    fpr, tpr = _rates(scores_in, scores_out, thresholds, lambda scores, tau: scores <= tau)
    return tpr, fpr


def attack_roc_without_origin(scores_in, scores_out):
    """Only thresholds at the scores themselves: the lowest already calls someone a member, so (0, 0) is missing."""
    thresholds = np.unique(np.concatenate([scores_in, scores_out]))
    return _rates(scores_in, scores_out, thresholds, lambda scores, tau: scores <= tau)


# ---- attack_auc -------------------------------------------------------------------------------------------


def attack_auc_ties_ignored(scores_in, scores_out):
    """Counts only strict wins: ties count 0 instead of 1/2."""
    return float(np.mean(np.asarray(scores_in)[:, None] < np.asarray(scores_out)[None, :]))


def attack_auc_ties_as_wins(scores_in, scores_out):
    """Counts ties as full wins (<= instead of <)."""
    return float(np.mean(np.asarray(scores_in)[:, None] <= np.asarray(scores_out)[None, :]))


def attack_auc_reversed(scores_in, scores_out):
    """Probability that the member scores HIGHER, ties counting 1/2."""
    scores_in, scores_out = np.asarray(scores_in)[:, None], np.asarray(scores_out)[None, :]
    return float(np.mean((scores_in > scores_out) + 0.5 * (scores_in == scores_out)))


# ---- tpr_at_fpr -------------------------------------------------------------------------------------------


def _roc_points(scores_in, scores_out):
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([scores_in, scores_out]))])
    return _rates(scores_in, scores_out, thresholds, lambda scores, tau: scores <= tau)


def tpr_at_fpr_strict(scores_in, scores_out, fpr):
    """Keeps only points with false-positive rate strictly below fpr."""
    roc_fpr, roc_tpr = _roc_points(scores_in, scores_out)
    allowed = roc_tpr[roc_fpr < fpr]
    return float(allowed.max()) if len(allowed) else 0.0


def tpr_at_fpr_interpolated(scores_in, scores_out, fpr):
    """Interpolates linearly between ROC points."""
    return float(np.interp(fpr, *_roc_points(scores_in, scores_out)))


def tpr_at_fpr_reversed(scores_in, scores_out, fpr):
    """Uses the attack run backwards ('member if score >= tau')."""
    roc_fpr, roc_tpr = attack_roc_reversed(scores_in, scores_out)
    return float(roc_tpr[roc_fpr <= fpr].max())


# ---- dp_advantage_bound -----------------------------------------------------------------------------------


def dp_advantage_bound_without_delta(epsilon, delta=0.0):
    """Leaves delta out: the pure-DP bound whatever delta is."""
    return (math.exp(epsilon) - 1) / (math.exp(epsilon) + 1)


def dp_advantage_bound_single_delta(epsilon, delta=0.0):
    """Adds delta once instead of twice."""
    return (math.exp(epsilon) - 1 + delta) / (math.exp(epsilon) + 1)


def dp_advantage_bound_delta_outside(epsilon, delta=0.0):
    """Adds delta after the fraction."""
    return (math.exp(epsilon) - 1) / (math.exp(epsilon) + 1) + delta
