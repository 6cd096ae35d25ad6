"""The hidden-test checks of notebook 07 pass correct answers and catch typical wrong ones (spec section 4).

(a) The reference passes every check for 200 seeds, and differently written correct answers (loops, sklearn,
rank formulas, float32 results, curves with extra or missing collinear points) for 50; (b) every wrong answer
in `course.grading.wrong_answers.nb07` is caught on every one of 200 seeds, with a message naming the mistake.
The checks are deterministic, so a catch rate is the fraction of seeds whose generated inputs expose the
mistake; the rates are printed (pytest -s). Full sweeps are marked slow; three seeds of each run in the fast
suite.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from grading_harness import alternative_sweeps, catch_rate, seed_sweeps, student_seeds
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

from course.grading import GradingFailure, nb07
from course.grading.wrong_answers import nb07 as wrong
from course.lib import membership

GRADED = ["loss_scores", "attack_roc", "attack_auc", "tpr_at_fpr", "dp_advantage_bound"]
SCORE_FUNCTIONS = {"attack_roc", "attack_auc", "tpr_at_fpr"}
REFERENCE_SEEDS = student_seeds(200, "07_membership")  # as the grader derives them
ALTERNATIVE_SEEDS = range(50)
MISTAKE_SEEDS = student_seeds(200, "07_membership")
QUICK_SEEDS = range(3)
REQUIRED_CATCH_RATE = 1.0  # every seed: the checks are deterministic


def _check(name: str):
    return getattr(nb07, f"check_{name}")


CHECKS = {name: (_check(name), getattr(membership, name)) for name in GRADED}


# ---- correct answers written differently from the reference -----------------------------------------------


def loss_scores_loop(model, dataset):
    """One example at a time, with the loss module."""
    model.eval()
    criterion = torch.nn.BCEWithLogitsLoss()
    losses = []
    with torch.no_grad():
        for index in range(len(dataset)):
            image, target = dataset[index]
            losses.append(criterion(model(image[None]).reshape(1), torch.tensor(target).float().reshape(1)).item())
    return np.array(losses)


def loss_scores_sigmoid_then_bce(model, dataset):
    """Probabilities first, then BCELoss; returns a tensor."""
    model.eval()
    criterion = torch.nn.BCELoss(reduction="none")
    losses = []
    with torch.no_grad():
        for images, targets in torch.utils.data.DataLoader(dataset, batch_size=64):
            losses.append(criterion(torch.sigmoid(model(images)).squeeze(1), targets.float().squeeze(1)))
    return torch.cat(losses)


def attack_roc_threshold_loop(scores_in, scores_out):
    """From (1, 1) down to (0, 0), every threshold twice (repeated, collinear points)."""
    fpr, tpr = [], []
    for tau in sorted(set(np.concatenate([scores_in, scores_out]).tolist()), reverse=True) + [-math.inf]:
        for _ in range(2):
            fpr.append(sum(score <= tau for score in scores_out) / len(scores_out))
            tpr.append(sum(score <= tau for score in scores_in) / len(scores_in))
    return fpr, tpr


def attack_roc_sklearn(scores_in, scores_out):
    """sklearn with its default drop_intermediate=True (no collinear points), as float32 tensors."""
    labels = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])
    fpr, tpr, _ = roc_curve(labels, -np.concatenate([scores_in, scores_out]))
    return torch.tensor(fpr, dtype=torch.float32), torch.tensor(tpr, dtype=torch.float32)


def attack_auc_pairwise(scores_in, scores_out):
    wins = sum(1.0 if a < b else 0.5 if a == b else 0.0 for a, b in itertools.product(scores_in, scores_out))
    return wins / (len(scores_in) * len(scores_out))


def attack_auc_ranks(scores_in, scores_out):
    """Mann-Whitney U from mid-ranks of the non-members."""
    ranks = rankdata(np.concatenate([scores_in, scores_out]))[len(scores_in) :]
    return (ranks.sum() - len(scores_out) * (len(scores_out) + 1) / 2) / (len(scores_in) * len(scores_out))


def attack_auc_trapezoid(scores_in, scores_out):
    return torch.tensor(np.trapezoid(*reversed(membership.attack_roc(scores_in, scores_out))))


def tpr_at_fpr_loop(scores_in, scores_out, fpr):
    best = 0.0
    for tau in np.concatenate([scores_in, scores_out]):
        if np.mean(scores_out <= tau) <= fpr:
            best = max(best, float(np.mean(scores_in <= tau)))
    return best


def tpr_at_fpr_running_sums(scores_in, scores_out, fpr):
    """Walks up the sorted scores adding 1/n per example (no exact division); returns float32."""
    scores = np.concatenate([scores_in, scores_out])
    is_member = np.concatenate([np.ones(len(scores_in), bool), np.zeros(len(scores_out), bool)])
    order = np.argsort(scores, kind="stable")
    best = false_rate = true_rate = 0.0
    for position, index in enumerate(order):
        if is_member[index]:
            true_rate += 1 / len(scores_in)
        else:
            false_rate += 1 / len(scores_out)
        ends_tie_group = position + 1 == len(order) or scores[order[position + 1]] != scores[index]
        if ends_tie_group and false_rate <= fpr:
            best = max(best, true_rate)
    return np.float32(best)


def dp_advantage_bound_naive(epsilon, delta=0.0):
    return (math.exp(epsilon) - 1 + 2 * delta) / (math.exp(epsilon) + 1)


def dp_advantage_bound_numpy(epsilon, delta=0):
    return np.array([(np.expm1(epsilon) + 2 * delta) / (np.exp(epsilon) + 1)])


ALTERNATIVES = {
    "loss_scores": [loss_scores_loop, loss_scores_sigmoid_then_bce],
    "attack_roc": [attack_roc_threshold_loop, attack_roc_sklearn],
    "attack_auc": [attack_auc_pairwise, attack_auc_ranks, attack_auc_trapezoid],
    "tpr_at_fpr": [tpr_at_fpr_loop, tpr_at_fpr_running_sums],
    "dp_advantage_bound": [dp_advantage_bound_naive, dp_advantage_bound_numpy],
}

# Each typical mistake, with a word its failure message must contain so the student knows what to fix.
MISTAKES = {
    "loss_scores": [
        (wrong.loss_scores_without_eval, "model.eval()"),
        (wrong.loss_scores_confidence, "probability"),
        (wrong.loss_scores_mean, "reduction='none'"),
        (wrong.loss_scores_first_batch, "one loss per example"),
    ],
    "attack_roc": [
        (wrong.attack_roc_reversed, "LOW"),
        (wrong.attack_roc_ties_split, "tied"),
        (wrong.attack_roc_swapped, "swapped"),
        (wrong.attack_roc_without_origin, "(0, 0)"),
    ],
    "attack_auc": [
        (wrong.attack_auc_ties_ignored, "1/2"),
        (wrong.attack_auc_ties_as_wins, "1/2"),
        (wrong.attack_auc_reversed, "LOW"),
    ],
    "tpr_at_fpr": [
        (wrong.tpr_at_fpr_strict, "<="),
        (wrong.tpr_at_fpr_interpolated, "interpolate"),
        (wrong.tpr_at_fpr_reversed, "LOW"),
    ],
    "dp_advantage_bound": [
        (wrong.dp_advantage_bound_without_delta, "delta is part"),
        (wrong.dp_advantage_bound_single_delta, "2 delta"),
        (wrong.dp_advantage_bound_delta_outside, "2 delta"),
    ],
}


CORRECT_ALTERNATIVES = {
    alternative: name for name, alternatives in ALTERNATIVES.items() for alternative in alternatives
}
MISTAKE_CASES = [(name, mistake, hint) for name, mistakes in MISTAKES.items() for mistake, hint in mistakes]
WRONG_ANSWERS = {mistake: name for name, mistake, _ in MISTAKE_CASES}
PHRASES = {mistake: hint for _, mistake, hint in MISTAKE_CASES}


def _case_id(value):
    return getattr(value, "__name__", None)


(
    test_reference_passes_quick,
    test_reference_passes_every_check_for_200_seeds,
    test_wrong_answer_fails_quick,
    test_wrong_answer_caught_on_every_seed,
) = seed_sweeps(
    CHECKS, WRONG_ANSWERS, QUICK_SEEDS, REFERENCE_SEEDS, MISTAKE_SEEDS, REQUIRED_CATCH_RATE, phrases=PHRASES
)
test_correct_alternative_passes_quick, test_correct_alternative_passes_more_seeds = alternative_sweeps(
    CHECKS, CORRECT_ALTERNATIVES, QUICK_SEEDS, ALTERNATIVE_SEEDS
)


FIXED_SCORE_KINDS = {
    "tied scores",
    "one member and one non-member",
    "all scores equal",
    "members scoring higher than non-members",
}
ALL_SCORE_CASES = nb07._score_cases


def _random_score_cases(rng: np.random.Generator):
    return [case for case in ALL_SCORE_CASES(rng) if case[0] not in FIXED_SCORE_KINDS]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, mistake, hint", [case for case in MISTAKE_CASES if case[0] in SCORE_FUNCTIONS], ids=_case_id
)
def test_random_score_sets_alone_catch_every_mistake(name, mistake, hint, monkeypatch):
    """Without the fixed small cases, which catch every mistake on their own, the random ones still do."""
    monkeypatch.setattr(nb07, "_score_cases", _random_score_cases)
    assert catch_rate(_check(name), mistake, MISTAKE_SEEDS) == 1.0


def test_a_crashing_answer_is_reported_not_raised():
    def attack_auc(scores_in, scores_out):
        raise IndexError("index 3 is out of bounds")

    with pytest.raises(GradingFailure, match="attack_auc raised IndexError"):
        nb07.check_attack_auc(attack_auc)


def test_curves_are_compared_as_polylines():
    square = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with_midpoints = np.array([[0.0, 0.0], [0.0, 0.5], [0.0, 1.0], [0.5, 1.0], [1.0, 1.0]])
    diagonal = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert nb07._same_curve(square, with_midpoints)
    assert not nb07._same_curve(square, diagonal)
    assert not nb07._same_curve(diagonal, np.array([[0.0, 0.0], [0.5, 0.5 + 1e-4], [1.0, 1.0]]))


def test_loss_check_rejects_an_answer_that_trains_the_model():
    def loss_scores(model, dataset):
        scores = membership.loss_scores(model, dataset)
        with torch.no_grad():
            next(model.parameters()).add_(0.01)
        return scores

    with pytest.raises(GradingFailure, match="must not train"):
        nb07.check_loss_scores(loss_scores)
