"""The private gradient of DP-SGD: per-example clipping plus Gaussian noise (notebook 06).

One DP-SGD step (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Algorithm 1) computes,
for a batch of B examples with per-example gradients g_1..g_B (all parameters flattened into one vector),

    g_tilde = ( sum_i g_i * min(1, C / (||g_i|| + 1e-6))  +  N(0, (sigma * C)^2 I) ) / B

where C is `max_grad_norm` and sigma is `noise_multiplier`. Clipping bounds every example's contribution to
the sum by C in L2 norm, so the clipped sum has L2 sensitivity C when one example is added or removed
(removal neighbours) and 2C when one example is replaced by another (replacement neighbours). The noise
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

from course.lib._checks import check_finite, check_positive_int

CLIP_STABILISER = 1e-6
"""Added to each per-example norm before dividing, as `torch.nn.utils.clip_grad_norm_` and Opacus do."""

# Parameter-free modules that act on every element independently: on a stacked batch they compute, row by
# row, exactly what they compute on one example. Exact types only, since a subclass may override forward.
_ELEMENTWISE_MODULES = frozenset({
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.LogSigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Hardtanh,
    nn.Hardsigmoid, nn.Hardswish,
})


def spec_mlp(in_features: int = 784, hidden: tuple[int, ...] = (128, 64)) -> nn.Sequential:
    """The course's model for PneumoniaMNIST: an MLP with ReLU activations and one output logit.

    With the default `hidden=(128, 64)` it has three Linear layers: Flatten -> Linear(784, 128) -> ReLU ->
    Linear(128, 64) -> ReLU -> Linear(64, 1). Input: images of shape `(batch, 1, 28, 28)` (or one image of
    shape `(1, 28, 28)`, which Flatten treats as a batch of one); output: logits of shape `(batch, 1)`, to be
    used with `nn.BCEWithLogitsLoss`. Initialised by PyTorch's default, so seed torch first for a
    reproducible model.
    """
    in_features = check_positive_int(in_features, "in_features")
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden must be a tuple of layer widths, got {type(hidden).__name__}")
    widths = [in_features] + [check_positive_int(width, "each hidden width") for width in hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers)


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


def dp_grads_loop(model: nn.Module, batch_data, criterion: Callable, max_grad_norm: float,
                  noise_multiplier: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """DP-SGD's noisy average of clipped gradients, one example at a time (the plain reference loop).

    Same contract as `dp_grads`, computed the obvious way: one forward and backward pass per example. It is
    what `dp_grads` falls back to for general models, what its fast path is tested against, and one of the
    methods timed in `benchmarks/dp_grads.py`.
    """
    inputs, targets, max_grad_norm, noise_multiplier = _check_arguments(
        model, batch_data, criterion, max_grad_norm, noise_multiplier, generator)
    clipped_sum = _loop_clipped_sum(model, inputs, targets, criterion, max_grad_norm)
    return _noisy_average(clipped_sum, max_grad_norm, noise_multiplier, len(inputs), generator)


def dp_grads(model: nn.Module, batch_data, criterion: Callable, max_grad_norm: float, noise_multiplier: float,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """DP-SGD's private gradient of one batch: clip per example, sum, add Gaussian noise, divide by the size.

    Arguments:
        model: any `nn.Module` giving one logit per example, `model(x).numel() == 1`.
        batch_data: a non-empty list of `(x, t)` pairs; `x` is one example as the model takes it alone
            (for `spec_mlp`, an image of shape `(1, 28, 28)`), `t` its target (one number: a tensor or array
            of shape `(1,)` as medmnist gives, or a scalar).
        criterion: the loss, called per example as `criterion(model(x).reshape(1), t.float().reshape(1))`.
        max_grad_norm: the clipping bound C > 0 on each example's gradient, all parameters jointly.
        noise_multiplier: sigma >= 0; every coordinate of the clipped sum gets independent N(0, (sigma C)^2)
            noise, so after dividing by B = len(batch_data) its standard deviation is sigma * C / B.
        generator: the `torch.Generator` for the noise (on the parameters' device); the global one if None.

    Returns a dict keyed like `model.named_parameters()` (parameters with `requires_grad` only), each value a
    detached tensor shaped like its parameter. The clipped sum has L2 sensitivity C under removal and 2C under
    replacement neighbours (see the module docstring). `.grad` is left as it was found.

    Fast path: when the model is a chain of `nn.Linear` layers, parameter-free elementwise activations,
    `nn.Flatten` and inactive `nn.Dropout` (an `nn.Sequential`, possibly nested, or one Linear layer), the
    inputs share one shape and the criterion is a `BCEWithLogitsLoss`, `MSELoss` or `L1Loss` whose batched
    form equals the per-example one, a single batched forward and backward gives every Linear layer's
    inputs a_i and output gradients g_i. Each example's weight gradient is g_i a_i^T, whose squared norm is
    ||g_i||^2 ||a_i||^2 for vector inputs (Goodfellow, "Efficient Per-Example Gradient Computations", 2015)
    and <A_i A_i^T, G_i G_i^T> for inputs with extra (sequence) dimensions (the Gram form of ghost clipping,
    Li et al., "Large Language Models Can Be Strong Differentially Private Learners", ICLR 2022); the bias
    gradient is the sum of g_i over those dimensions. The clipped sum is then one weighted matrix product per
    layer, with no per-example gradient ever stored. Any other model or criterion goes through the
    per-example loop, `dp_grads_loop`.
    """
    inputs, targets, max_grad_norm, noise_multiplier = _check_arguments(
        model, batch_data, criterion, max_grad_norm, noise_multiplier, generator)
    layers = _linear_chain(model)
    batched_loss = _batched_loss(criterion)
    if layers is None or batched_loss is None or len({x.shape for x in inputs}) != 1:
        clipped_sum = _loop_clipped_sum(model, inputs, targets, criterion, max_grad_norm)
    else:
        clipped_sum = _linear_chain_clipped_sum(model, layers, batched_loss, inputs, targets, max_grad_norm)
    return _noisy_average(clipped_sum, max_grad_norm, noise_multiplier, len(inputs), generator)


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
            raise ValueError(f"batch_data[{index}]: the target must hold one number, got shape "
                             f"{tuple(target.shape)}")
        inputs.append(x)
        targets.append(target)
    if len({t.shape for t in targets}) == 1:
        return inputs, torch.stack(targets).float().reshape(-1)
    return inputs, torch.cat([t.float().reshape(1) for t in targets])


def _trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _one_logit(output: torch.Tensor) -> torch.Tensor:
    if output.numel() != 1:
        raise ValueError(f"the model must give one logit per example, got an output of shape "
                         f"{tuple(output.shape)} for one example")
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
    norms = torch.stack([
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in example.values()]))
        for example in gradients])
    factors = clipping_factor(norms, max_grad_norm)
    clipped_sum = {}
    for name in gradients[0]:
        stacked = torch.stack([example[name] for example in gradients])
        clipped_sum[name] = (factors.reshape(-1, *[1] * (stacked.dim() - 1)) * stacked).sum(dim=0)
    return clipped_sum


def _noisy_average(clipped_sum: dict[str, torch.Tensor], max_grad_norm: float, noise_multiplier: float,
                   batch_size: int, generator) -> dict[str, torch.Tensor]:
    """Add N(0, (sigma C)^2) to every coordinate of the clipped sum, then divide by the batch size."""
    noise_std = noise_multiplier * max_grad_norm
    result = {}
    for name, total in clipped_sum.items():
        if noise_std > 0:
            total = total + noise_std * torch.randn(total.shape, generator=generator, dtype=total.dtype,
                                                    device=total.device)
        result[name] = (total / batch_size).detach()
    return result


# ------------------------------------------------------------------- fast path for chains of Linear layers

def _leaf_modules(model: nn.Module) -> list[nn.Module]:
    if type(model) is nn.Sequential:
        return [leaf for child in model for leaf in _leaf_modules(child)]
    return [model]


def _linear_chain(model: nn.Module) -> list[nn.Module] | None:
    """The modules `model` applies, in order, when the batched fast path is exact for it; otherwise None."""
    layers = _leaf_modules(model)
    linear_parameters = [p for layer in layers if type(layer) is nn.Linear for p in layer.parameters()]
    if len({id(p) for p in linear_parameters}) != len(linear_parameters):
        return None  # a reused layer or shared weight sums gradients over its uses: not the single-use formula
    for layer in layers:
        supported = (type(layer) in (nn.Linear, nn.Flatten) or type(layer) in _ELEMENTWISE_MODULES
                     or (type(layer) is nn.Dropout and (not layer.training or layer.p == 0)))
        if not supported:
            return None
    return layers


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
            logits, targets, weight=weight, pos_weight=pos_weight, reduction="none")
    if type(criterion) is nn.MSELoss:
        return lambda logits, targets: F.mse_loss(logits, targets, reduction="none")
    if type(criterion) is nn.L1Loss:
        return lambda logits, targets: F.l1_loss(logits, targets, reduction="none")
    return None


def _batch_dim(dim: int) -> int:
    """Where a per-example dimension index lands once a leading batch dimension is added."""
    return dim + 1 if dim >= 0 else dim


def _linear_chain_clipped_sum(model, layers, batched_loss, inputs, targets, max_grad_norm) -> dict[str, torch.Tensor]:
    """Sum of per-example clipped gradients for a chain of Linear layers, from one batched backward pass."""
    batch_size = len(inputs)
    hidden = torch.stack(inputs)
    linear_layers, linear_inputs, linear_outputs = [], [], []
    with torch.enable_grad():
        for layer in layers:
            if type(layer) is nn.Linear and any(p.requires_grad for p in layer.parameters()):
                linear_layers.append(layer)
                linear_inputs.append(hidden.detach())
                hidden = layer(hidden)
                linear_outputs.append(hidden)
            elif type(layer) is nn.Flatten:
                hidden = hidden.flatten(_batch_dim(layer.start_dim), _batch_dim(layer.end_dim))
            else:
                # an in-place activation would overwrite the Linear output whose gradient we ask for
                hidden = layer(hidden.clone() if getattr(layer, "inplace", False) else hidden)
        if hidden.numel() != batch_size:
            raise ValueError(f"the model must give one logit per example, got an output of shape "
                             f"{tuple(hidden.shape[1:])} for one example")
        total_loss = batched_loss(hidden.reshape(batch_size), targets).sum()
        # examples do not interact, so row i of d(total)/d(output) is example i's own output gradient
        output_grads = torch.autograd.grad(total_loss, linear_outputs)

    # (B, S, features): S > 1 when each example is a sequence of vectors (extra dimensions before the last)
    layer_inputs = [a.reshape(batch_size, -1, layer.in_features) for a, layer in zip(linear_inputs, linear_layers)]
    layer_grads = [g.reshape(batch_size, -1, layer.out_features) for g, layer in zip(output_grads, linear_layers)]
    squared_norms = torch.zeros(batch_size, dtype=layer_grads[0].dtype, device=layer_grads[0].device)
    for layer, a, g in zip(linear_layers, layer_inputs, layer_grads):
        if layer.weight.requires_grad:
            squared_norms = squared_norms + _weight_gradient_squared_norms(a, g)
        if layer.bias is not None and layer.bias.requires_grad:
            squared_norms = squared_norms + _squared_row_norms(g.sum(dim=1))
    factors = clipping_factor(squared_norms.sqrt(), max_grad_norm)

    by_parameter = {}
    for layer, a, g in zip(linear_layers, layer_inputs, layer_grads):
        weighted = g * factors.reshape(-1, 1, 1)
        if layer.weight.requires_grad:
            by_parameter[id(layer.weight)] = weighted.reshape(-1, layer.out_features).T @ a.reshape(
                -1, layer.in_features)
        if layer.bias is not None and layer.bias.requires_grad:
            by_parameter[id(layer.bias)] = weighted.sum(dim=(0, 1))
    return {name: by_parameter[id(p)] for name, p in _trainable_parameters(model)}


def _weight_gradient_squared_norms(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """||sum_s g_is a_is^T||_F^2 per example, from inputs a `(B, S, in)` and output gradients g `(B, S, out)`."""
    if a.shape[1] == 1:
        return _squared_row_norms(g[:, 0]) * _squared_row_norms(a[:, 0])
    input_gram = a @ a.transpose(1, 2)
    grad_gram = g @ g.transpose(1, 2)
    return (input_gram * grad_gram).sum(dim=(1, 2))


def _squared_row_norms(matrix: torch.Tensor) -> torch.Tensor:
    """||row||^2 for each row of a `(B, n)` matrix, without materialising the squared entries."""
    return torch.linalg.vector_norm(matrix, dim=1).square()
