"""Helpers shown in notebook 07 (membership inference): model outputs over a dataset, a calibrated attack
score, the DP limit on ROC curves, an empirical lower bound on epsilon from an attack, and the figures.

These functions are shown to students in read-only cells, so they use only public packages (numpy, torch,
matplotlib; scipy through `audit_bounds.epsilon_lower_bound`) and validate their arguments inline. Models
have one output logit (label 1 = pneumonia); datasets yield (image, label) pairs, the label a tensor or array
of shape (1,) holding 0 or 1.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import DataLoader

from course.shown.audit_bounds import epsilon_lower_bound


def logits_and_labels(model: torch.nn.Module, dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit and the true label of every example, in dataset order: float and int64 tensors of shape (n,).

    The model runs in eval mode without gradients; its previous mode is restored afterwards.
    """
    if len(dataset) == 0:
        raise ValueError("dataset is empty: there is nothing to predict")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        with torch.no_grad():
            for images, batch_labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                logits.append(model(images).reshape(-1))
                labels.append(torch.as_tensor(batch_labels).reshape(-1).long())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def true_label_logits(model: torch.nn.Module, dataset) -> np.ndarray:
    """The log-odds the model gives each example's true label, float64 of shape (n,), in dataset order.

    That is the logit for label 1 and minus the logit for label 0: large and positive means confidently right.
    The confidence in the true label is its sigmoid, and the loss is softplus(-value).
    """
    logits, labels = logits_and_labels(model, dataset)
    logits = logits.double()
    return torch.where(labels == 1, logits, -logits).numpy()


def calibrated_scores(target_logits, reference_logits) -> np.ndarray:
    """Membership scores that allow for how hard each example is; lower means "more likely a member".

    `target_logits` (shape (n,)) are the target model's `true_label_logits`; `reference_logits` (shape (k, n),
    k >= 2) are those of k reference models trained on other data, which never saw any of the n examples.
    The score is -(target - mean) / std over the references: how many standard deviations more confident the
    target is than models that did not train on the example. This is the offline variant of the likelihood-
    ratio attack of Carlini et al., "Membership Inference Attacks From First Principles" (S&P 2022), with a
    one-sided Gaussian test; see also Watson et al., "On the Importance of Difficulty Calibration in
    Membership Inference Attacks" (ICLR 2022).
    """
    target_logits = np.asarray(target_logits, dtype=np.float64)
    reference_logits = np.asarray(reference_logits, dtype=np.float64)
    if target_logits.ndim != 1 or reference_logits.ndim != 2 or reference_logits.shape[1] != len(target_logits):
        raise ValueError(
            f"expected target_logits of shape (n,) and reference_logits of shape (k, n), got "
            f"{target_logits.shape} and {reference_logits.shape}"
        )
    if len(reference_logits) < 2:
        raise ValueError("at least two reference models are needed to estimate a standard deviation")
    spread = reference_logits.std(axis=0, ddof=1)
    # Examples on which every reference agrees exactly would divide by zero; a tiny floor keeps them comparable.
    return -(target_logits - reference_logits.mean(axis=0)) / np.maximum(spread, 1e-6)


def dp_tpr_bound(fpr, epsilon: float, delta: float = 0.0) -> np.ndarray:
    """The largest true-positive rate any attack can reach at false-positive rate `fpr` against an
    (epsilon, delta)-DP training run: min(e^eps fpr + delta, 1 - e^-eps (1 - fpr - delta)), clipped to [0, 1].

    Kairouz, Oh, Viswanath, "The Composition Theorem for Differential Privacy" (ICML 2015), Theorem 2.1: the
    hypothesis-testing region of (epsilon, delta)-DP. Same shape as `fpr`. `epsilon` and `delta` must be for
    the neighbour notion the attack's experiment uses.
    """
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    fpr = np.asarray(fpr, dtype=np.float64)
    if ((fpr < 0) | (fpr > 1)).any():
        raise ValueError("fpr values must lie in [0, 1]")
    bound = np.minimum(np.exp(epsilon) * fpr + delta, 1 - np.exp(-epsilon) * (1 - fpr - delta))
    return np.clip(bound, 0.0, 1.0)


def roc_epsilon_lower_bound(scores_in, scores_out, delta: float = 0.0, confidence: float = 0.95, seed: int = 0) -> dict:
    """An empirical lower bound on the epsilon of a training run, from a membership attack's scores.

    The attack is "member if score <= tau" (lower means member). Members and non-members are each split at
    random (`seed`) into two halves. On the first halves, every threshold is tried and the one with the largest
    `epsilon_lower_bound` there is chosen. Only that threshold is applied to the second halves, which played no
    part in choosing it: with k_in of m_in members and k_out of m_out non-members accused there,
    `epsilon_lower_bound([k_in, m_in - k_in], m_in, [k_out, m_out - k_out], m_out, confidence, delta)` bounds
    epsilon from below through both DP inequalities TPR <= e^eps FPR + delta and
    1 - FPR <= e^eps (1 - TPR) + delta, with Clopper-Pearson intervals for TPR and FPR.

    The bound treats the examples as independent trials of the hypothesis test "was x trained on?", and
    `delta` must be the delta of the neighbour notion that links "member" and "non-member" (replacement, when
    members and non-members come from one random split of a pool). Returns a dict: `epsilon` (the bound, >= 0,
    for the second halves), `threshold`, and the second halves' `tpr`, `fpr`, `n_in`, `n_out`.
    """
    scores_in = np.asarray(scores_in, dtype=np.float64).reshape(-1)
    scores_out = np.asarray(scores_out, dtype=np.float64).reshape(-1)
    if len(scores_in) < 2 or len(scores_out) < 2 or np.isnan(scores_in).any() or np.isnan(scores_out).any():
        raise ValueError("scores_in and scores_out need at least two scores each (one per half), none NaN")
    rng = np.random.default_rng(seed)
    shuffled_in, shuffled_out = rng.permutation(scores_in), rng.permutation(scores_out)
    choose_in, test_in = np.sort(shuffled_in[: len(scores_in) // 2]), shuffled_in[len(scores_in) // 2 :]
    choose_out, test_out = np.sort(shuffled_out[: len(scores_out) // 2]), shuffled_out[len(scores_out) // 2 :]

    def bound(accused_in: int, total_in: int, accused_out: int, total_out: int) -> float:
        return epsilon_lower_bound(
            [accused_in, total_in - accused_in],
            total_in,
            [accused_out, total_out - accused_out],
            total_out,
            confidence,
            delta,
        )

    best_threshold, best = -np.inf, -1.0
    for threshold in np.unique(np.concatenate([choose_in, choose_out])):
        candidate = bound(
            int(np.searchsorted(choose_in, threshold, side="right")),
            len(choose_in),
            int(np.searchsorted(choose_out, threshold, side="right")),
            len(choose_out),
        )
        if candidate > best:
            best_threshold, best = threshold, candidate
    accused_in, accused_out = int((test_in <= best_threshold).sum()), int((test_out <= best_threshold).sum())
    return {
        "epsilon": bound(accused_in, len(test_in), accused_out, len(test_out)),
        "threshold": float(best_threshold),
        "tpr": accused_in / len(test_in),
        "fpr": accused_out / len(test_out),
        "n_in": len(test_in),
        "n_out": len(test_out),
    }


def plot_confidence_cdfs(model: torch.nn.Module, members, non_members, title: str = "") -> plt.Figure:
    """Cumulative histograms of each example's doubt, 1 - (confidence in its true label), on a log axis.

    One panel per true label (0 = normal, 1 = pneumonia); in each, one curve for the training members and one
    for the non-members (the memorisation-assessment set). A curve at height y above x says: a fraction y of
    these examples has doubt at most x. Members sitting to the left of non-members is memorisation.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for name, dataset, style in (("training members", members, "-"), ("non-members (assessment)", non_members, "--")):
        logits, labels = logits_and_labels(model, dataset)
        signed = torch.where(labels == 1, logits, -logits).double()
        # sigmoid(-signed) is 1 - confidence without rounding 1 - 0.9999999... to zero; a doubt below the
        # smallest positive double (confidence exactly 1 even in float64) is drawn at that value.
        doubt = torch.sigmoid(-signed).clamp(min=torch.finfo(torch.float64).tiny).numpy()
        labels = labels.numpy()
        for axis, label, label_name in zip(axes, (0, 1), ("normal", "pneumonia")):
            values = np.sort(doubt[labels == label])
            if len(values) == 0:
                continue
            fraction = np.arange(1, len(values) + 1) / len(values)
            axis.step(values, fraction, where="post", linestyle=style, label=f"{name} ({len(values)})")
            axis.set_xscale("log")
            axis.set_xlabel("1 - confidence in the true label (log scale)")
            axis.set_title(f"true label {label} ({label_name})")
    axes[0].set_ylabel("fraction of examples with at most this doubt")
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_attack_rocs(curves: dict, bounds: dict | None = None, title: str = "") -> plt.Figure:
    """ROC curves of membership attacks, each beside the DP limit of its model, on linear and log-log axes.

    `curves` maps a model's name to the attack's (fpr, tpr) arrays; `bounds` maps some of those names to the
    (epsilon, delta) of that model's guarantee, drawn as a dashed line in the same colour (an attack can
    only reach the region below it). The dotted diagonal is guessing. The log-log panel shows the low
    false-positive rates where an attack is confident, which the linear panel squeezes into its corner.
    """
    bounds = bounds or {}
    unknown = set(bounds) - set(curves)
    if unknown:
        raise ValueError(f"bounds given for models without a curve: {sorted(unknown)}")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    grid = np.concatenate([[0.0], np.logspace(-5, 0, 400)])
    for index, (name, (fpr, tpr)) in enumerate(curves.items()):
        colour = f"C{index % 10}"
        for axis in axes:
            axis.plot(fpr, tpr, color=colour, label=name)
            if name in bounds:
                epsilon, delta = bounds[name]
                axis.plot(
                    grid,
                    dp_tpr_bound(grid, epsilon, delta),
                    color=colour,
                    linestyle="--",
                    linewidth=1,
                    label=f"its DP limit (epsilon {epsilon:.3g}, delta {delta:.2g})",
                )
    for axis in axes:
        axis.plot([1e-5, 1], [1e-5, 1], color="grey", linestyle=":", label="guessing")
        axis.set_xlabel("false-positive rate (non-members called members)")
        axis.set_ylabel("true-positive rate (members found)")
        axis.grid(True, alpha=0.3)
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, 1)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlim(1e-3, 1)
    axes[1].set_ylim(1e-3, 1)
    axes[1].legend(fontsize=7, loc="lower right")
    axes[0].set_title("linear axes")
    axes[1].set_title("log-log axes (low false-positive rates)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
