"""Hidden-test checks for notebook 06, DP-SGD on PneumoniaMNIST: `label_fraction` and `dp_grads`.

`check_dp_grads` compares the student's function with `course.lib.dpsgd.dp_grads` on small random MLPs and
batches: exactly (to 1e-5, absolute plus relative) with the noise off, with clipping active, inactive and
mixed, and statistically with the noise on. The tolerance covers both clipping conventions,
`min(1, C / norm)` and `min(1, C / (norm + 1e-6))` (the latter is `clip_grad_norm_`'s): they differ by less
than 1e-6 in each clipped gradient. The three statistical tests (standard deviation, mean, Kolmogorov-Smirnov
against the Gaussian) share the check's false-failure budget as `course.grading.stats` calibrates it, so a
correct `dp_grads` fails `check_dp_grads` with probability below 1e-6. A wrong result is compared with the
answers that typical mistakes give, so the message can say what probably went wrong.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from course.grading import as_float, call, fail, require, seed_everything
from course.grading.stats import alpha_per_test, require_gaussian_std, require_noise_distribution, require_zero_mean
from course.lib.dpsgd import clipping_factor, dp_grads, per_example_gradients
from course.lib.dpsgd_data import label_fraction

ABSOLUTE_TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-5


# ------------------------------------------------------------------------------------------ label_fraction


class _LabelledImages:
    """A tiny stand-in for a medmnist dataset: `(image, target)` pairs plus medmnist's `labels` array."""

    def __init__(self, labels: np.ndarray, targets_as_tensors: bool):
        self.labels = labels.reshape(-1, 1)
        self._targets_as_tensors = targets_as_tensors

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        if not 0 <= index < len(self.labels):
            raise IndexError(index)
        target = self.labels[index].copy()
        return torch.zeros(1, 4, 4), torch.from_numpy(target) if self._targets_as_tensors else target


def check_label_fraction(student_label_fraction, seed: int = 0) -> None:
    """Compare `label_fraction(dataset, label=0)` with the reference on small medmnist-like datasets."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    cases = []
    for targets_as_tensors in (False, True):
        size = int(rng.integers(5, 40))
        labels = (rng.random(size) < rng.uniform(0.2, 0.8)).astype(np.int64)
        cases += [(labels, targets_as_tensors, None), (labels, targets_as_tensors, 1)]
    cases.append((np.ones(7, dtype=np.int64), False, None))  # no example has the default label 0
    for labels, targets_as_tensors, label in cases:
        dataset = _LabelledImages(labels, targets_as_tensors)
        how = "label_fraction(dataset)" if label is None else f"label_fraction(dataset, label={label})"
        arguments = (dataset,) if label is None else (dataset, label)
        result = call(student_label_fraction, *arguments)
        wanted = 0 if label is None else label
        expected = label_fraction(dataset, wanted)
        value = as_float(result, f"the result of {how}")
        count = int((labels == wanted).sum())
        require(
            abs(value - expected) <= 1e-9,
            f"{how} returned {value!r} for a dataset of {len(labels)} examples of which {count} have "
            f"label {wanted}; it should return the fraction {count}/{len(labels)} = {expected:.6g}"
            + (" (the default label is 0)" if label is None else ""),
        )


# ------------------------------------------------------------------------------------------------ dp_grads


def _random_mlp(generator: torch.Generator, in_features: int) -> nn.Sequential:
    """Flatten, then 1 to 3 Linear layers with ReLU or Tanh between them, ending in one logit."""
    depth = int(torch.randint(1, 4, (1,), generator=generator))
    widths = [in_features] + [int(torch.randint(2, 10, (1,), generator=generator)) for _ in range(depth - 1)]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths, widths[1:] + [1]):
        layers.append(nn.Linear(width_in, width_out))
        layers.append(nn.ReLU() if torch.rand(1, generator=generator) < 0.5 else nn.Tanh())
    return nn.Sequential(*layers[:-1])


def _random_batch(generator: torch.Generator, size: int, shape: tuple[int, ...]):
    """`size` pairs of an image tensor of `shape` and an int64 target of shape (1,), as medmnist yields."""
    return [
        (torch.randn(shape, generator=generator), torch.randint(0, 2, (1,), generator=generator)) for _ in range(size)
    ]


def _visible_case():
    """The notebook's visible example: a 5-input linear model with zero weights and two examples."""
    model = nn.Linear(5, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    batch = [
        (torch.tensor([2.0, 4.0, 6.0, 8.0, 10.0]), torch.tensor([0])),
        (torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0]), torch.tensor([1])),
    ]
    gradients = per_example_gradients(model, batch, nn.BCEWithLogitsLoss())
    return model, batch, gradients, 7.49, "the 5-input linear model of the visible test, max_grad_norm=7.49"


def _random_cases(generator: torch.Generator):
    """Random MLPs and batches, each with clipping bounds that clip every, no, and some examples."""
    cases = []
    for _ in range(2):
        shape = (
            1,
            int(torch.randint(2, 5, (1,), generator=generator)),
            int(torch.randint(2, 5, (1,), generator=generator)),
        )
        model = _random_mlp(generator, shape[1] * shape[2])
        batch = _random_batch(generator, int(torch.randint(2, 9, (1,), generator=generator)), shape)
        gradients = per_example_gradients(model, batch, nn.BCEWithLogitsLoss())
        norms = _example_norms(gradients)
        depth = sum(isinstance(layer, nn.Linear) for layer in model)
        about = f"a {depth}-layer MLP on a batch of {len(batch)} images of shape {shape}"
        # the mixed bound sits 0.1% above the median norm, far from both clipping conventions' disagreement
        for regime, bound in (
            ("every example clipped", 0.5 * norms.min()),
            ("no example clipped", 2.0 * norms.max()),
            ("some examples clipped", norms.median() * 1.001),
        ):
            bound = float(bound)
            cases.append((model, batch, gradients, bound, f"{about}, max_grad_norm={bound:.4g} ({regime})"))
    return cases


def _example_norms(gradients: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    return torch.stack(
        [torch.linalg.vector_norm(torch.cat([g.flatten() for g in example.values()])) for example in gradients]
    )


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _close(result: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(result.detach().double(), expected.double(), atol=ABSOLUTE_TOLERANCE, rtol=RELATIVE_TOLERANCE)


def _all_close(result: dict, expected: dict) -> bool:
    return all(_close(result[name], expected[name]) for name in expected)


def _check_structure(result, model: nn.Module, how: str) -> dict[str, torch.Tensor]:
    """The result is a dict keyed like model.named_parameters() with tensors of the parameters' shapes."""
    require(
        isinstance(result, dict),
        f"{how} should return a dict keyed like model.named_parameters(), got {type(result).__name__}",
    )
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    missing, extra = [n for n in names if n not in result], [n for n in result if n not in names]
    require(
        not missing and not extra,
        f"{how} returned keys {sorted(map(str, result))}; expected exactly the parameter names "
        f"{names} (from model.named_parameters())",
    )
    for name, p in model.named_parameters():
        value = result[name]
        require(torch.is_tensor(value), f"{how}: the value for '{name}' should be a tensor, got {type(value).__name__}")
        require(
            tuple(value.shape) == tuple(p.shape),
            f"{how}: the gradient for '{name}' has shape {tuple(value.shape)}; it should have the "
            f"parameter's shape {tuple(p.shape)}",
        )
        require(bool(torch.isfinite(value).all()), f"{how}: the gradient for '{name}' holds NaN or inf")
    return result


def _flat(gradient: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([value.detach().double().flatten() for value in gradient.values()])


def _mistakes(gradients: list[dict[str, torch.Tensor]], max_grad_norm: float) -> list[tuple[str, dict]]:
    """The results typical mistakes give at zero noise, each with the advice for it."""
    names, size = list(gradients[0]), len(gradients)

    def average(per_example):
        return {n: sum(g[n] for g in per_example) / size for n in names}

    def clipped(gradient):
        factor = clipping_factor(_example_norms([gradient]), max_grad_norm)
        return {n: factor * value for n, value in gradient.items()}

    accumulated, running = [], None  # .grad never cleared, clip_grad_norm_ clipping it in place each time
    for g in gradients:
        running = clipped(dict(g) if running is None else {n: running[n] + g[n] for n in names})
        accumulated.append(running)
    clipped_sum = {n: value * size for n, value in average([clipped(g) for g in gradients]).items()}
    return [
        (
            average(gradients),
            "it matches the unclipped average gradient: clip each example's gradient to max_grad_norm before summing",
        ),
        (
            average([{n: clipped({n: g[n]})[n] for n in names} for g in gradients]),
            "it matches clipping each parameter tensor separately; clip each example's gradient over all "
            "parameters jointly (one norm over every parameter, as clip_grad_norm_ computes when given all of "
            "model.parameters())",
        ),
        (
            average(accumulated),
            "it matches gradients accumulating in .grad from one example to the next: "
            "clear them (model.zero_grad()) before each example's backward pass",
        ),
        (clipped_sum, "it matches the sum of the clipped gradients: divide the (noisy) sum by len(batch_data)"),
    ]


def _explain_mismatch(result, expected, gradients, max_grad_norm, how) -> None:
    for mistake, advice in _mistakes(gradients, max_grad_norm):
        if _all_close(result, mistake):
            fail(f"{how} returned a wrong gradient: {advice}.")
    mean = {n: sum(g[n] for g in gradients) / len(gradients) for n in expected}
    if float(torch.nn.functional.cosine_similarity(_flat(result), _flat(mean), dim=0)) > 1 - 1e-6:
        fail(
            f"{how} returned a wrong gradient: it points along the batch's average gradient but has the wrong "
            "length. That is what clipping (or scaling) the whole batch's gradient at once gives, or dividing "
            "by the batch size twice; DP-SGD clips each example's gradient separately (one loss and one "
            "backward pass per example), sums, adds noise and divides once."
        )
    name = max(expected, key=lambda n: float((result[n].detach() - expected[n]).abs().max()))
    difference = float((result[name].detach() - expected[name]).abs().max())
    fail(
        f"{how} returned a wrong gradient (parameter '{name}' is off by up to {difference:.3g}). With "
        "noise_multiplier=0 the result must be the average over the batch of each example's gradient, "
        "clipped to L2 norm at most max_grad_norm over all parameters jointly."
    )


def _check_grad_left_behind(model, result, gradients, max_grad_norm, how) -> None:
    """After the call .grad may be None, zero, one example's gradient (raw or clipped) or the result itself."""
    factors = clipping_factor(_example_norms(gradients), max_grad_norm)
    for name, p in model.named_parameters():
        if p.grad is None or not bool(p.grad.any()):
            continue
        single = [g[name] for g in gradients] + [f * g[name] for f, g in zip(factors, gradients)]
        if any(_close(p.grad, candidate) for candidate in single + [result[name]]):
            continue
        fail(
            f"After {how} returned, the model's '{name}'.grad held gradients accumulated over several "
            "examples. dp_grads must not leave accumulated gradients on the model: clear .grad "
            "(model.zero_grad()) before each example's backward pass, and do not sum gradients in .grad."
        )


def _check_noiseless_case(student_dp_grads, case, stale_grad: bool) -> None:
    model, batch, gradients, max_grad_norm, about = case
    criterion = nn.BCEWithLogitsLoss()
    how = f"dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier=0) on {about}"
    expected = dp_grads(model, batch, criterion, max_grad_norm, 0.0)
    before = _snapshot(model)
    if stale_grad:
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.5)
    result = _check_structure(call(student_dp_grads, model, list(batch), criterion, max_grad_norm, 0.0), model, how)
    require(
        all(torch.equal(before[n], p.detach()) for n, p in model.named_parameters()),
        f"{how} changed the model's parameters; it should only compute the private gradient (the "
        "optimizer takes the step afterwards)",
    )
    if stale_grad and not _all_close(result, expected):
        fail(
            f"{how} gave a different result when the parameters' .grad already held values on entry (as "
            "after an earlier backward pass or optimizer step): clear .grad (model.zero_grad()) before each "
            "example's backward pass."
        )
    if not _all_close(result, expected):
        _explain_mismatch(result, expected, gradients, max_grad_norm, how)
    if not stale_grad:
        _check_grad_left_behind(model, result, gradients, max_grad_norm, how)


def _noise_case(generator: torch.Generator):
    """A larger MLP (2,977 parameters) so one call yields thousands of noise draws; C and sigma are chosen so
    that common scale mistakes (a factor B, 1/B, 1/C or sigma*C) move the standard deviation by over 10%."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 48), nn.ReLU(), nn.Linear(48, 24), nn.ReLU(), nn.Linear(24, 1))
    batch = _random_batch(generator, int(torch.randint(4, 9, (1,), generator=generator)), (1, 6, 6))
    max_grad_norm = float(0.4 + 0.15 * torch.rand(1, generator=generator))
    noise_multiplier = float(1.3 + 0.3 * torch.rand(1, generator=generator))
    return model, batch, max_grad_norm, noise_multiplier


def _scale_advice(ratio: float, batch_size: int, max_grad_norm: float, noise_multiplier: float) -> str:
    known = [
        (
            batch_size,
            "it is about len(batch_data) times too large: add N(0, (noise_multiplier * max_grad_norm)^2) "
            "to the clipped sum, then divide the noisy sum by len(batch_data)",
        ),
        (
            1 / batch_size,
            "it is about len(batch_data) times too small: add the noise to the sum, not to the "
            "average, and divide only once",
        ),
        (
            1 / max_grad_norm,
            "it is about 1/max_grad_norm times too large: the noise's standard deviation is "
            "noise_multiplier * max_grad_norm, not noise_multiplier",
        ),
        (
            noise_multiplier * max_grad_norm,
            "it looks like (noise_multiplier * max_grad_norm)^2 was used as the "
            "standard deviation: torch.normal takes the standard deviation",
        ),
    ]
    for factor, advice in known:
        if abs(ratio / factor - 1) < 0.1:
            return f"; {advice}"
    return ""


def _check_noise(student_dp_grads, noise_case) -> None:
    model, batch, max_grad_norm, noise_multiplier = noise_case
    criterion = nn.BCEWithLogitsLoss()
    size = len(batch)
    context = f"on a batch of {size} with max_grad_norm={max_grad_norm:.3g} and noise_multiplier={noise_multiplier:.3g}"
    how = f"dp_grads {context}"
    expected_std = noise_multiplier * max_grad_norm / size
    noiseless = dp_grads(model, batch, criterion, max_grad_norm, 0.0)
    draws = []
    for _ in range(2):
        result = _check_structure(
            call(student_dp_grads, model, list(batch), criterion, max_grad_norm, noise_multiplier), model, how
        )
        draws.append(torch.cat([(result[n].detach() - noiseless[n]).double().flatten() for n in noiseless]))
    require(
        not torch.equal(draws[0], draws[1]),
        f"{how} returned the same noise twice: draw fresh noise on every call (do not re-seed inside dp_grads)",
    )
    noise = torch.cat(draws).numpy()
    alpha = alpha_per_test(3)
    # the spread about the sample mean first, so that a shifted mean cannot pass for a wrong scale or vice versa
    require_gaussian_std(
        noise,
        expected_std,
        alpha,
        lambda measured_std: (
            f"{how}: the noise per coordinate has standard deviation {measured_std:.4g}, but it "
            f"should be noise_multiplier * max_grad_norm / len(batch_data) = {expected_std:.4g}"
            + _scale_advice(measured_std / expected_std, size, max_grad_norm, noise_multiplier)
        ),
    )
    require_zero_mean(
        noise,
        expected_std,
        alpha,
        f"{how}: the noise has mean {noise.mean():.3g}; it should be centred on 0 (the clipped "
        "average itself must be unbiased)",
    )
    require_noise_distribution(
        noise,
        "gaussian",
        expected_std,
        alpha,
        "dp_grads's noise",
        context,
        "N(0, (noise_multiplier * max_grad_norm / len(batch_data))^2)",
        advice="Draw independent N(0, (noise_multiplier * max_grad_norm)^2) noise for every coordinate of the "
        "clipped sum (torch.normal or torch.randn).",
    )


def check_dp_grads(student_dp_grads, seed: int = 0) -> None:
    """Compare `dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier)` with the reference.

    Checks, in order: the visible example; six noiseless cases on random MLPs (every, no and some examples
    clipped), including that `.grad` is not left holding accumulated gradients; a case where `.grad` already
    holds values on entry; and the noise's mean, standard deviation and Gaussian shape.
    """
    generator = seed_everything(seed)
    # every case is built before the student's code runs, so what it draws cannot change the cases
    cases = [_visible_case()] + _random_cases(generator)
    noise_case = _noise_case(generator)
    for case in cases:
        _check_noiseless_case(student_dp_grads, case, stale_grad=False)
    _check_noiseless_case(student_dp_grads, cases[-1], stale_grad=True)
    _check_noise(student_dp_grads, noise_case)
