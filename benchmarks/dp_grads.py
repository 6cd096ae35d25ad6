"""Cost of one DP-SGD gradient on a batch of 500, for several models, against a plain forward+backward.

Run: `python benchmarks/dp_grads.py [--repeats N] [--loop-repeats N] [--batch-size B] [--models NAME ...]`.

Every method computes the same thing (per-example clipping to C, Gaussian noise sigma*C on the sum, division
by the batch size) from the list of (x, t) pairs that `dp_grads` takes (the Opacus methods get the batched
tensor, as their DataLoader would give them):

- per-example loop: `dp_grads_loop`, one forward and backward per example;
- torch.func vmap:  per-example gradients with `vmap(grad(...))`, then clip, sum and noise;
- Opacus hooks:     `GradSampleModule` + `DPOptimizer.pre_step()` (per-example gradients from hooks);
- Opacus ghost:     `GradSampleModuleFastGradientClipping` + `DPOptimizerFastGradientClipping` +
                    `DPLossFastGradientClipping` (what `make_private(..., grad_sample_mode="ghost")` builds):
                    per-example norms without per-example gradients, then a second, reweighted backward pass;
- dp_grads:         `course.lib.dpsgd.dp_grads` (hooks on every supported layer, mixed ghost norms, the clipped
                    sum from the recorded activations, runtime guard), and the same with the guard switched off
                    (`GUARD_EXAMPLES = 0`) to measure what the guard costs.

Models: the course's `spec_mlp`; the public CSC413 DP-SGD lab's 784-600-600-1 sigmoid MLP written as that lab
writes it (an `nn.Module` with fc1, fc2, fc3 and a sigmoid) and the same network as an `nn.Sequential`;
notebook 06's CNN after `ModuleValidator.fix` (GroupNorm); and three models the fast path must refuse, where
`dp_grads` falls back to the loop (a Linear layer applied twice, the CNN with BatchNorm in training mode, and
an MLP whose forward subtracts the batch mean, which only the runtime guard can see).

The baseline is a non-private step of the same model: forward, BCEWithLogitsLoss, backward on the batched
tensor. Methods are timed in interleaved rounds (one call of each per round) so that load on the machine hits
all of them alike; the table reports per-method medians and their ratio to the baseline's median. Before
timing, each method's noiseless result is compared with the per-example loop ("n/a" marks a method that
refuses the model; a large difference marks one that silently computes something else).
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from course.lib import dpsgd
from course.lib.dpsgd import dp_grads, dp_grads_fallback_reason, dp_grads_loop
from course.shown.dpsgd_training import small_cnn
from course.shown.pneumonia import spec_mlp

MAX_GRAD_NORM = 1.0
NOISE_MULTIPLIER = 1.1


# ---------------------------------------------------------------------------------------------------- models


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


def lab_mlp_sequential() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 600), nn.Sigmoid(), nn.Linear(600, 600), nn.Sigmoid(), nn.Linear(600, 1))


def cnn_06() -> nn.Module:
    """Notebook 06's CNN after `ModuleValidator.fix`, which replaces each BatchNorm2d by a GroupNorm."""
    from opacus.validators import ModuleValidator

    return ModuleValidator.fix(small_cnn())


class TiedMLP(nn.Module):
    """One hidden Linear layer applied twice: its gradient sums over both uses."""

    def __init__(self):
        super().__init__()
        self.fc1, self.shared, self.out = nn.Linear(784, 128), nn.Linear(128, 128), nn.Linear(128, 1)

    def forward(self, x):
        return self.out(torch.relu(self.shared(torch.relu(self.shared(torch.relu(self.fc1(x)))))))


class MeanCentredMLP(nn.Module):
    """Subtracts the mean over dimension 0 in forward: per example a no-op, batched a mix of all examples."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 128), nn.Linear(128, 1)

    def forward(self, x):
        hidden = self.fc1(x)
        return self.fc2(torch.relu(hidden - hidden.mean(0)))


@dataclass
class Case:
    name: str
    factory: type | object
    example_shape: tuple[int, ...]  # one x as the model takes it alone
    batched_shape: tuple[int, ...]  # one row of the batched tensor the plain step and Opacus get
    supported: bool  # whether dp_grads's fast path should take it


CASES = {
    "spec_mlp": Case("spec_mlp() (Sequential 784-128-64-1, ReLU)", spec_mlp, (1, 28, 28), (1, 28, 28), True),
    "lab": Case("lab MLP, class-style (784-600-600-1, sigmoid)", LabMLP, (784,), (784,), True),
    "lab_sequential": Case("lab MLP as nn.Sequential", lab_mlp_sequential, (784,), (784,), True),
    "cnn": Case("06 CNN, GroupNorm (ModuleValidator.fix)", cnn_06, (1, 1, 28, 28), (1, 28, 28), True),
    "tied": Case("tied: one Linear applied twice", TiedMLP, (784,), (784,), False),
    "batchnorm": Case("06 CNN with BatchNorm (training mode)", small_cnn, (1, 1, 28, 28), (1, 28, 28), False),
    "mean_centred": Case("MLP with x - x.mean(0) in forward", MeanCentredMLP, (784,), (784,), False),
}


# --------------------------------------------------------------------------------------------------- methods


def plain_step(model, images, targets, criterion):
    """The non-private baseline: one batched forward and backward into .grad."""
    model.zero_grad()
    criterion(model(images).reshape(-1), targets).backward()


def dp_grads_vmap(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Per-example gradients with torch.func, then the same clipping, noise and averaging."""
    inputs = torch.stack([x for x, _ in batch_data])
    targets = torch.stack([t.float().reshape(1) for _, t in batch_data])
    parameters = {name: p.detach() for name, p in model.named_parameters()}

    def example_loss(params, x, t):
        return criterion(functional_call(model, params, (x,)).reshape(1), t)

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))(parameters, inputs, targets)
    norms = torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in per_example.values()]), dim=0)
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    std = noise_multiplier * max_grad_norm
    return {
        name: (torch.einsum("b,b...->...", factors, g) + std * torch.randn_like(g[0])) / len(batch_data)
        for name, g in per_example.items()
    }


def dp_grads_without_guard(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    saved = dpsgd.GUARD_EXAMPLES
    dpsgd.GUARD_EXAMPLES = 0
    try:
        return dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier)
    finally:
        dpsgd.GUARD_EXAMPLES = saved


class OpacusStep:
    """One private gradient through Opacus: wrapped module, DP optimizer's pre_step (clip, noise, scale)."""

    def __init__(self, model, criterion, batch_size, max_grad_norm, noise_multiplier, ghost: bool):
        from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
        from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
        from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

        model = copy.deepcopy(model)
        settings = dict(
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=batch_size,
            loss_reduction="mean",
        )
        sgd = torch.optim.SGD(model.parameters(), lr=0.1)
        if ghost:
            self.module = GradSampleModuleFastGradientClipping(
                model, max_grad_norm=max_grad_norm, use_ghost_clipping=True, loss_reduction="mean"
            )
            self.optimizer = DPOptimizerFastGradientClipping(sgd, **settings)
            self.criterion = DPLossFastGradientClipping(
                self.module, self.optimizer, copy.deepcopy(criterion), loss_reduction="mean"
            )
        else:
            self.module = GradSampleModule(model, loss_reduction="mean")
            self.optimizer = DPOptimizer(sgd, **settings)
            self.criterion = criterion

    def __call__(self, images, targets):
        self.optimizer.zero_grad(set_to_none=True)
        self.criterion(self.module(images).reshape(-1), targets).backward()
        self.optimizer.pre_step()
        return {name: p.grad.detach().clone() for name, p in self.module._module.named_parameters()}


def make_batch(case: Case, batch_size: int, generator: torch.Generator):
    return [
        (torch.rand(case.example_shape, generator=generator), torch.randint(0, 2, (1,), generator=generator))
        for _ in range(batch_size)
    ]


def _opacus_step(steps, images, targets, noise):
    return steps[noise](images, targets)


def methods_for(model, batch, images, targets, criterion):
    """name -> callable(noise_multiplier) returning the private gradient; a method that refuses is left out
    and its error returned in the second dict."""

    def private(function):
        return lambda noise: function(model, batch, criterion, MAX_GRAD_NORM, noise)

    methods = {"per-example loop": private(dp_grads_loop), "torch.func vmap": private(dp_grads_vmap)}
    refused = {}
    for name, ghost in (("Opacus GradSampleModule (hooks)", False), ("Opacus ghost clipping", True)):
        try:
            steps = {
                noise: OpacusStep(model, criterion, len(batch), MAX_GRAD_NORM, noise, ghost)
                for noise in (0.0, NOISE_MULTIPLIER)
            }
            methods[name] = functools.partial(_opacus_step, steps, images, targets)
        except Exception as error:  # Opacus refuses some models (BatchNorm): report, do not time
            refused[name] = f"{type(error).__name__}"
    methods["dp_grads"] = private(dp_grads)
    methods["dp_grads, guard off"] = private(dp_grads_without_guard)
    return methods, refused


# ------------------------------------------------------------------------------------------------ the run


def benchmark(case: Case, arguments) -> dict:
    torch.manual_seed(0)
    model = case.factory()
    criterion = nn.BCEWithLogitsLoss()
    batch = make_batch(case, arguments.batch_size, torch.Generator().manual_seed(1))
    images = torch.stack([x for x, _ in batch]).reshape(len(batch), *case.batched_shape)
    targets = torch.stack([t for _, t in batch]).float().reshape(-1)
    methods, refused = methods_for(model, batch, images, targets, criterion)

    # noiseless agreement with the loop; on BatchNorm in training mode nothing batched can agree, by design
    state = copy.deepcopy(model.state_dict())
    expected = dp_grads_loop(model, batch, criterion, MAX_GRAD_NORM, 0.0)
    differences = {}
    for name, method in list(methods.items()):
        try:
            result = method(0.0)
            differences[name] = max(float((result[k] - expected[k]).abs().max()) for k in expected)
        except Exception as error:
            refused[name] = type(error).__name__
            del methods[name]
    model.load_state_dict(state)  # BatchNorm's running statistics moved during the checks

    timings: dict[str, list[float]] = {name: [] for name in ["plain forward+backward", *methods]}
    for round_index in range(arguments.repeats):
        start = time.perf_counter()
        plain_step(model, images, targets, criterion)
        timings["plain forward+backward"].append(time.perf_counter() - start)
        for name, method in methods.items():
            if name == "per-example loop" and round_index >= arguments.loop_repeats:
                continue
            if not case.supported and name.startswith("dp_grads") and round_index >= arguments.loop_repeats:
                continue  # dp_grads falls back to the loop here: time it as often as the loop
            start = time.perf_counter()
            method(NOISE_MULTIPLIER)
            timings[name].append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    medians = {name: statistics.median(times) for name, times in timings.items()}
    return {
        "medians": medians,
        "differences": differences,
        "refused": refused,
        "reason": dp_grads_fallback_reason(model, batch, criterion),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--loop-repeats", type=int, default=3, help="rounds that also time the slow loop")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--models", nargs="+", choices=list(CASES), default=list(CASES))
    arguments = parser.parse_args()
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    # Opacus's hooks warn on every backward pass that the input needs no gradient, which is expected here
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message=".*secure_mode.*")

    print(
        f"One DP-SGD gradient on a batch of {arguments.batch_size} (C={MAX_GRAD_NORM}, sigma={NOISE_MULTIPLIER}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians over {arguments.repeats} "
        f"interleaved rounds ({arguments.loop_repeats} for the loop and for dp_grads where it falls back); "
        f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    verdicts = []
    for key in arguments.models:
        case = CASES[key]
        outcome = benchmark(case, arguments)
        medians, baseline = outcome["medians"], outcome["medians"]["plain forward+backward"]
        print(f"\n## {case.name}  [{key}]")
        print(f"dp_grads path: {'fast' if outcome['reason'] is None else 'loop: ' + outcome['reason']}")
        print(f"{'method':34s} {'median ms':>10s} {'x plain':>8s} {'max |diff| vs loop, noise off':>30s}")
        for name, seconds in medians.items():
            difference = "" if name not in outcome["differences"] else f"{outcome['differences'][name]:.1e}"
            print(f"{name:34s} {seconds * 1e3:10.2f} {seconds / baseline:8.2f} {difference:>30s}")
        for name, error in outcome["refused"].items():
            print(f"{name:34s} {'n/a':>10s} {'':>8s} {'refused: ' + error:>30s}")
        ours = medians["dp_grads"]
        if case.supported:
            guard = ours - medians["dp_grads, guard off"]
            print(
                f"runtime guard: {guard * 1e3:.2f} ms = {guard / baseline:.2f}x plain ({guard / ours:.0%} of dp_grads)"
            )
            target = {"lab": 2, "lab_sequential": 2, "cnn": 3}.get(key)
            if target is not None:
                verdicts.append(
                    (f"{key}: dp_grads <= {target}x plain", ours / baseline <= target, f"{ours / baseline:.2f}x")
                )
            if "Opacus ghost clipping" in medians:
                ghost = medians["Opacus ghost clipping"]
                verdicts.append(
                    (
                        f"{key}: dp_grads faster than Opacus ghost clipping",
                        ours < ghost,
                        f"{ours * 1e3:.1f} vs {ghost * 1e3:.1f} ms",
                    )
                )
        else:
            verdicts.append(
                (
                    f"{key}: dp_grads falls back to the loop",
                    outcome["reason"] is not None,
                    outcome["reason"] or "fast path taken",
                )
            )
    print("\n## targets")
    for label, met, detail in verdicts:
        print(f"{'met' if met else 'NOT met':8s} {label} ({detail})")


if __name__ == "__main__":
    main()
