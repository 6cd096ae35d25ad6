"""Tests of the hidden-test checks for notebook 06: correct answers pass, typical mistakes are caught.

The seed sweeps come from grading_harness: the reference and differently written correct answers pass, and
each wrong answer in `course.grading.wrong_answers.nb06` fails with advice that names it, in at least 99% of
200 seeds as the grader derives them (slow); dp_grads's reference runs those 200 seeds in the fast suite too.
"""

import numpy as np
import pytest
import torch
from grading_harness import alternative_sweeps, seed_sweeps, student_seeds

from course.grading import GradingFailure, nb06
from course.grading.wrong_answers import nb06 as wrong
from course.lib.dpsgd import dp_grads, dp_grads_loop
from course.lib.dpsgd_data import label_fraction

REFERENCE_SEEDS = student_seeds(200, "06_dpsgd")  # as the grader derives them
WRONG_ANSWER_SEEDS = REFERENCE_SEEDS
REQUIRED_CATCH_RATE = 0.99
# the fast lane runs dp_grads's reference over the grader's 200 seeds too (about 15 s)
QUICK_SEEDS = {"dp_grads": REFERENCE_SEEDS, "label_fraction": range(50)}
QUICK_WRONG_ANSWER_SEEDS = {"dp_grads": range(5), "label_fraction": range(20)}
QUICK_ALTERNATIVE_SEEDS = {"dp_grads": range(25), "label_fraction": range(50)}
ALTERNATIVE_SEEDS = {"dp_grads": range(25, 200), "label_fraction": REFERENCE_SEEDS}

CHECKS = {
    "dp_grads": (nb06.check_dp_grads, dp_grads),
    "label_fraction": (nb06.check_label_fraction, label_fraction),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second intra-op thread only adds contention on the 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- correct answers written differently from the reference -----------------------------------------------


def dp_grads_lab_style(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """The published lab solution's style: backward per example, clip_grad_norm_, torch.normal noise."""
    summed = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, t in batch_data:
        model.zero_grad()
        loss = criterion(model(x).reshape(1), t.float().reshape(1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        for name, p in model.named_parameters():
            summed[name] += p.grad
    return {
        name: (value + torch.normal(0.0, noise_multiplier * max_grad_norm, size=value.shape)) / len(batch_data)
        for name, value in summed.items()
    }


def dp_grads_exact_clipping_autograd(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """torch.autograd.grad, the exact factor min(1, C / norm), noise added after dividing (same distribution)."""
    names = [name for name, _ in model.named_parameters()]
    parameters = list(model.parameters())
    summed = [torch.zeros_like(p) for p in parameters]
    for x, t in batch_data:
        grads = torch.autograd.grad(criterion(model(x).reshape(1), t.float().reshape(1)), parameters)
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        factor = min(1.0, max_grad_norm / norm.item())
        summed = [s + factor * g for s, g in zip(summed, grads)]
    size = len(batch_data)
    return {
        name: s / size + torch.randn_like(s) * noise_multiplier * max_grad_norm / size for name, s in zip(names, summed)
    }


def label_fraction_from_labels_attribute(dataset, label=0):
    """Uses medmnist's labels array directly."""
    return float(np.mean(np.asarray(dataset.labels).reshape(-1) == label))


# Each typical mistake, with the advice its failure message must give.
WRONG_DP_GRADS = {
    wrong.dp_grads_batch_clipping: "whole batch",
    wrong.dp_grads_per_parameter_clipping: "each parameter tensor separately",
    wrong.dp_grads_noise_without_clipping_bound: "1/max_grad_norm times too large",
    wrong.dp_grads_noise_not_divided: "len(batch_data) times too large",
    wrong.dp_grads_noise_variance_as_std: "torch.normal takes the standard deviation",
    wrong.dp_grads_reseeded_noise: "same noise twice",
    wrong.dp_grads_accumulated_between_examples: "model.zero_grad()",
    wrong.dp_grads_accumulated_left_on_model: "accumulated over several examples",
}
WRONG_LABEL_FRACTIONS = [
    wrong.label_fraction_count,
    wrong.label_fraction_ignores_label,
    wrong.label_fraction_of_positives,
]


# ---- the seed sweeps of both checks -----------------------------------------------------------------------

CORRECT_ALTERNATIVES = {
    dp_grads_loop: "dp_grads",
    dp_grads_lab_style: "dp_grads",
    dp_grads_exact_clipping_autograd: "dp_grads",
    label_fraction_from_labels_attribute: "label_fraction",
}
WRONG_ANSWERS = {answer: "dp_grads" for answer in WRONG_DP_GRADS} | {
    answer: "label_fraction" for answer in WRONG_LABEL_FRACTIONS
}
PHRASES = WRONG_DP_GRADS | {answer: "should return the fraction" for answer in WRONG_LABEL_FRACTIONS}

(
    test_reference_passes_quick,
    test_reference_passes_every_check_for_200_seeds,
    test_wrong_answer_fails_quick,
    test_wrong_answer_caught_in_99_percent_of_seeds,
) = seed_sweeps(
    CHECKS,
    WRONG_ANSWERS,
    QUICK_SEEDS,
    REFERENCE_SEEDS,
    WRONG_ANSWER_SEEDS,
    REQUIRED_CATCH_RATE,
    phrases=PHRASES,
    quick_wrong_answer_seeds=QUICK_WRONG_ANSWER_SEEDS,
)
test_correct_alternative_passes_quick, test_correct_alternative_passes_more_seeds = alternative_sweeps(
    CHECKS, CORRECT_ALTERNATIVES, QUICK_ALTERNATIVE_SEEDS, ALTERNATIVE_SEEDS
)


# ---- edge cases -------------------------------------------------------------------------------------------


def test_student_exceptions_become_grading_failures():
    def crashes(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        raise KeyError("weight")

    with pytest.raises(GradingFailure, match="raised KeyError"):
        nb06.check_dp_grads(crashes)


def test_result_structure_is_checked():
    def list_of_tensors(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        return list(dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier).values())

    def renamed(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        result = dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier)
        return {name.replace(".", "_"): value for name, value in result.items()}

    def flattened(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        result = dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier)
        return {name: value.flatten() for name, value in result.items()}

    for answer, message in [
        (list_of_tensors, "should return a dict"),
        (renamed, "named_parameters"),
        (flattened, "parameter's shape"),
    ]:
        with pytest.raises(GradingFailure, match=message):
            nb06.check_dp_grads(answer)


def test_changing_the_parameters_is_caught():
    def steps_the_model(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        result = dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p -= 0.1 * result[name]
        return result

    with pytest.raises(GradingFailure, match="changed the model's parameters"):
        nb06.check_dp_grads(steps_the_model)


def test_a_stale_grad_on_entry_is_caught():
    def clears_after_instead_of_before(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        summed = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        for x, t in batch_data:
            criterion(model(x).reshape(1), t.float().reshape(1)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            for name, p in model.named_parameters():
                summed[name] += p.grad
            model.zero_grad()
        return {
            name: (value + torch.normal(0.0, noise_multiplier * max_grad_norm, size=value.shape)) / len(batch_data)
            for name, value in summed.items()
        }

    with pytest.raises(GradingFailure, match="already held values on entry"):
        nb06.check_dp_grads(clears_after_instead_of_before)


def test_non_gaussian_noise_of_the_right_scale_is_caught():
    def laplace_noise(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        result = dp_grads(model, batch_data, criterion, max_grad_norm, 0.0)
        if noise_multiplier == 0:
            return result
        scale = noise_multiplier * max_grad_norm / len(batch_data) / 2**0.5  # same std as the Gaussian
        laplace = torch.distributions.Laplace(0.0, scale)
        return {name: value + laplace.sample(value.shape) for name, value in result.items()}

    with pytest.raises(GradingFailure, match="does not look like Gaussian noise"):
        nb06.check_dp_grads(laplace_noise)


def test_check_is_reproducible():
    def noise_draws(seed):
        draws = []

        def recording(*args):
            result = dp_grads_lab_style(*args)
            draws.append(torch.cat([value.flatten() for value in result.values()]))
            return result

        nb06.check_dp_grads(recording, seed)
        return draws

    first, again = noise_draws(3), noise_draws(3)
    assert len(first) == len(again) > 2 and all(torch.equal(a, b) for a, b in zip(first, again))


def test_label_fraction_must_return_a_number():
    with pytest.raises(GradingFailure, match="should be a single number"):
        nb06.check_label_fraction(lambda dataset, label=0: None)
