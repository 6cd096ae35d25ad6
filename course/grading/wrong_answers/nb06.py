"""Typical wrong answers to notebook 06's graded functions; the hidden-test checks must reject each one.

Each is the lab's own style (per-example `loss.backward()`, `clip_grad_norm_`, `torch.normal`) with exactly
one mistake.
"""

import torch


def _loss(model, criterion, x, t):
    return criterion(model(x).reshape(1), t.float().reshape(1))


def _noisy_average(total, max_grad_norm, noise_multiplier, batch_size):
    return {
        name: (value + torch.normal(0.0, noise_multiplier * max_grad_norm, size=value.shape)) / batch_size
        for name, value in total.items()
    }


# ---- dp_grads -------------------------------------------------------------------------------------------


def dp_grads_batch_clipping(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """One backward pass for the whole batch (summed loss), clipped once."""
    model.zero_grad()
    sum(_loss(model, criterion, x, t) for x, t in batch_data).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    total = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return _noisy_average(total, max_grad_norm, noise_multiplier, len(batch_data))


def dp_grads_per_parameter_clipping(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Clips every parameter tensor to max_grad_norm on its own."""
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, t in batch_data:
        model.zero_grad()
        _loss(model, criterion, x, t).backward()
        for name, p in model.named_parameters():
            torch.nn.utils.clip_grad_norm_(p, max_grad_norm)
            total[name] += p.grad
    model.zero_grad()
    return _noisy_average(total, max_grad_norm, noise_multiplier, len(batch_data))


def _lab_loop(model, batch_data, criterion, max_grad_norm):
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, t in batch_data:
        model.zero_grad()
        _loss(model, criterion, x, t).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        for name, p in model.named_parameters():
            total[name] += p.grad
    model.zero_grad()
    return total


def dp_grads_noise_without_clipping_bound(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Noise standard deviation noise_multiplier instead of noise_multiplier * max_grad_norm."""
    total = _lab_loop(model, batch_data, criterion, max_grad_norm)
    return {
        name: (value + torch.normal(0.0, noise_multiplier, size=value.shape)) / len(batch_data)
        for name, value in total.items()
    }


def dp_grads_noise_not_divided(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Divides the clipped sum by the batch size, then adds the noise meant for the sum."""
    total = _lab_loop(model, batch_data, criterion, max_grad_norm)
    return {
        name: value / len(batch_data) + torch.normal(0.0, noise_multiplier * max_grad_norm, size=value.shape)
        for name, value in total.items()
    }


def dp_grads_noise_variance_as_std(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Passes the variance (noise_multiplier * max_grad_norm)^2 where torch.normal wants the std."""
    total = _lab_loop(model, batch_data, criterion, max_grad_norm)
    return {
        name: (value + torch.normal(0.0, (noise_multiplier * max_grad_norm) ** 2, size=value.shape)) / len(batch_data)
        for name, value in total.items()
    }


def dp_grads_reseeded_noise(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Seeds the generator inside the function, so every call adds the same noise."""
    total = _lab_loop(model, batch_data, criterion, max_grad_norm)
    torch.manual_seed(0)
    return _noisy_average(total, max_grad_norm, noise_multiplier, len(batch_data))


def dp_grads_accumulated_between_examples(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Never clears .grad, so each example's 'gradient' includes all the previous ones."""
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, t in batch_data:
        _loss(model, criterion, x, t).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        for name, p in model.named_parameters():
            total[name] += p.grad
    return _noisy_average(total, max_grad_norm, noise_multiplier, len(batch_data))


def dp_grads_accumulated_left_on_model(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Right numbers, read as differences of a running .grad that is left holding the whole batch's sum."""
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    previous = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, t in batch_data:
        _loss(model, criterion, x, t).backward()
        example = {name: p.grad - previous[name] for name, p in model.named_parameters()}
        previous = {name: p.grad.clone() for name, p in model.named_parameters()}
        norm = torch.sqrt(sum(g.pow(2).sum() for g in example.values()))
        factor = min(1.0, max_grad_norm / (float(norm) + 1e-6))
        for name in total:
            total[name] += factor * example[name]
    return _noisy_average(total, max_grad_norm, noise_multiplier, len(batch_data))


# ---- label_fraction -------------------------------------------------------------------------------------


def label_fraction_count(dataset, label=0):
    """Returns how many examples have the label, not the fraction."""
    return sum(int(target.item() == label) for _, target in (dataset[i] for i in range(len(dataset))))


def label_fraction_ignores_label(dataset, label=0):
    """Always counts label 0."""
    return sum(int(target.item() == 0) for _, target in (dataset[i] for i in range(len(dataset)))) / len(dataset)


def label_fraction_of_positives(dataset, label=0):
    """The fraction of label-1 examples (the mean of the targets), whatever label is asked for."""
    return sum(float(target.item()) for _, target in (dataset[i] for i in range(len(dataset)))) / len(dataset)
