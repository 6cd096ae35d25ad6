"""Tests of `course.shown.dpsgd_training`: the DP-SGD loop around a `dp_grads`, the small CNN, virtual batches.

All on small synthetic 1x28x28 images whose label is whether the left half is brighter than the right, so
every test runs in seconds and is seeded.
"""

import warnings

import pytest
import torch
from opacus.accountants.utils import get_noise_multiplier
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import TensorDataset

from course.lib.dpsgd import dp_grads
from course.shown.dpsgd_training import small_cnn, train_dp_sgd, train_private_virtual_batches
from course.shown.pneumonia import binary_accuracy, spec_mlp

DELTA = 1e-5


@pytest.fixture(autouse=True)
def quiet_opacus():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Optimal order is the")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


def bright_left_images(size: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(size, 1, 28, 28, generator=generator) * 2 - 1
    labels = (images[..., :14].mean(dim=(1, 2, 3)) > images[..., 14:].mean(dim=(1, 2, 3))).long()
    images[..., :14] += 0.5 * (2 * labels.float() - 1).reshape(-1, 1, 1, 1)  # a clear signal to learn
    return TensorDataset(images, labels.reshape(-1, 1))


class Recorder:
    """Wraps a private-gradient function and records the batches it is given."""

    def __init__(self, function):
        self.function, self.batch_sizes = function, []

    def __call__(self, model, batch_data, criterion, max_grad_norm, noise_multiplier):
        assert isinstance(batch_data, list) and all(x.shape == (1, 28, 28) and t.shape == (1,) for x, t in batch_data)
        self.batch_sizes.append(len(batch_data))
        return self.function(model, batch_data, criterion, max_grad_norm, noise_multiplier)


def test_train_dp_sgd_learns_within_its_epsilon_with_poisson_batches():
    training, validation = bright_left_images(600, 0), bright_left_images(300, 1)
    epochs, expected_batch_size, target = 4, 60, 4.0
    sigma = get_noise_multiplier(
        target_epsilon=target,
        target_delta=DELTA,
        sample_rate=expected_batch_size / 600,
        epochs=epochs,
        accountant="rdp",
    )
    torch.manual_seed(0)
    model = spec_mlp(784, (16,))
    untrained = binary_accuracy(model, validation)
    recorder = Recorder(dp_grads)
    trained, history = train_dp_sgd(
        model, training, validation, recorder, epochs, sigma, 0.5, expected_batch_size, lr=0.5, delta=DELTA
    )
    assert trained is model and [h[0] for h in history] == [1, 2, 3, 4]
    epsilons = [h[3] for h in history]
    assert all(a < b for a, b in zip(epsilons, epsilons[1:])) and epsilons[-1] <= target * 1.01
    # 10 Poisson batches an epoch: sizes vary around 60 (Binomial(600, 0.1), sd 7.3)
    assert len(recorder.batch_sizes) == 40 and len(set(recorder.batch_sizes)) > 5
    assert abs(sum(recorder.batch_sizes) / 40 - 60) < 6
    assert history[-1][2] > max(untrained, 0.8)


def test_train_dp_sgd_divides_the_sum_by_the_expected_batch_size_and_steps_on_empty_batches():
    training = bright_left_images(20, 2)
    calls = []

    def ones(model, batch_data, criterion, max_grad_norm, noise_multiplier):
        assert len(batch_data) > 0, "an empty batch must not reach dp_grads"
        calls.append(len(batch_data))
        return {name: torch.ones_like(p) for name, p in model.named_parameters()}

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1))
    before = model[1].bias.detach().clone()
    # q = 1/20: 20 steps, about a third of them with an empty batch; no noise, no momentum
    train_dp_sgd(
        model,
        training,
        training,
        ones,
        epochs=1,
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        expected_batch_size=1,
        lr=0.1,
        delta=DELTA,
        momentum=0.0,
        seed=3,
    )
    assert len(calls) < 20
    # each step moved the bias by lr * (batch size / expected batch size) = 0.1 * len(batch)
    assert model[1].bias.item() == pytest.approx(before.item() - 0.1 * sum(calls), abs=1e-5)


def test_empty_batches_still_take_a_noisy_step():
    training = bright_left_images(20, 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1))
    before = model[1].weight.detach().clone()
    calls = []

    def zeros(model_, batch_data, criterion, max_grad_norm, noise_multiplier):
        calls.append(len(batch_data))
        return {name: torch.zeros_like(p) for name, p in model_.named_parameters()}

    # q = 1/20: each of the 20 steps has an empty batch with probability 0.95^20 = 0.36
    train_dp_sgd(
        model,
        training,
        training,
        zeros,
        epochs=1,
        noise_multiplier=2.0,
        max_grad_norm=0.5,
        expected_batch_size=1,
        lr=1.0,
        delta=DELTA,
        momentum=0.0,
        seed=0,
    )
    empty_steps = 20 - len(calls)
    assert empty_steps >= 1
    # only the empty steps moved the weights: each by noise of sd lr * sigma * C / expected batch size = 1 per
    # coordinate. 784 coordinates: the sample sd is within 15% (6 standard errors) but for probability 1e-8.
    change = (model[1].weight.detach() - before).flatten()
    assert change.std().item() == pytest.approx(empty_steps**0.5, rel=0.15)


def test_small_cnn_is_rejected_by_opacus_and_fixed_with_group_norm():
    torch.manual_seed(0)
    model = small_cnn()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 1)
    errors = ModuleValidator.validate(model, strict=False)
    assert len(errors) == 2 and all("BatchNorm" in str(error) for error in errors)
    fixed = ModuleValidator.fix(model)
    assert ModuleValidator.validate(fixed, strict=False) == []
    assert sum(isinstance(m, nn.GroupNorm) for m in fixed.modules()) == 2
    assert fixed(torch.zeros(3, 1, 28, 28)).shape == (3, 1)


def test_virtual_batches_keep_physical_batches_small_and_reach_the_epsilon():
    training, validation = bright_left_images(240, 5), bright_left_images(200, 6)
    torch.manual_seed(0)
    model = ModuleValidator.fix(small_cnn((4, 4)))
    physical = []
    model[0].register_forward_hook(lambda module, inputs, output: physical.append(len(inputs[0])))
    # (the PRV accountant's noise search is slow at large epsilons, so the test uses epsilon 1)
    trained, history = train_private_virtual_batches(
        model,
        training,
        validation,
        epochs=3,
        target_epsilon=1.0,
        delta=DELTA,
        max_grad_norm=0.1,
        batch_size=48,
        max_physical_batch_size=16,
        lr=1.0,
    )
    assert trained is model and len(history) == 3
    epsilons = [h[3] for h in history]
    assert all(a < b for a, b in zip(epsilons, epsilons[1:])) and epsilons[-1] <= 1.0 * 1.05
    # Poisson batches of about 48 examples went through in pieces of at most 16 (accuracy() runs the whole
    # validation set of 200 at once; those calls are left out). 3 epochs of 5 batches draw Binomial(3600, 0.2)
    # examples, 720 +- 24: within 20% but for probability below 1e-7.
    pieces = [size for size in physical if size != len(validation)]
    assert max(pieces) <= 16 and sum(pieces) == pytest.approx(3 * 240, rel=0.2)
    assert not any(hasattr(p, "grad_sample") for p in model.parameters()), "Opacus's state must be removed"
    assert history[-1][2] > 0.8
