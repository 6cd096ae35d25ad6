"""Cost of one DP-SGD gradient of the course's MLP on a batch of 500, against a plain forward+backward.

Run: `python benchmarks/dp_grads.py [--repeats N] [--batch-size B]`.

Every method computes the same thing (per-example clipping to C, Gaussian noise sigma*C on the sum, division
by the batch size) for `spec_mlp()` (784-128-64-1) on 500 random 1x28x28 images, from the list of (x, t) pairs
that `dp_grads` takes (the Opacus methods get the stacked batch, as their DataLoader would give them):

- loop:            `dp_grads_loop`, one forward and backward per example;
- torch.func vmap: per-example gradients with `vmap(grad(...))`, then clip, sum and noise;
- Opacus hooks:    `GradSampleModule` + `DPOptimizer.pre_step()` (per-example gradients from hooks);
- Opacus ghost:    `GradSampleModuleFastGradientClipping` + `DPOptimizerFastGradientClipping` +
                   `DPLossFastGradientClipping` (what `make_private(..., grad_sample_mode="ghost")` builds):
                   per-example norms without per-example gradients, then a second, reweighted backward pass;
- reference:       `course.lib.dpsgd.dp_grads` (one backward pass, norms and the weighted sum in closed form).

The baseline is a non-private step of the same model: forward, BCEWithLogitsLoss, backward on the stacked
batch. Methods are timed in interleaved rounds (one call of each per round) so that load on the machine hits
all of them alike; the table reports per-method medians and their ratio to the baseline's median. Before
timing, each method's noiseless result is compared with the per-example loop.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from course.lib.dpsgd import dp_grads, dp_grads_loop, spec_mlp

MAX_GRAD_NORM = 1.0
NOISE_MULTIPLIER = 1.1


def make_batch(batch_size: int, generator: torch.Generator):
    return [(torch.rand(1, 28, 28, generator=generator), torch.randint(0, 2, (1,), generator=generator))
            for _ in range(batch_size)]


def plain_step(model, images, targets, criterion):
    """The non-private baseline: one batched forward and backward into .grad."""
    model.zero_grad()
    criterion(model(images).reshape(-1), targets).backward()


def dp_grads_vmap(model, batch_data, criterion, max_grad_norm, noise_multiplier):
    """Per-example gradients with torch.func, then the same clipping, noise and averaging."""
    images = torch.stack([x for x, _ in batch_data])
    targets = torch.stack([t.float().reshape(1) for _, t in batch_data])
    parameters = {name: p.detach() for name, p in model.named_parameters()}

    def example_loss(params, x, t):
        return criterion(functional_call(model, params, (x,)).reshape(1), t)

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))(parameters, images, targets)
    norms = torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in per_example.values()]), dim=0)
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    std = noise_multiplier * max_grad_norm
    return {name: (torch.einsum("b,b...->...", factors, g) + std * torch.randn_like(g[0])) / len(batch_data)
            for name, g in per_example.items()}


class OpacusStep:
    """One private gradient through Opacus: wrapped module, DP optimizer's pre_step (clip, noise, scale)."""

    def __init__(self, model, criterion, batch_size, max_grad_norm, noise_multiplier, ghost: bool):
        from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
        from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
        from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

        model = copy.deepcopy(model)
        settings = dict(noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                        expected_batch_size=batch_size, loss_reduction="mean")
        sgd = torch.optim.SGD(model.parameters(), lr=0.1)
        if ghost:
            self.module = GradSampleModuleFastGradientClipping(model, max_grad_norm=max_grad_norm,
                                                               use_ghost_clipping=True, loss_reduction="mean")
            self.optimizer = DPOptimizerFastGradientClipping(sgd, **settings)
            self.criterion = DPLossFastGradientClipping(self.module, self.optimizer, copy.deepcopy(criterion),
                                                        loss_reduction="mean")
        else:
            self.module = GradSampleModule(model, loss_reduction="mean")
            self.optimizer = DPOptimizer(sgd, **settings)
            self.criterion = criterion

    def __call__(self, images, targets):
        self.optimizer.zero_grad(set_to_none=True)
        self.criterion(self.module(images).reshape(-1), targets).backward()
        self.optimizer.pre_step()
        return {name: p.grad.detach().clone() for name, p in self.module._module.named_parameters()}


def median_seconds(rounds: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(times) for name, times in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--loop-repeats", type=int, default=5, help="rounds that also time the slow loop")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    arguments = parser.parse_args()
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    # Opacus's hooks warn on every backward pass that the input needs no gradient, which is expected here
    warnings.filterwarnings("ignore", message="Full backward hook is firing")

    torch.manual_seed(0)
    model = spec_mlp()
    criterion = nn.BCEWithLogitsLoss()
    batch = make_batch(arguments.batch_size, torch.Generator().manual_seed(1))
    images = torch.stack([x for x, _ in batch])
    targets = torch.stack([t for _, t in batch]).float().reshape(-1)
    size = len(batch)

    def private_method(function):
        return lambda noise: function(model, batch, criterion, MAX_GRAD_NORM, noise)

    def opacus_method(ghost):
        steps = {noise: OpacusStep(model, criterion, size, MAX_GRAD_NORM, noise, ghost)
                 for noise in (0.0, NOISE_MULTIPLIER)}
        return lambda noise: steps[noise](images, targets)

    methods = {
        "per-example loop": private_method(dp_grads_loop),
        "torch.func vmap": private_method(dp_grads_vmap),
        "Opacus GradSampleModule (hooks)": opacus_method(ghost=False),
        "Opacus ghost clipping": opacus_method(ghost=True),
        "course.lib.dpsgd.dp_grads": private_method(dp_grads),
    }
    expected = dp_grads_loop(model, batch, criterion, MAX_GRAD_NORM, 0.0)
    differences = {name: max(float((method(0.0)[k] - expected[k]).abs().max()) for k in expected)
                   for name, method in methods.items()}

    timings: dict[str, list[float]] = {name: [] for name in ["plain forward+backward", *methods]}
    for round_index in range(arguments.repeats):
        start = time.perf_counter()
        plain_step(model, images, targets, criterion)
        timings["plain forward+backward"].append(time.perf_counter() - start)
        for name, method in methods.items():
            if name == "per-example loop" and round_index >= arguments.loop_repeats:
                continue
            start = time.perf_counter()
            method(NOISE_MULTIPLIER)
            timings[name].append(time.perf_counter() - start)
    medians = median_seconds(timings)
    baseline = medians["plain forward+backward"]

    print(f"One DP-SGD gradient of spec_mlp() (784-128-64-1) on a batch of {size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians over {arguments.repeats} interleaved rounds "
          f"({arguments.loop_repeats} for the loop); 1-minute load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'method':34s} {'median ms':>10s} {'x plain':>8s} {'max |diff| vs loop, noise off':>30s}")
    for name, seconds in medians.items():
        difference = "" if name not in differences else f"{differences[name]:.1e}"
        print(f"{name:34s} {seconds * 1e3:10.2f} {seconds / baseline:8.2f} {difference:>30s}")
    ratio = medians["course.lib.dpsgd.dp_grads"] / baseline
    print(f"target: reference <= 3x the plain step: {'met' if ratio <= 3 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
