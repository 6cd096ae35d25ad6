"""Tests of `course.lib.dpsgd` (DP-SGD's clipped, noised gradient) and `course.lib.dpsgd_data` (notebook 06).

Noiseless results are compared with an independent oracle written the way the lab teaches it: per-example
`loss.backward()` on a copy of the model, `torch.nn.utils.clip_grad_norm_`, sum, divide.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course.lib import dpsgd, ghost_norms
from course.lib.dpsgd import clipping_factor, dp_grads, dp_grads_fallback_reason, dp_grads_loop, per_example_gradients
from course.lib.dpsgd_data import label_fraction
from course.shown.dpsgd_training import small_cnn
from course.shown.pneumonia import spec_mlp

TOLERANCE = 1e-5


def oracle_noiseless(model, batch_data, criterion, max_grad_norm):
    """Mean of per-example clipped gradients by backward() + clip_grad_norm_, on a copy of the model."""
    model = copy.deepcopy(model)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    total = {name: torch.zeros_like(p) for name, p in trainable}
    for x, t in batch_data:
        model.zero_grad()
        criterion(model(x).reshape(1), t.float().reshape(1)).backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], max_grad_norm)
        for name, p in trainable:
            if p.grad is not None:
                total[name] += p.grad
    return {name: value / len(batch_data) for name, value in total.items()}


def max_difference(result, expected):
    assert list(result) == list(expected)
    return max((result[name] - expected[name]).abs().max().item() for name in expected)


def example_norms(model, batch_data, criterion):
    gradients = per_example_gradients(model, batch_data, criterion)
    return torch.tensor([math.sqrt(sum(float(g.pow(2).sum()) for g in example.values())) for example in gradients])


def random_mlp(generator):
    """A random Sequential of Linear layers and elementwise activations taking (1, 4, 4) images."""
    activations = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.GELU, nn.SiLU]
    depth = int(torch.randint(1, 4, (1,), generator=generator))
    widths = [16] + [int(torch.randint(2, 12, (1,), generator=generator)) for _ in range(depth - 1)] + [1]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < depth - 1:
            layers.append(activations[int(torch.randint(len(activations), (1,), generator=generator))]())
    return nn.Sequential(*layers)


def random_batch(generator, size, shape=(1, 4, 4)):
    return [
        (torch.randn(shape, generator=generator), torch.randint(0, 2, (1,), generator=generator)) for _ in range(size)
    ]


def fast_path_only(monkeypatch):
    """Make the per-example loop unreachable from dp_grads, so a passing call proves the fast path ran."""

    def forbidden(*args, **kwargs):
        raise AssertionError("dp_grads fell back to the per-example loop")

    monkeypatch.setattr(dpsgd, "_loop_clipped_sum", forbidden)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("regime", ["all clipped", "none clipped", "mixed"])
def test_fast_path_matches_per_example_loop_on_random_mlps(seed, regime, monkeypatch):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = random_mlp(generator)
    batch = random_batch(generator, int(torch.randint(1, 13, (1,), generator=generator)))
    criterion = nn.BCEWithLogitsLoss()
    norms = example_norms(model, batch, criterion)
    bound = {"all clipped": 0.5 * norms.min(), "none clipped": 2 * norms.max(), "mixed": norms.median() * (1 + 1e-3)}[
        regime
    ].item()
    expected = oracle_noiseless(model, batch, criterion, bound)
    loop = dp_grads_loop(model, batch, criterion, bound, 0.0)
    fast_path_only(monkeypatch)
    fast = dp_grads(model, batch, criterion, bound, 0.0)
    assert max_difference(loop, expected) <= TOLERANCE
    assert max_difference(fast, expected) <= TOLERANCE


def test_mixed_regime_really_clips_some_examples_and_not_others():
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model, batch, criterion = random_mlp(generator), random_batch(generator, 9), nn.BCEWithLogitsLoss()
    norms = example_norms(model, batch, criterion)
    factors = clipping_factor(norms, norms.median().item() * (1 + 1e-3))
    assert (factors < 1).any() and (factors == 1).any()


@pytest.mark.parametrize(
    "model_factory, shape",
    [
        # sequence inputs: the Gram form of the per-example weight-gradient norm
        (lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Flatten(0), nn.Linear(18, 1)), (3, 4)),
        (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(inplace=True), nn.Flatten(-2), nn.Linear(15, 1)), (5, 2)),
        # nested Sequential, in-place activation, inactive dropout, a lone Linear layer on vectors
        (
            lambda: nn.Sequential(
                nn.Flatten(), nn.Sequential(nn.Linear(16, 8), nn.ReLU(inplace=True)), nn.Dropout(0.0), nn.Linear(8, 1)
            ),
            (1, 4, 4),
        ),
        (lambda: nn.Linear(5, 1), (5,)),
    ],
)
def test_fast_path_handles_other_linear_chains(model_factory, shape, monkeypatch):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model, batch, criterion = model_factory(), random_batch(generator, 6, shape), nn.BCEWithLogitsLoss()
    bound = example_norms(model, batch, criterion).median().item() * (1 + 1e-3)
    expected = oracle_noiseless(model, batch, criterion, bound)
    fast_path_only(monkeypatch)
    assert max_difference(dp_grads(model, batch, criterion, bound, 0.0), expected) <= TOLERANCE


def test_fast_path_in_eval_mode_dropout_and_frozen_first_layer(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 1)).eval()
    model[1].weight.requires_grad_(False)
    batch, criterion = random_batch(torch.Generator().manual_seed(2), 7), nn.BCEWithLogitsLoss()
    expected = oracle_noiseless(model, batch, criterion, 0.05)
    fast_path_only(monkeypatch)
    result = dp_grads(model, batch, criterion, 0.05, 0.0)
    assert list(result) == ["1.bias", "4.weight", "4.bias"]
    assert max_difference(result, expected) <= TOLERANCE


@pytest.mark.parametrize(
    "criterion",
    [
        nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0])),
        nn.BCEWithLogitsLoss(weight=torch.tensor(0.5)),
        nn.BCEWithLogitsLoss(reduction="sum"),
        nn.MSELoss(),
        nn.L1Loss(),
    ],
)
def test_fast_path_criteria_match_the_loop(criterion, monkeypatch):
    torch.manual_seed(4)
    model, batch = random_mlp(torch.Generator().manual_seed(4)), random_batch(torch.Generator().manual_seed(5), 8)
    expected = oracle_noiseless(model, batch, criterion, 0.1)
    fast_path_only(monkeypatch)
    assert max_difference(dp_grads(model, batch, criterion, 0.1, 0.0), expected) <= TOLERANCE


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=3)
        self.norm = nn.GroupNorm(1, 3)
        self.head = nn.Linear(3 * 4 * 4, 1)

    def forward(self, images):
        images = images.reshape(-1, 1, 6, 6)  # one image (1, 6, 6) becomes a batch of one
        return self.head(torch.relu(self.norm(self.conv(images))).flatten(1))


def tied_layers_model():
    shared = nn.Linear(4, 4)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(36, 4), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(4, 1)
    )


def tied_weights_model():
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(36, 4),
        nn.Tanh(),
        nn.Linear(4, 4),
        nn.Tanh(),
        nn.Linear(4, 4),
        nn.Tanh(),
        nn.Linear(4, 1),
    )
    model[5].weight = model[3].weight
    return model


def bounds_for(model, batch, criterion):
    """Clipping bounds that clip every example, none, and about half (the three regimes)."""
    norms = example_norms(model, batch, criterion)
    return {
        "all clipped": 0.5 * norms.min().item(),
        "none clipped": 2 * norms.max().item(),
        "mixed": norms.median().item() * (1 + 1e-3),
    }


def assert_matches_oracle_in_every_regime(model, batch, criterion=None):
    criterion = criterion or nn.BCEWithLogitsLoss()
    for regime, bound in bounds_for(model, batch, criterion).items():
        expected = oracle_noiseless(model, batch, criterion, bound)
        difference = max_difference(dp_grads(model, batch, criterion, bound, 0.0), expected)
        assert difference <= TOLERANCE, f"{regime}: max |dp_grads - loop| = {difference:.2e}"


# ---- models written as students write them: the fast path must not depend on nn.Sequential ----------------


class LabMLP(nn.Module):
    """The public CSC413 DP-SGD lab's network, written as that lab writes it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 600)
        self.fc2 = nn.Linear(600, 600)
        self.fc3 = nn.Linear(600, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.fc3(self.sigmoid(self.fc2(self.sigmoid(self.fc1(x)))))


def cnn_06():
    """Notebook 06's CNN after `ModuleValidator.fix`: every BatchNorm2d replaced by a GroupNorm."""
    from opacus.validators import ModuleValidator

    return ModuleValidator.fix(small_cnn())


class InPlaceMLP(nn.Module):
    """Layer outputs overwritten in place: the gradient the hooks need is the one before the overwrite."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(16, 5), nn.Linear(5, 3), nn.Linear(8, 1)

    def forward(self, x):
        h = self.fc1(x.flatten(-2))
        h.relu_()
        z = self.fc2(h)
        z.tanh_()
        return self.out(torch.cat([z, h], dim=-1))


class UnusedAndFrozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(16, 6).requires_grad_(False)
        self.unused = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.frozen(x.flatten(-3)))))


class ReshapesItsOwnBatch(nn.Module):
    """Takes flat vectors and makes a batch of images itself, then uses nn.Flatten as on a batch."""

    def __init__(self):
        super().__init__()
        self.conv, self.flatten, self.head = nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.flatten(torch.relu(self.conv(x.view(-1, 1, 6, 6)))))


@pytest.mark.parametrize(
    "model_factory, shape",
    [
        (ReshapesItsOwnBatch, (36,)),
        (LabMLP, (784,)),
        (LabMLP, (1, 784)),
        (spec_mlp, (1, 28, 28)),
        (cnn_06, (1, 1, 28, 28)),  # a batch of one image, as the CNN takes it: the batch is concatenated
        (SmallConvNet, (1, 6, 6)),
        (InPlaceMLP, (1, 4, 4)),
        (UnusedAndFrozen, (1, 4, 4)),
    ],
)
def test_fast_path_on_models_of_any_structure_matches_the_loop(model_factory, shape, monkeypatch):
    torch.manual_seed(0)
    model = model_factory()
    batch = random_batch(torch.Generator().manual_seed(1), 5, shape)
    assert dp_grads_fallback_reason(model, batch, nn.BCEWithLogitsLoss()) is None
    fast_path_only(monkeypatch)
    assert_matches_oracle_in_every_regime(model, batch)


def test_unused_layer_gets_zeros_and_frozen_parameters_are_left_out(monkeypatch):
    torch.manual_seed(0)
    model, batch = UnusedAndFrozen(), random_batch(torch.Generator().manual_seed(1), 4)
    fast_path_only(monkeypatch)
    result = dp_grads(model, batch, nn.BCEWithLogitsLoss(), 1.0, 0.0)
    assert list(result) == ["unused.weight", "unused.bias", "norm.weight", "norm.bias", "head.weight", "head.bias"]
    assert torch.equal(result["unused.weight"], torch.zeros(6, 6))


# ---- random compositions of the supported layers, through both per-layer routes --------------------------


def _pick(generator, options):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


class RandomImageModel(nn.Module):
    """Conv2d (random kernel, stride, padding, padding mode, dilation, groups, bias), GroupNorm, LayerNorm and
    Linear layers in a random arrangement, for (1, 1, 6, 6) inputs (a batch of one image)."""

    def __init__(self, generator):
        super().__init__()
        activations = [nn.ReLU(), nn.Tanh(), nn.SiLU(), nn.Identity()]
        channels = _pick(generator, [2, 4])
        stride = _pick(generator, [1, 2])
        padding = _pick(generator, [0, 1] + (["same"] if stride == 1 else []))
        blocks: list[nn.Module] = [
            nn.Conv2d(
                1,
                channels,
                _pick(generator, [1, 2, 3]),
                stride=stride,
                padding=padding,
                dilation=_pick(generator, [1, 2]),
                padding_mode=_pick(generator, ["zeros", "reflect", "circular"]),
                bias=_pick(generator, [True, False]),
            )
        ]
        if _pick(generator, [True, False]):
            affine = _pick(generator, [True, True, False])
            blocks.append(nn.GroupNorm(_pick(generator, [1, 2]), channels, affine=affine))
        blocks.append(_pick(generator, activations))
        if _pick(generator, [True, False]):
            groups = _pick(generator, [1, 2])
            blocks += [nn.Conv2d(channels, 2 * groups, 2, groups=groups), _pick(generator, activations)]
        self.features = nn.ModuleList(blocks)
        with torch.no_grad():
            width = self._features(torch.zeros(1, 1, 6, 6)).shape[1]
        self.norm = nn.LayerNorm(width) if _pick(generator, [True, False]) else nn.Identity()
        self.hidden = nn.Linear(width, 3)
        self.head = nn.Linear(3, 1)

    def _features(self, x):
        for block in self.features:
            x = block(x)
        return x.flatten(1)

    def forward(self, x):
        return self.head(torch.tanh(self.hidden(self.norm(self._features(x)))))


class RandomSequenceModel(nn.Module):
    """Embedding (with or without a padding row) or a Linear layer on a sequence, LayerNorm over the last one
    or two dimensions, Linear on every position, and a Linear head over the flattened sequence."""

    def __init__(self, generator, length, tokens):
        super().__init__()
        self.tokens = tokens
        width = _pick(generator, [3, 5])
        self.embed = nn.Embedding(7, width, padding_idx=_pick(generator, [None, 0])) if tokens else nn.Linear(4, width)
        self.norm = _pick(generator, [nn.LayerNorm(width), nn.LayerNorm((length, width)), nn.Identity()])
        self.mix = nn.Linear(width, 2, bias=_pick(generator, [True, False]))
        self.head = nn.Linear(2 * length, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.mix(self.norm(self.embed(x)))).flatten(-2))


def random_tokens(generator, size, length):
    return [
        (torch.randint(0, 7, (length,), generator=generator), torch.randint(0, 2, (1,), generator=generator))
        for _ in range(size)
    ]


def random_composition(seed):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    size = int(torch.randint(1, 8, (1,), generator=generator))
    kind = seed % 3
    if kind == 0:
        return RandomImageModel(generator), random_batch(generator, size, (1, 1, 6, 6))
    length = int(torch.randint(1, 5, (1,), generator=generator))
    if kind == 1:
        return RandomSequenceModel(generator, length, tokens=True), random_tokens(generator, size, length)
    return RandomSequenceModel(generator, length, tokens=False), random_batch(generator, size, (length, 4))


ROUTES = {
    "cheaper": ghost_norms.prefers_ghost,
    # the Gram form wherever it exists (one-group convolutions), materialised per-example gradients everywhere
    "ghost": lambda layer, a: not (type(layer) is nn.Conv2d and layer.groups != 1),
    "materialised": lambda layer, a: False,
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("seed", range(15))
def test_fast_path_matches_the_loop_on_random_compositions_of_supported_layers(seed, route, monkeypatch):
    model, batch = random_composition(seed)
    monkeypatch.setattr(ghost_norms, "prefers_ghost", ROUTES[route])
    fast_path_only(monkeypatch)
    assert_matches_oracle_in_every_regime(model, batch)


def test_the_cheaper_route_is_chosen_per_layer():
    linear, conv = nn.Linear(600, 600), nn.Conv2d(8, 16, 3, padding=1)
    assert ghost_norms.prefers_ghost(linear, torch.zeros(2, 600))  # vector input: the Gram form is O(1)
    assert not ghost_norms.prefers_ghost(nn.Linear(4, 3), torch.zeros(2, 50, 4))  # long sequence, small weight
    # 14x14 outputs: 2 * 196^2 > 16 * 8 * 9 weights, so per-example gradients are cheaper (Bu et al. 2022)
    assert not ghost_norms.prefers_ghost(conv, torch.zeros(2, 8, 14, 14))
    assert ghost_norms.prefers_ghost(nn.Conv2d(64, 64, 3), torch.zeros(2, 64, 6, 6))
    assert not ghost_norms.prefers_ghost(nn.GroupNorm(2, 8), torch.zeros(2, 8, 3, 3))


# ---- models the fast path cannot do exactly: the loop, with a reason ------------------------------------


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.same, self.head = nn.Linear(36, 4), nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.same(torch.tanh(self.same(torch.tanh(self.fc(x.flatten(-3))))))))


class MeanCentred(nn.Module):
    """Subtracts the mean over dimension 0: per example a singleton dimension, batched the batch."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(36, 4), nn.Linear(4, 1)

    def forward(self, x):
        h = self.fc(x.flatten(-2))
        return self.head(torch.tanh(h - h.mean(0)))


class LastExamplesMixed(nn.Module):
    """A running sum over dimension 0: batched, the first example's output is its own, yet its output gradient
    collects every later example's loss."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(36, 4), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.fc(x.flatten(-2)).cumsum(0)))


class WeightUsedOutsideItsLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(36, 36), nn.Linear(36, 1)

    def forward(self, x):
        h = torch.tanh(self.fc(x.flatten(-3)))
        return self.head(torch.tanh(F.linear(h, self.fc.weight)))


def batchnorm_model():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 1))


def quartic_loss(output, target):
    return ((output - target) ** 4).mean()


@pytest.mark.parametrize(
    "model_factory, shape, criterion, reason",
    [
        (tied_layers_model, (1, 6, 6), nn.BCEWithLogitsLoss(), "'5' (Linear) is registered more than once"),
        (tied_weights_model, (1, 6, 6), nn.BCEWithLogitsLoss(), "'3.weight' and '5.weight' are one tensor"),
        (CalledTwice, (1, 6, 6), nn.BCEWithLogitsLoss(), "'same' (Linear) is called 2 times"),
        (batchnorm_model, (1, 1, 6, 6), nn.BCEWithLogitsLoss(), "'1' (BatchNorm2d) is BatchNorm in training mode"),
        (
            lambda: batchnorm_model().eval(),
            (1, 1, 6, 6),
            nn.BCEWithLogitsLoss(),
            "'1' (BatchNorm2d) has trainable parameters and is not a layer type the fast path supports",
        ),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.PReLU(), nn.Linear(4, 1)),
            (1, 6, 6),
            nn.BCEWithLogitsLoss(),
            "'2' (PReLU) has trainable parameters",
        ),
        (MeanCentred, (1, 6, 6), nn.BCEWithLogitsLoss(), "runtime guard: example 0's gradient"),
        (LastExamplesMixed, (1, 6, 6), nn.BCEWithLogitsLoss(), "runtime guard: example 0's gradient"),
        (WeightUsedOutsideItsLayer, (1, 6, 6), nn.BCEWithLogitsLoss(), "runtime guard"),
        (lambda: spec_mlp(36, (5,)), (1, 6, 6), quartic_loss, "the criterion <function quartic_loss"),
    ],
)
def test_models_the_fast_path_cannot_do_exactly_take_the_loop_with_a_reason(
    model_factory, shape, criterion, reason, monkeypatch
):
    torch.manual_seed(7)
    model = model_factory()
    batch = random_batch(torch.Generator().manual_seed(8), 6, shape)
    explanation = dp_grads_fallback_reason(model, batch, criterion)
    assert explanation is not None and reason in explanation and "\n" not in explanation
    used_loop = []
    loop = dpsgd._loop_clipped_sum
    monkeypatch.setattr(dpsgd, "_loop_clipped_sum", lambda *args: used_loop.append(True) or loop(*args))
    assert_matches_oracle_in_every_regime(model, batch, criterion)
    assert used_loop


def test_embedding_configurations_that_mix_examples_take_the_loop():
    model = nn.Sequential(nn.Embedding(7, 3, scale_grad_by_freq=True), nn.Flatten(0), nn.Linear(12, 1))
    batch = random_tokens(torch.Generator().manual_seed(1), 5, 4)
    assert "scale_grad_by_freq" in dp_grads_fallback_reason(model, batch, nn.BCEWithLogitsLoss())
    assert_matches_oracle_in_every_regime(model, batch)


def test_without_the_runtime_guard_a_functional_mixing_op_would_give_a_wrong_gradient(monkeypatch):
    torch.manual_seed(7)
    model, batch = MeanCentred(), random_batch(torch.Generator().manual_seed(8), 6, (1, 6, 6))
    criterion = nn.BCEWithLogitsLoss()
    expected = oracle_noiseless(model, batch, criterion, 1.0)
    assert max_difference(dp_grads(model, batch, criterion, 1.0, 0.0), expected) <= TOLERANCE
    monkeypatch.setattr(dpsgd, "GUARD_EXAMPLES", 0)
    assert dp_grads_fallback_reason(model, batch, criterion) is None
    assert max_difference(dp_grads(model, batch, criterion, 1.0, 0.0), expected) > 1e-3


class FunctionalDropout(nn.Module):
    """Random numbers drawn in forward, where no hook can see them: batched and per example they differ."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(16, 8), nn.Linear(8, 1)

    def forward(self, x):
        return self.head(F.dropout(torch.relu(self.fc(x.flatten(-3))), 0.5, training=True))


@pytest.mark.parametrize("model_factory", [lambda: spec_mlp(16, (4,)), cnn_06, batchnorm_model, FunctionalDropout])
def test_global_random_numbers_are_drawn_as_the_loop_draws_them(model_factory):
    torch.manual_seed(0)
    model = model_factory()
    shape = {cnn_06: (1, 1, 28, 28), batchnorm_model: (1, 1, 6, 6)}.get(model_factory, (1, 4, 4))
    batch = random_batch(torch.Generator().manual_seed(1), 4, shape)
    criterion = nn.BCEWithLogitsLoss()
    torch.manual_seed(5)
    loop = dp_grads_loop(model, batch, criterion, 0.5, 1.0)
    after_loop = torch.rand(3)
    torch.manual_seed(5)
    fast = dp_grads(model, batch, criterion, 0.5, 1.0)
    assert max_difference(fast, loop) <= TOLERANCE  # the same noise, and for the dropout model the same masks
    assert torch.equal(torch.rand(3), after_loop)


def test_a_per_output_weight_vector_is_refused_as_the_loop_refuses_it():
    # a weight of 2 entries cannot weight one output; batched over 2 examples it would silently broadcast
    criterion = nn.BCEWithLogitsLoss(weight=torch.tensor([1.0, 3.0]))
    batch = random_batch(torch.Generator().manual_seed(2), 2)
    for function in (dp_grads, dp_grads_loop):
        with pytest.raises(RuntimeError, match="broadcast"):
            function(spec_mlp(16, (4,)), batch, criterion, 1.0, 0.0)


def test_active_dropout_takes_the_loop(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the batched fast path would draw different dropout masks than the loop")

    monkeypatch.setattr(dpsgd, "_record", forbidden)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 1))
    batch = random_batch(torch.Generator().manual_seed(2), 4)
    assert "'2' (Dropout) draws random numbers" in dpsgd.dp_grads_fallback_reason(model, batch, nn.BCEWithLogitsLoss())
    result = dp_grads(model, batch, nn.BCEWithLogitsLoss(), 1.0, 0.0)
    assert list(result) == [name for name, _ in model.named_parameters()]


def test_inputs_of_different_shapes_take_the_loop():
    torch.manual_seed(9)
    model = nn.Linear(3, 1)
    batch = [
        (torch.randn(3), torch.tensor([1])),
        (torch.randn(1, 3), torch.tensor([0])),
        (torch.randn(3), torch.tensor([0])),
    ]
    expected = oracle_noiseless(model, batch, nn.BCEWithLogitsLoss(), 0.3)
    assert max_difference(dp_grads(model, batch, nn.BCEWithLogitsLoss(), 0.3, 0.0), expected) <= TOLERANCE


def visible_linear_model():
    """The spec's visible example: 5 inputs, all weights and the bias zero, so every logit is 0."""
    model = nn.Linear(5, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


VISIBLE_BATCH = [
    # sigmoid(0) = 0.5, so the BCE gradient is (0.5 - t) * (x, 1): weight [1, 2, 3, 4, 5], bias 0.5, norm
    # sqrt(55.25) = 7.43
    (torch.tensor([2.0, 4.0, 6.0, 8.0, 10.0]), torch.tensor([0])),
    # weight [0, 0, 0, 0, -1], bias -0.5, norm sqrt(1.25)
    (torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0]), torch.tensor([1])),
]


@pytest.mark.parametrize("function", [dp_grads, dp_grads_loop])
def test_visible_example_unclipped_is_the_plain_average(function):
    result = function(visible_linear_model(), VISIBLE_BATCH, nn.BCEWithLogitsLoss(), 7.49, 0.0)
    assert torch.allclose(result["weight"], torch.tensor([[0.5, 1.0, 1.5, 2.0, 2.0]]), atol=1e-6)
    assert torch.allclose(result["bias"], torch.tensor([0.0]), atol=1e-6)


@pytest.mark.parametrize("function", [dp_grads, dp_grads_loop])
def test_visible_example_clipped_to_one(function):
    result = function(visible_linear_model(), VISIBLE_BATCH, nn.BCEWithLogitsLoss(), 1.0, 0.0)
    first, second = 1 / (math.sqrt(55.25) + 1e-6), 1 / (math.sqrt(1.25) + 1e-6)
    expected_weight = (first * torch.tensor([1.0, 2, 3, 4, 5]) + second * torch.tensor([0.0, 0, 0, 0, -1])) / 2
    assert torch.allclose(result["weight"], expected_weight.reshape(1, 5), atol=1e-6)
    assert torch.allclose(result["bias"], torch.tensor([(first - second) * 0.5 / 2]), atol=1e-6)


def test_the_7_49_arithmetic_gradient_1_to_5_with_bias_1():
    norm = math.sqrt(1 + 4 + 9 + 16 + 25 + 1)
    assert norm == pytest.approx(7.4833, abs=1e-4)
    assert clipping_factor(torch.tensor([norm]), 7.49).item() == 1.0
    assert clipping_factor(torch.tensor([norm]), 7.48).item() < 1.0
    # squared error at output 0 with target -0.5 has derivative 2 * (0 - (-0.5)) = 1: gradient (x, 1)
    single = [(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([-0.5]))]
    unclipped = dp_grads(visible_linear_model(), single, nn.MSELoss(), 7.49, 0.0)
    assert torch.equal(unclipped["weight"], torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert torch.equal(unclipped["bias"], torch.tensor([1.0]))
    clipped = dp_grads(visible_linear_model(), single, nn.MSELoss(), 7.0, 0.0)
    clipped_norm = math.sqrt(float(clipped["weight"].pow(2).sum() + clipped["bias"].pow(2).sum()))
    assert clipped_norm == pytest.approx(7.0, abs=1e-5)


@pytest.mark.parametrize("function", [dp_grads, dp_grads_loop])
@pytest.mark.parametrize("noise_multiplier, max_grad_norm, batch_size", [(1.0, 0.5, 4), (2.5, 3.0, 7)])
def test_noise_std_per_coordinate_is_sigma_c_over_batch_size(function, noise_multiplier, max_grad_norm, batch_size):
    torch.manual_seed(0)
    model = spec_mlp(36, (64, 32))  # 4,481 coordinates of noise per call
    batch = random_batch(torch.Generator().manual_seed(1), batch_size, (1, 6, 6))
    criterion = nn.BCEWithLogitsLoss()
    noiseless = function(model, batch, criterion, max_grad_norm, 0.0)
    noises = []
    for seed in range(4):
        noisy = function(
            model, batch, criterion, max_grad_norm, noise_multiplier, generator=torch.Generator().manual_seed(seed)
        )
        noises.append(torch.cat([(noisy[name] - noiseless[name]).flatten() for name in noiseless]))
    noise = torch.cat(noises).double()
    expected_std = noise_multiplier * max_grad_norm / batch_size
    # 17,924 draws: the sample std is within 5.3 / sqrt(2n) = 2.8% of the truth except with probability 1e-7
    assert noise.std().item() == pytest.approx(expected_std, rel=0.028)
    assert abs(noise.mean().item()) <= 5.3 * expected_std / math.sqrt(noise.numel())
    # a standardised fourth moment of 3 rules out non-Gaussian noise of the right scale (e.g. Laplace: 6)
    assert ((noise / expected_std) ** 4).mean().item() == pytest.approx(3.0, abs=0.3)
    # independent across calls: successive draws are uncorrelated
    assert abs(torch.corrcoef(torch.stack(noises[:2]))[0, 1].item()) < 0.08


def test_generator_makes_noise_reproducible_and_global_generator_is_the_default():
    torch.manual_seed(0)
    model, batch = spec_mlp(16, (4,)), random_batch(torch.Generator().manual_seed(1), 3)
    criterion = nn.BCEWithLogitsLoss()
    first = dp_grads(model, batch, criterion, 1.0, 1.0, generator=torch.Generator().manual_seed(5))
    again = dp_grads(model, batch, criterion, 1.0, 1.0, generator=torch.Generator().manual_seed(5))
    assert max_difference(first, again) == 0
    torch.manual_seed(11)
    global_first = dp_grads(model, batch, criterion, 1.0, 1.0)
    torch.manual_seed(11)
    assert max_difference(dp_grads(model, batch, criterion, 1.0, 1.0), global_first) == 0
    assert max_difference(dp_grads(model, batch, criterion, 1.0, 1.0), global_first) > 0


@pytest.mark.parametrize("model_factory", [lambda: spec_mlp(16, (4, 3)), SmallConvNet])
def test_grad_is_left_as_it_was_found(model_factory):
    torch.manual_seed(0)
    model = model_factory()
    batch = random_batch(torch.Generator().manual_seed(1), 5, (1, 6, 6) if model_factory is SmallConvNet else (1, 4, 4))
    criterion = nn.BCEWithLogitsLoss()
    dp_grads(model, batch, criterion, 0.1, 1.0)
    assert all(p.grad is None for p in model.parameters())
    stale = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = stale[name].clone()
    with_stale_grad = dp_grads(model, batch, criterion, 0.1, 0.0)
    assert all(torch.equal(p.grad, stale[name]) for name, p in model.named_parameters())
    model.zero_grad(set_to_none=True)
    assert max_difference(with_stale_grad, dp_grads(model, batch, criterion, 0.1, 0.0)) == 0


def test_parameters_and_training_mode_are_unchanged_and_no_grad_context_is_fine():
    torch.manual_seed(0)
    model = spec_mlp(16, (4,))
    before = copy.deepcopy(model.state_dict())
    batch = random_batch(torch.Generator().manual_seed(1), 3)
    with torch.no_grad():
        result = dp_grads(model, batch, nn.BCEWithLogitsLoss(), 1.0, 0.0)
    assert max_difference(result, oracle_noiseless(model, batch, nn.BCEWithLogitsLoss(), 1.0)) <= TOLERANCE
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
    assert all(not value.requires_grad for value in result.values())


def test_targets_may_be_numpy_arrays_as_medmnist_gives():
    torch.manual_seed(0)
    model = spec_mlp(16, (4,))
    batch = random_batch(torch.Generator().manual_seed(1), 4)
    as_arrays = [(x, np.array([int(t)])) for x, t in batch]
    criterion = nn.BCEWithLogitsLoss()
    assert (
        max_difference(dp_grads(model, as_arrays, criterion, 0.2, 0.0), dp_grads(model, batch, criterion, 0.2, 0.0))
        == 0
    )


def test_spec_mlp_architecture():
    model = spec_mlp()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 64), (64, 1)]
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 1)
    assert model(torch.zeros(1, 28, 28)).numel() == 1
    with pytest.raises(ValueError, match="hidden width"):
        spec_mlp(784, (128, 0))
    with pytest.raises(ValueError, match="in_features"):
        spec_mlp(0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_data": []}, "empty"),
        ({"batch_data": torch.zeros(3, 5)}, "list of"),
        ({"batch_data": [(torch.zeros(5),)]}, "pair"),
        ({"batch_data": [([0.0] * 5, torch.tensor([1]))]}, "x must be a torch.Tensor"),
        ({"batch_data": [(torch.zeros(5), torch.tensor([1, 0]))]}, "one number"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"max_grad_norm": float("nan")}, "max_grad_norm"),
        ({"noise_multiplier": -0.1}, "noise_multiplier"),
        ({"noise_multiplier": float("inf")}, "noise_multiplier"),
        ({"generator": 3}, "generator"),
        ({"model": lambda x: x.sum()}, "nn.Module"),
        ({"model": nn.Linear(5, 2)}, "one logit"),
        ({"model": nn.Linear(5, 1).requires_grad_(False)}, "requires_grad"),
        ({"criterion": "bce"}, "criterion"),
    ],
)
@pytest.mark.parametrize("function", [dp_grads, dp_grads_loop])
def test_bad_arguments_raise_value_error(function, change, message):
    arguments = {
        "model": nn.Linear(5, 1),
        "batch_data": VISIBLE_BATCH,
        "criterion": nn.BCEWithLogitsLoss(),
        "max_grad_norm": 1.0,
        "noise_multiplier": 1.0,
        "generator": None,
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        function(**arguments)


def test_clipping_factor_validates():
    with pytest.raises(ValueError, match="max_grad_norm"):
        clipping_factor(torch.ones(2), 0)
    with pytest.raises(ValueError, match="norms"):
        clipping_factor([1.0, 2.0], 1.0)
    assert clipping_factor(torch.zeros(1), 1.0).item() == 1.0


# ---- label_fraction (course.lib.dpsgd_data) -----------------------------------------------------------------


def test_label_fraction_counts_targets_of_any_form():
    dataset = [(torch.zeros(1, 2, 2), np.array([label])) for label in (0, 1, 1, 0, 1)]
    assert label_fraction(dataset) == pytest.approx(0.4)
    assert label_fraction(dataset, label=1) == pytest.approx(0.6)
    assert label_fraction(dataset, label=2) == 0.0
    as_tensors = [(image, torch.from_numpy(target)) for image, target in dataset]
    assert label_fraction(as_tensors, 1) == pytest.approx(0.6)
    assert label_fraction([(None, 3), (None, 3)], 3) == 1.0


@pytest.mark.parametrize(
    "dataset, label, message",
    [
        ([], 0, "empty"),
        ([(None, 0)], 0.5, "integer"),
        ([(None, 0)], True, "integer"),
        (5, 0, "len"),
        ([(None, torch.tensor([0, 1]))], 0, "one label"),
        ([(None, 0, 1)], 0, "pair"),
    ],
)
def test_label_fraction_rejects_bad_input(dataset, label, message):
    with pytest.raises(ValueError, match=message):
        label_fraction(dataset, label)


def test_label_fraction_on_real_pneumoniamnist():
    medmnist = pytest.importorskip("medmnist")
    root = Path(os.environ.get("DP_COURSE_DATA", "data")) / "medmnist"
    if not (root / "pneumoniamnist.npz").exists():
        pytest.skip(f"PneumoniaMNIST not found under {root}")
    # published split statistics: 1,214 of 4,708 training and 234 of 624 test X-rays are normal (label 0)
    assert label_fraction(medmnist.PneumoniaMNIST(split="train", root=str(root), download=False)) == 1214 / 4708
    assert label_fraction(medmnist.PneumoniaMNIST(split="test", root=str(root), download=False), 1) == 390 / 624
