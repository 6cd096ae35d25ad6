"""The private gradient of DP-SGD: per-example clipping plus Gaussian noise (notebook 06).

For a batch of B examples with per-example gradients g_1..g_B (all parameters flattened into one vector),
this module's `dp_grads` (the graded function of notebook 06) computes

    g_tilde = ( sum_i g_i * min(1, C / (||g_i|| + 1e-6))  +  N(0, (sigma * C)^2 I) ) / B

where C is `max_grad_norm` and sigma is `noise_multiplier`: a one-batch exercise that a student can check by
hand. DP-SGD proper (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Algorithm 1, and
Opacus) divides by the expected lot size L = qN instead, a public constant: with Poisson sampling B is random,
and dividing by it would make the divisor depend on who was sampled. Notebook 06's training loop rescales the
result from B to L.

Clipping bounds every example's contribution to the sum by C in L2 norm, so the clipped sum has L2
sensitivity C when one example is added or removed (removal neighbours) and 2C when one example is replaced
by another (replacement neighbours). The noise
multiplier sigma is what a privacy accountant calibrates (`opacus.accountants.utils.get_noise_multiplier`
analyses Poisson-sampled batches with add/remove neighbours).

Clipping convention: the factor is `min(1, C / (norm + 1e-6))`, exactly what `torch.nn.utils.clip_grad_norm_`
and Opacus use; the 1e-6 keeps a zero gradient finite. The exact factor `min(1, C / norm)` differs from it by
less than 1e-6 in the clipped gradient's norm, far inside the graders' tolerance.

`dp_grads` is the reference; `dp_grads_loop` is the plain per-example loop it must agree with. Neither
touches any parameter's `.grad`: gradients are taken with `torch.autograd.grad`, so `.grad` is left exactly
as it was found (None on a fresh model) and never holds accumulated per-example gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course.lib import ghost_norms
from course.lib.validators import check_finite

CLIP_STABILISER = 1e-6
"""Added to each per-example norm before dividing, as `torch.nn.utils.clip_grad_norm_` and Opacus do."""

GUARD_EXAMPLES = 2
"""How many examples (the first and the last of the batch) the fast path's runtime guard recomputes with the
per-example loop; the benchmark sets it to 0 to measure what the guard costs."""
GUARD_RTOL, GUARD_ATOL = 1e-4, 1e-7
"""The guard accepts example i when ||fast_i - loop_i|| <= GUARD_RTOL * ||loop_i|| + GUARD_ATOL."""


def clipping_factor(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """Per-example scale `min(1, max_grad_norm / (norm + 1e-6))` that brings each norm to at most the bound.

    Shapes: `norms` is `(batch,)`, the result too.
    """
    max_grad_norm = _check_max_grad_norm(max_grad_norm)
    if not torch.is_tensor(norms):
        raise ValueError(f"norms must be a torch.Tensor, got {type(norms).__name__}")
    return (max_grad_norm / (norms + CLIP_STABILISER)).clamp(max=1.0)


def per_example_gradients(model: nn.Module, batch_data, criterion: Callable) -> list[dict[str, torch.Tensor]]:
    """Unclipped gradient of each example's loss `criterion(model(x).reshape(1), t.float().reshape(1))`.

    Returns one dict per example, keyed like `model.named_parameters()` (trainable parameters only), each
    value shaped like its parameter; a parameter the loss does not use gets zeros. `.grad` is not touched.
    """
    _check_model_and_criterion(model, criterion)
    inputs, targets = _examples(batch_data)
    return _per_example_gradients(model, inputs, targets, criterion)


def dp_grads_loop(
    model: nn.Module,
    batch_data,
    criterion: Callable,
    max_grad_norm: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """DP-SGD's noisy average of clipped gradients, one example at a time (the plain reference loop).

    Same contract as `dp_grads`, computed the obvious way: one forward and backward pass per example. It is
    what `dp_grads` falls back to for general models, what its fast path is tested against, and one of the
    methods timed in `benchmarks/dp_grads.py`.
    """
    inputs, targets, max_grad_norm, noise_multiplier = _check_arguments(
        model, batch_data, criterion, max_grad_norm, noise_multiplier, generator
    )
    clipped_sum = _loop_clipped_sum(model, inputs, targets, criterion, max_grad_norm)
    return _noisy_average(clipped_sum, max_grad_norm, noise_multiplier, len(inputs), generator)


def dp_grads(
    model: nn.Module,
    batch_data,
    criterion: Callable,
    max_grad_norm: float,
    noise_multiplier: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """DP-SGD's private gradient of one batch: clip per example, sum, add Gaussian noise, divide by the size.

    Arguments:
        model: any `nn.Module` giving one logit per example, `model(x).numel() == 1`.
        batch_data: a non-empty list of `(x, t)` pairs; `x` is one example as the model takes it alone
            (for `course.shown.pneumonia.spec_mlp`, an image of shape `(1, 28, 28)`), `t` its target (one
            number: a tensor or array of shape `(1,)` as medmnist gives, or a scalar).
        criterion: the loss, called per example as `criterion(model(x).reshape(1), t.float().reshape(1))`.
        max_grad_norm: the clipping bound C > 0 on each example's gradient, all parameters jointly.
        noise_multiplier: sigma >= 0; every coordinate of the clipped sum gets independent N(0, (sigma C)^2)
            noise, so after dividing by B = len(batch_data) its standard deviation is sigma * C / B.
        generator: the `torch.Generator` for the noise (on the parameters' device); the global one if None.

    Returns a dict keyed like `model.named_parameters()` (parameters with `requires_grad` only), each value a
    detached tensor shaped like its parameter. The clipped sum has L2 sensitivity C under removal and 2C under
    replacement neighbours (see the module docstring). `.grad` is left as it was found.

    Fast path (`course.lib.ghost_norms`): forward hooks on every `nn.Linear`, `nn.Conv2d`, `nn.GroupNorm`,
    `nn.LayerNorm` and `nn.Embedding` with trainable parameters, wherever it sits in the model, record its
    input during one batched forward pass; one backward pass gives each such layer's output gradient, row i
    being example i's own. Per layer, per-example gradient norms come from Gram matrices ("ghost" norms) or
    from materialised per-example gradients, whichever is cheaper (Bu et al., NeurIPS 2022, mixed ghost
    clipping); the clipped sum is then each layer's parameter gradient recomputed from the recorded inputs
    and the output gradients scaled by the clip factors.

    The per-example loop, `dp_grads_loop`, is used instead, for the whole model, whenever the fast path cannot
    be exact: a trainable layer of another type, a layer registered or called twice or a weight shared
    between layers, BatchNorm or a random layer (dropout) in training mode, a criterion other than
    `BCEWithLogitsLoss`, `MSELoss` or `L1Loss` with single-number weights, inputs of different shapes, or a
    batched forward pass that does not give one row per example; `dp_grads_fallback_reason` says which in one
    line. Hooks cannot see functional operations in `forward`, so a runtime guard recomputes the first and
    last examples' whole gradients with the loop and falls back on any difference beyond float rounding
    (`GUARD_RTOL`): an operation that mixes examples shows in those two unless it spares both of them.
    """
    inputs, targets, max_grad_norm, noise_multiplier = _check_arguments(
        model, batch_data, criterion, max_grad_norm, noise_multiplier, generator
    )
    clipped_sum, _ = _fast_clipped_sum(model, inputs, targets, criterion, max_grad_norm)
    if clipped_sum is None:
        clipped_sum = _loop_clipped_sum(model, inputs, targets, criterion, max_grad_norm)
    return _noisy_average(clipped_sum, max_grad_norm, noise_multiplier, len(inputs), generator)


def dp_grads_fallback_reason(model: nn.Module, batch_data, criterion: Callable) -> str | None:
    """Why `dp_grads` would take the per-example loop for this model, batch and criterion (one line), or None
    when its fast path gives the result. Runs the fast path once, runtime guard included."""
    _check_model_and_criterion(model, criterion)
    inputs, targets = _examples(batch_data)
    return _fast_clipped_sum(model, inputs, targets, criterion, 1.0)[1]


# ---------------------------------------------------------------------------------------------- validation


def _check_max_grad_norm(max_grad_norm) -> float:
    max_grad_norm = check_finite(max_grad_norm, "max_grad_norm")
    if max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm (the clipping bound) must be > 0, got {max_grad_norm!r}")
    return max_grad_norm


def _check_model_and_criterion(model, criterion) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(criterion):
        raise ValueError(f"criterion must be callable (e.g. nn.BCEWithLogitsLoss()), got {criterion!r}")
    if not _trainable_parameters(model):
        raise ValueError("model has no parameters with requires_grad=True: there is no gradient to privatise")


def _check_arguments(model, batch_data, criterion, max_grad_norm, noise_multiplier, generator):
    """Validate the arguments shared by `dp_grads` and `dp_grads_loop`; return (inputs, targets, C, sigma)."""
    _check_model_and_criterion(model, criterion)
    inputs, targets = _examples(batch_data)
    max_grad_norm = _check_max_grad_norm(max_grad_norm)
    noise_multiplier = check_finite(noise_multiplier, "noise_multiplier")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return inputs, targets, max_grad_norm, noise_multiplier


def _examples(batch_data) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Check `batch_data` is a non-empty list of (x, t) pairs; return the inputs and the float targets `(B,)`.

    Target i is `t.float().reshape(1)` of the spec, stacked once for the batch rather than per example.
    """
    if not isinstance(batch_data, (list, tuple)):
        raise ValueError(f"batch_data must be a list of (x, t) pairs, got {type(batch_data).__name__}")
    if len(batch_data) == 0:
        raise ValueError("batch_data is empty: a DP-SGD step needs at least one example")
    inputs, targets = [], []
    for index, pair in enumerate(batch_data):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"batch_data[{index}] must be an (x, t) pair, got {type(pair).__name__}")
        x, target = pair
        if not torch.is_tensor(x):
            raise ValueError(f"batch_data[{index}]: x must be a torch.Tensor, got {type(x).__name__}")
        target = target if torch.is_tensor(target) else torch.as_tensor(target)
        if target.numel() != 1:
            raise ValueError(f"batch_data[{index}]: the target must hold one number, got shape {tuple(target.shape)}")
        inputs.append(x)
        targets.append(target)
    if len({t.shape for t in targets}) == 1:
        return inputs, torch.stack(targets).float().reshape(-1)
    return inputs, torch.cat([t.float().reshape(1) for t in targets])


def _trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _one_logit(output: torch.Tensor) -> torch.Tensor:
    if output.numel() != 1:
        raise ValueError(
            f"the model must give one logit per example, got an output of shape {tuple(output.shape)} for one example"
        )
    return output.reshape(1)


# ---------------------------------------------------------------------------------- per-example loop


def _per_example_gradients(model, inputs, targets, criterion) -> list[dict[str, torch.Tensor]]:
    named = _trainable_parameters(model)
    parameters = [p for _, p in named]
    gradients = []
    with torch.enable_grad():  # a caller inside torch.no_grad() still gets gradients
        for x, target in zip(inputs, targets.split(1)):
            loss = criterion(_one_logit(model(x)), target)
            grads = torch.autograd.grad(loss, parameters, allow_unused=True)
            gradients.append({name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(named, grads)})
    return gradients


def _loop_clipped_sum(model, inputs, targets, criterion, max_grad_norm) -> dict[str, torch.Tensor]:
    gradients = _per_example_gradients(model, inputs, targets, criterion)
    norms = torch.stack(
        [
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in example.values()]))
            for example in gradients
        ]
    )
    factors = clipping_factor(norms, max_grad_norm)
    clipped_sum = {}
    for name in gradients[0]:
        stacked = torch.stack([example[name] for example in gradients])
        clipped_sum[name] = (factors.reshape(-1, *[1] * (stacked.dim() - 1)) * stacked).sum(dim=0)
    return clipped_sum


def _noisy_average(
    clipped_sum: dict[str, torch.Tensor], max_grad_norm: float, noise_multiplier: float, batch_size: int, generator
) -> dict[str, torch.Tensor]:
    """Add N(0, (sigma C)^2) to every coordinate of the clipped sum, then divide by the batch size."""
    noise_std = noise_multiplier * max_grad_norm
    result = {}
    for name, total in clipped_sum.items():
        if noise_std > 0:
            total = total + noise_std * torch.randn(
                total.shape, generator=generator, dtype=total.dtype, device=total.device
            )
        result[name] = (total / batch_size).detach()
    return result


# ------------------------------------------------------------- fast path: hooks, ghost norms, runtime guard


class _Fallback(Exception):
    """The fast path cannot guarantee the loop's result for this model, batch and criterion; str() says why."""


class _AttemptFailed(Exception):
    """One way of batching the inputs did not give one row per example; another may."""


_RANDOM_IN_TRAINING = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.RReLU,
)


def _fast_clipped_sum(model, inputs, targets, criterion, max_grad_norm):
    """(clipped sum, None) from the fast path, or (None, reason) when the loop must be used.

    On a fallback the random-number generators are put back as they were, so that the loop then draws exactly
    what `dp_grads_loop` would (the fast path itself draws nothing for a deterministic model).
    """
    states = _random_states(model)
    try:
        return _hooked_clipped_sum(model, inputs, targets, criterion, max_grad_norm), None
    except _Fallback as fallback:
        _restore_random_states(states)
        return None, str(fallback)


def _random_states(model):
    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    return torch.get_rng_state(), {device: torch.cuda.get_rng_state(device) for device in devices}


def _restore_random_states(states) -> None:
    cpu, cuda = states
    torch.set_rng_state(cpu)
    for device, state in cuda.items():
        torch.cuda.set_rng_state(state, device)


def _hooked_clipped_sum(model, inputs, targets, criterion, max_grad_norm) -> dict[str, torch.Tensor]:
    batched_loss = _batched_loss(criterion)
    if batched_loss is None:
        raise _Fallback(f"the criterion {criterion!r} has no batched form known to equal its per-example form")
    if len({x.shape for x in inputs}) != 1:
        raise _Fallback("the inputs do not all have one shape, so they cannot be stacked into one batch")
    layers = _hooked_layers(model)
    records = _batched_records(model, layers, inputs, targets, batched_loss)

    squared_norms = torch.zeros(len(inputs), dtype=targets.dtype, device=targets.device)
    plans = []  # (layer, a, g, materialised per-example gradients or None for the ghost route)
    for _, layer, a, g in records:
        if ghost_norms.prefers_ghost(layer, a):
            layer_norms, per_example = ghost_norms.ghost_squared_norms(layer, a, g), None
        else:
            per_example = ghost_norms.per_example_gradients(layer, a, g)
            layer_norms = ghost_norms.squared_norms_of(per_example)
        squared_norms = squared_norms.to(layer_norms) + layer_norms
        plans.append((layer, a, g, per_example))
    _guard(model, records, inputs, targets, criterion, squared_norms)

    factors = clipping_factor(squared_norms.sqrt(), max_grad_norm)
    by_parameter = {}
    for layer, a, g, per_example in plans:
        sums = (
            ghost_norms.weighted_gradients(layer, a, g, factors)
            if per_example is None
            else ghost_norms.weighted_sum_of(per_example, factors)
        )
        for local_name, value in sums.items():
            by_parameter[id(getattr(layer, local_name))] = value
    # a supported layer that the forward pass never called contributes zero, as in the loop
    return {
        name: by_parameter[id(p)] if id(p) in by_parameter else torch.zeros_like(p)
        for name, p in _trainable_parameters(model)
    }


def _hooked_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers to hook, by name; raise `_Fallback` when the model's structure rules the fast path out."""
    layers, seen = [], set()
    for name, module in model.named_modules(remove_duplicate=False):
        label = f"'{name}' ({type(module).__name__})" if name else f"the model itself ({type(module).__name__})"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise _Fallback(
                f"{label} is BatchNorm in training mode: it normalises with the whole batch's "
                f"statistics, which mixes examples"
            )
        if isinstance(module, _RANDOM_IN_TRAINING) and module.training and getattr(module, "p", 1) > 0:
            raise _Fallback(
                f"{label} draws random numbers in training mode, differently for a batch than for one example at a time"
            )
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        if not ghost_norms.is_supported(module):
            raise _Fallback(f"{label} has trainable parameters and is not a layer type the fast path supports")
        problem = ghost_norms.unsupported_configuration(module)
        if problem is not None:
            raise _Fallback(f"{label} {problem}")
        if id(module) in seen:
            raise _Fallback(
                f"{label} is registered more than once in the model (a shared layer): its gradient "
                f"sums over several uses"
            )
        seen.add(id(module))
        layers.append((name, module))
    owners = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.requires_grad and owners.setdefault(id(p), name) != name:
            raise _Fallback(
                f"parameters '{owners[id(p)]}' and '{name}' are one tensor (tied weights): its "
                f"gradient sums over several uses"
            )
    return layers


def _batched_records(model, layers, inputs, targets, batched_loss):
    """[(name, layer, input, output gradient)] from one batched forward and backward pass.

    The inputs are stacked into a new batch dimension, and `nn.Flatten`'s dimensions read as the example's
    (shifted past the batch dimension), or failing that as written (a forward that reshapes its input into a
    batch itself); when every input already has a leading dimension of one (a batch of one, as a CNN takes
    it) and stacking does not work, they are concatenated along it. Whichever works, the guard checks it.
    A layer output that a later in-place operation overwrote is recorded again with the outputs cloned.
    """
    stacked = torch.stack(inputs)
    candidates = [("stacked", stacked, True)]
    if any(type(module) is nn.Flatten for module in model.modules()):  # a forward that makes its own batch
        candidates.append(("stacked, nn.Flatten as written", stacked, False))
    if all(x.dim() >= 1 and x.shape[0] == 1 for x in inputs) and len(inputs) > 1:
        candidates.append(("concatenated", torch.cat(inputs), False))
    failures = []
    for description, batch, shift_flatten in candidates:
        try:
            try:
                return _record(model, layers, batch, targets, batched_loss, shift_flatten, clone=False)
            except _InPlace:
                return _record(model, layers, batch, targets, batched_loss, shift_flatten, clone=True)
        except _AttemptFailed as failure:
            failures.append(f"{description}: {failure}")
    raise _Fallback("the batched forward pass does not give one row per example (" + "; ".join(failures) + ")")


class _InPlace(Exception):
    """A recorded tensor was modified in place after the layer produced or read it."""


def _flatten_per_example(module, args, output):
    """On a stacked batch, `nn.Flatten`'s non-negative dimensions are the example's: shift them past the batch."""
    start, end = (dim + 1 if dim >= 0 else dim for dim in (module.start_dim, module.end_dim))
    return args[0].flatten(start, end)


def _record(model, layers, batch, targets, batched_loss, shift_flatten: bool, clone: bool):
    batch_size = len(targets)
    calls = {id(layer): [] for _, layer in layers}

    def hook(module, args, kwargs, output):
        a = args[0] if args else kwargs.get("input")
        if not torch.is_tensor(output) or not torch.is_tensor(a):
            calls[id(module)].append(None)
            return None
        if clone:
            calls[id(module)].append((a.detach().clone(), output, None))
            return output.clone()
        calls[id(module)].append((a.detach(), output, (a._version, output._version)))
        return None

    handles = [layer.register_forward_hook(hook, with_kwargs=True) for _, layer in layers]
    if shift_flatten:
        handles += [
            module.register_forward_hook(_flatten_per_example)
            for module in model.modules()
            if type(module) is nn.Flatten
        ]
    try:
        with torch.enable_grad():
            try:
                output = model(batch)
            except Exception as error:  # the loop will raise it again if the model is wrong for single inputs too
                raise _AttemptFailed(f"{type(error).__name__}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
    if not torch.is_tensor(output) or output.numel() != batch_size:
        shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise _AttemptFailed(f"the batched output has shape {shape}, not one logit for each of {batch_size} examples")

    recorded = []
    for name, layer in layers:
        layer_calls = calls[id(layer)]
        if len(layer_calls) > 1:
            raise _Fallback(
                f"'{name}' ({type(layer).__name__}) is called {len(layer_calls)} times in one forward "
                f"pass: its gradient sums over several uses"
            )
        if not layer_calls:
            continue
        if layer_calls[0] is None:
            raise _AttemptFailed(f"'{name}' did not take and return tensors")
        a, z, versions = layer_calls[0]
        if versions is not None and versions != (a._version, z._version):
            raise _InPlace
        problem = ghost_norms.input_problem(layer, a, batch_size)
        if problem is not None:
            raise _AttemptFailed(f"'{name}' ({type(layer).__name__}): {problem}")
        recorded.append((name, layer, a, z))

    with torch.enable_grad():
        total_loss = batched_loss(output.reshape(batch_size), targets.to(output.device)).sum()
        differentiable = [z for _, _, _, z in recorded if z.requires_grad]
        try:
            gradients = iter(
                torch.autograd.grad(total_loss, differentiable, allow_unused=True) if differentiable else []
            )
        except RuntimeError as error:
            raise _AttemptFailed(f"the batched backward pass failed ({error})") from error
    records = []
    for name, layer, a, z in recorded:
        g = next(gradients) if z.requires_grad else None
        # examples do not interact, so row i of d(total)/d(output) is example i's own output gradient
        records.append((name, layer, a, torch.zeros_like(z) if g is None else g))
    return records


def _guard(model, records, inputs, targets, criterion, squared_norms) -> None:
    """Compare the fast path's gradients of the first and last examples with the loop's; `_Fallback` if off.

    Hooks see layers, not functional operations in `forward` (such as `x - x.mean(0)`), nor a layer's weight
    used outside the layer. Either changes some example's gradient, which this check sees for the examples
    it recomputes, whose whole gradients (not only their norms) it compares.
    """
    if GUARD_EXAMPLES <= 0:
        return
    batch_size = len(inputs)
    picks = sorted({round(k * (batch_size - 1) / max(GUARD_EXAMPLES - 1, 1)) for k in range(GUARD_EXAMPLES)})
    loop = _per_example_gradients(model, [inputs[i] for i in picks], targets[picks], criterion)
    trainable = _trainable_parameters(model)
    reference = torch.tensor(
        [sum(float(torch.linalg.vector_norm(example[name])) ** 2 for name, _ in trainable) for example in loop],
        dtype=torch.float64,
    ).sqrt()
    for position, example in enumerate(picks):
        # the loop's gradient becomes (loop - fast) in place, parameter by parameter
        by_id = {id(p): name for name, p in trainable}
        for _, layer, a, g in records:
            row = slice(example, example + 1)
            local = {local_name: loop[position][by_id[id(p)]] for local_name, p in ghost_norms.trainable(layer).items()}
            ghost_norms.subtract_per_example_gradient_(layer, a[row], g[row], local)
    difference = torch.tensor(
        [sum(float(torch.linalg.vector_norm(example[name])) ** 2 for name, _ in trainable) for example in loop],
        dtype=torch.float64,
    ).sqrt()
    index = torch.tensor(picks)
    norm_error = (squared_norms[index.to(squared_norms.device)].cpu().double().clamp(min=0).sqrt() - reference).abs()
    error = torch.maximum(difference, norm_error)
    bad = (error > GUARD_RTOL * reference + GUARD_ATOL).nonzero().flatten().tolist()
    if bad:
        raise _Fallback(
            f"runtime guard: example {picks[bad[0]]}'s gradient from the batched pass is "
            f"{float(error[bad[0]]):.2e} away from the loop's (norm {float(reference[bad[0]]):.2e}); "
            f"the forward pass mixes examples or uses parameters outside their layers"
        )


def _batched_loss(criterion) -> Callable | None:
    """Per-example losses `(B,)` from logits and targets `(B,)` when that equals calling `criterion` per example.

    A 'mean' or 'sum' reduction over a single element is that element's loss, so the unreduced functional
    form gives the per-example losses. Weights must be single numbers: a weight with one entry per output
    would be applied differently to a length-1 input than to a length-B one.
    """
    if getattr(criterion, "reduction", None) not in ("mean", "sum"):
        return None
    if type(criterion) is nn.BCEWithLogitsLoss:
        weights = [criterion.weight, criterion.pos_weight]
        if any(w is not None and w.numel() != 1 for w in weights):
            return None
        weight, pos_weight = (None if w is None else w.reshape(1) for w in weights)
        return lambda logits, targets: F.binary_cross_entropy_with_logits(
            logits, targets, weight=weight, pos_weight=pos_weight, reduction="none"
        )
    if type(criterion) is nn.MSELoss:
        return lambda logits, targets: F.mse_loss(logits, targets, reduction="none")
    if type(criterion) is nn.L1Loss:
        return lambda logits, targets: F.l1_loss(logits, targets, reduction="none")
    return None
