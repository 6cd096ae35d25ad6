"""Per-example gradient norms and clipped sums of single layers, from their inputs and output gradients.

The graded reference `course.lib.dpsgd.dp_grads` records, with forward hooks, each supported layer's input
`a` (shape `(B, ...)`, one row per example) and the gradient `g` of the summed per-example losses with
respect to the layer's output. Because examples do not interact, row i of `g` is example i's own output
gradient, and each parameter's per-example gradient is a fixed bilinear function of `(a_i, g_i)`. This module
holds those functions, one family per layer type, in the manner of Opacus's grad samplers
(`opacus/grad_sample/linear.py`, `conv.py`, `group_norm.py`, `layer_norm.py`, `embedding.py`):

- `per_example_gradients`: the per-example gradients themselves, `(B, *parameter.shape)` each;
- `ghost_squared_norms`: their squared norms without materialising them, from Gram matrices (the "ghost
  norm" of Goodfellow, "Efficient Per-Example Gradient Computations", 2015, for vector inputs, and of Li et
  al., "Large Language Models Can Be Strong Differentially Private Learners", ICLR 2022, for sequences);
- `weighted_gradients`: `sum_i w_i * grad_i` for per-example weights `w` (the clip factors), again without
  materialising the per-example gradients;
- `prefers_ghost`: which of the two routes is cheaper for this layer and input, by the rule of Bu et al.,
  "Scalable and Efficient Training of Large Convolutional Neural Networks with Differential Privacy",
  NeurIPS 2022 ("mixed ghost clipping"): the Gram route costs about `2 T^2` per example and output-input pair
  against `p d` for materialising, where `T` is the number of positions (sequence length, or output pixels
  of a convolution) and `p d` the size of the weight.

Everything here is exact algebra on tensors; deciding whether the hooks' view of a model is complete and
faithful (no shared layers, no example-mixing operations) is `dp_grads`'s job. Not shown to students.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)
"""Layer types whose parameters the hooks handle (exact types: a subclass may override `forward`)."""


def is_supported(layer: nn.Module) -> bool:
    return type(layer) in SUPPORTED_LAYERS


def trainable(layer: nn.Module) -> dict[str, nn.Parameter]:
    """The layer's own trainable parameters by local name ('weight', 'bias')."""
    return {name: p for name, p in layer.named_parameters(recurse=False) if p.requires_grad}


def unsupported_configuration(layer: nn.Module) -> str | None:
    """Why a supported layer type, configured as it is, cannot be handled; None when it can."""
    extra = sorted(set(trainable(layer)) - {"weight", "bias"})
    if extra:
        return f"has parameters {extra} besides its weight and bias"
    if type(layer) is nn.Embedding:
        if layer.max_norm is not None:
            return "renormalises its weight in place during the forward pass (max_norm)"
        if layer.scale_grad_by_freq:
            return "scales gradients by word frequencies within the batch (scale_grad_by_freq), which mixes examples"
        if layer.sparse:
            return "has sparse gradients"
    return None


def input_problem(layer: nn.Module, a: torch.Tensor, batch_size: int) -> str | None:
    """Why the batched input `a` is not one row per example in the layout the formulas assume; None if it is."""
    if not torch.is_tensor(a) or a.dim() == 0 or a.shape[0] != batch_size:
        shape = tuple(a.shape) if torch.is_tensor(a) else type(a).__name__
        return f"its batched input {shape} does not have the batch size {batch_size} as its first dimension"
    minimum = {nn.Linear: 2, nn.Conv2d: 4, nn.GroupNorm: 2, nn.Embedding: 1}.get(type(layer))
    if type(layer) is nn.LayerNorm:
        minimum = len(layer.normalized_shape) + 1
    if a.dim() < minimum or (type(layer) is nn.Conv2d and a.dim() != 4):
        return f"its batched input has shape {tuple(a.shape)}, not (batch, ...) as the layer takes a batch"
    return None


# ----------------------------------------------------------------------------------------------- dispatch


def prefers_ghost(layer: nn.Module, a: torch.Tensor) -> bool:
    """True when the Gram (ghost) route is cheaper than materialising the per-example gradients."""
    if type(layer) is nn.Linear:
        positions = a[0].numel() // layer.in_features
        return 2 * positions**2 <= layer.in_features * layer.out_features
    if type(layer) is nn.Conv2d:
        if layer.groups != 1:
            return False  # the Gram form below is for one group
        positions = _conv_output_positions(layer, a)
        return 2 * positions**2 <= layer.weight.numel()
    if type(layer) is nn.Embedding:
        positions = a[0].numel()
        return positions**2 <= layer.num_embeddings
    return False  # normalisation layers: per-example gradients are (B, channels), cheap to materialise


def per_example_gradients(layer: nn.Module, a: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each trainable parameter's per-example gradients, `(B, *parameter.shape)`, by local name."""
    return _PER_EXAMPLE[type(layer)](layer, a, g)


def ghost_squared_norms(layer: nn.Module, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """`(B,)`: the squared norm of each example's gradient of all the layer's trainable parameters."""
    return _GHOST[type(layer)](layer, a, g)


def weighted_gradients(
    layer: nn.Module, a: torch.Tensor, g: torch.Tensor, weights: torch.Tensor
) -> dict[str, torch.Tensor]:
    """`sum_i weights_i * grad_i` for each trainable parameter, by local name, without per-example gradients."""
    return _WEIGHTED[type(layer)](layer, a, g * weights.reshape(-1, *[1] * (g.dim() - 1)).to(g.dtype))


def subtract_per_example_gradient_(
    layer: nn.Module, a: torch.Tensor, g: torch.Tensor, gradients: dict[str, torch.Tensor]
) -> None:
    """`gradients[name] -= the gradient of one example` (`a`, `g` with a batch dimension of 1), in place.

    The runtime guard of `dp_grads` compares the loop's gradient of an example with this one; for a Linear
    layer on a vector the difference is one rank-1 update of the loop's weight gradient, with no new tensor.
    """
    if type(layer) is nn.Linear and a[0].numel() == layer.in_features:
        a_row, g_row = a.reshape(layer.in_features), g.reshape(layer.out_features)
        params = trainable(layer)
        if "weight" in params:
            gradients["weight"].addr_(g_row, a_row, alpha=-1)
        if "bias" in params:
            gradients["bias"].sub_(g_row)
        return
    for name, value in per_example_gradients(layer, a, g).items():
        gradients[name].sub_(value[0])


def squared_norms_of(gradients: dict[str, torch.Tensor]) -> torch.Tensor:
    """`(B,)` squared norms, all parameters jointly, of materialised per-example gradients."""
    return sum(torch.linalg.vector_norm(value.flatten(1), dim=1).square() for value in gradients.values())


def weighted_sum_of(gradients: dict[str, torch.Tensor], weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """`sum_i weights_i * grad_i` of materialised per-example gradients."""
    return {name: torch.tensordot(weights.to(value.dtype), value, dims=1) for name, value in gradients.items()}


# ------------------------------------------------------------------------------------------------- Linear


def _linear_views(layer: nn.Linear, a, g):
    batch = a.shape[0]
    return a.reshape(batch, -1, layer.in_features), g.reshape(batch, -1, layer.out_features)


def _linear_per_example(layer, a, g):
    a, g = _linear_views(layer, a, g)
    params, out = trainable(layer), {}
    if "weight" in params:
        out["weight"] = torch.einsum("bso,bsi->boi", g, a)
    if "bias" in params:
        out["bias"] = g.sum(dim=1)
    return out


def _linear_ghost(layer, a, g):
    a, g = _linear_views(layer, a, g)
    params = trainable(layer)
    total = torch.zeros(a.shape[0], dtype=g.dtype, device=g.device)
    if "weight" in params:
        if a.shape[1] == 1:  # ||g a^T||_F = ||g|| ||a||
            total = total + _row_norms_squared(g[:, 0]) * _row_norms_squared(a[:, 0])
        else:  # ||sum_s g_s a_s^T||_F^2 = <A A^T, G G^T>
            total = total + (a @ a.transpose(1, 2) * (g @ g.transpose(1, 2))).sum(dim=(1, 2))
    if "bias" in params:
        total = total + _row_norms_squared(g.sum(dim=1))
    return total


def _linear_weighted(layer, a, g):
    a, g = _linear_views(layer, a, g)
    params, out = trainable(layer), {}
    if "weight" in params:
        out["weight"] = g.reshape(-1, layer.out_features).T @ a.reshape(-1, layer.in_features)
    if "bias" in params:
        out["bias"] = g.sum(dim=(0, 1))
    return out


# ------------------------------------------------------------------------------------------------- Conv2d


def _conv_pads(layer: nn.Conv2d) -> list[tuple[int, int]]:
    """(left, right) padding of each spatial dimension, height first, as the layer pads its input."""
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return [(0, 0), (0, 0)]
        # 'same': dilation * (k - 1) in total, the smaller half first, as torch's _ConvNd does
        totals = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size)]
        return [(total // 2, total - total // 2) for total in totals]
    return [(p, p) for p in layer.padding]


def _conv_unfolded(layer: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """`(B, in_channels * kh * kw, positions)`: each output position's receptive field, as conv2d sees it."""
    pads = _conv_pads(layer)
    if layer.padding_mode == "zeros" and all(left == right for left, right in pads):
        padding = (pads[0][0], pads[1][0])
    else:
        flat = [pads[1][0], pads[1][1], pads[0][0], pads[0][1]]  # F.pad takes the last dimension first
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        a, padding = F.pad(a, flat, mode=mode), (0, 0)
    return F.unfold(a, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride)


def _conv_output_positions(layer: nn.Conv2d, a: torch.Tensor) -> int:
    size = 1
    for length, (left, right), d, k, s in zip(
        a.shape[-2:], _conv_pads(layer), layer.dilation, layer.kernel_size, layer.stride
    ):
        size *= (length + left + right - d * (k - 1) - 1) // s + 1
    return size


def _conv_views(layer, a, g):
    batch = a.shape[0]
    unfolded = _conv_unfolded(layer, a)
    return unfolded, g.reshape(batch, layer.out_channels, -1)


def _conv_per_example(layer, a, g):
    unfolded, g = _conv_views(layer, a, g)
    params, out = trainable(layer), {}
    batch, groups = g.shape[0], layer.groups
    if "weight" in params:
        per_group = torch.einsum(
            "bgol,bgdl->bgod",
            g.reshape(batch, groups, -1, g.shape[-1]),
            unfolded.reshape(batch, groups, -1, unfolded.shape[-1]),
        )
        out["weight"] = per_group.reshape(batch, *layer.weight.shape)
    if "bias" in params:
        out["bias"] = g.sum(dim=2)
    return out


def _conv_ghost(layer, a, g):
    unfolded, g = _conv_views(layer, a, g)
    params = trainable(layer)
    total = torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)
    if "weight" in params:  # groups == 1 (prefers_ghost): <U^T U, G^T G> over output positions
        total = total + (unfolded.transpose(1, 2) @ unfolded * (g.transpose(1, 2) @ g)).sum(dim=(1, 2))
    if "bias" in params:
        total = total + _row_norms_squared(g.sum(dim=2))
    return total


def _conv_weighted(layer, a, g):
    unfolded, g = _conv_views(layer, a, g)
    params, out = trainable(layer), {}
    batch, groups = g.shape[0], layer.groups
    if "weight" in params:
        per_group = torch.einsum(
            "bgol,bgdl->god",
            g.reshape(batch, groups, -1, g.shape[-1]),
            unfolded.reshape(batch, groups, -1, unfolded.shape[-1]),
        )
        out["weight"] = per_group.reshape(layer.weight.shape)
    if "bias" in params:
        out["bias"] = g.sum(dim=(0, 2))
    return out


# ------------------------------------------------------------------------------ GroupNorm and LayerNorm


def _group_norm_per_example(layer, a, g):
    normalised = F.group_norm(a, layer.num_groups, eps=layer.eps)
    params, out = trainable(layer), {}
    dims = tuple(range(2, a.dim()))
    if "weight" in params:
        product = g * normalised
        out["weight"] = product.sum(dim=dims) if dims else product
    if "bias" in params:
        out["bias"] = g.sum(dim=dims) if dims else g
    return out


def _layer_norm_per_example(layer, a, g):
    normalised = F.layer_norm(a, layer.normalized_shape, eps=layer.eps)
    params, out = trainable(layer), {}
    dims = tuple(range(1, a.dim() - len(layer.normalized_shape)))
    if "weight" in params:
        product = g * normalised
        out["weight"] = product.sum(dim=dims) if dims else product
    if "bias" in params:
        out["bias"] = g.sum(dim=dims) if dims else g
    return out


def _from_per_example_norms(function):
    return lambda layer, a, g: squared_norms_of(function(layer, a, g))


def _from_per_example_sum(function):
    def weighted(layer, a, g):  # g arrives already multiplied by the weights
        return {name: value.sum(dim=0) for name, value in function(layer, a, g).items()}

    return weighted


# ---------------------------------------------------------------------------------------------- Embedding


def _embedding_views(layer: nn.Embedding, a, g):
    batch = a.shape[0]
    indices = a.reshape(batch, -1)
    g = g.reshape(batch, indices.shape[1], layer.embedding_dim)
    if layer.padding_idx is not None:  # the padding row never receives a gradient
        g = g * (indices != layer.padding_idx).unsqueeze(-1).to(g.dtype)
    return indices, g


def _embedding_per_example(layer, a, g):
    if "weight" not in trainable(layer):
        return {}
    indices, g = _embedding_views(layer, a, g)
    batch, rows = indices.shape[0], layer.num_embeddings
    flat_rows = (torch.arange(batch, device=indices.device).unsqueeze(1) * rows + indices).reshape(-1)
    per_example = torch.zeros(batch * rows, layer.embedding_dim, dtype=g.dtype, device=g.device)
    per_example.index_add_(0, flat_rows, g.reshape(-1, layer.embedding_dim))
    return {"weight": per_example.reshape(batch, rows, layer.embedding_dim)}


def _embedding_ghost(layer, a, g):
    indices, g = _embedding_views(layer, a, g)
    if "weight" not in trainable(layer):
        return torch.zeros(indices.shape[0], dtype=g.dtype, device=g.device)
    same_row = (indices.unsqueeze(2) == indices.unsqueeze(1)).to(g.dtype)
    return (same_row * (g @ g.transpose(1, 2))).sum(dim=(1, 2))


def _embedding_weighted(layer, a, g):
    if "weight" not in trainable(layer):
        return {}
    indices, g = _embedding_views(layer, a, g)
    total = torch.zeros(layer.num_embeddings, layer.embedding_dim, dtype=g.dtype, device=g.device)
    total.index_add_(0, indices.reshape(-1), g.reshape(-1, layer.embedding_dim))
    return {"weight": total}


def _row_norms_squared(matrix: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(matrix, dim=1).square()


_PER_EXAMPLE = {
    nn.Linear: _linear_per_example,
    nn.Conv2d: _conv_per_example,
    nn.GroupNorm: _group_norm_per_example,
    nn.LayerNorm: _layer_norm_per_example,
    nn.Embedding: _embedding_per_example,
}
_GHOST = {
    nn.Linear: _linear_ghost,
    nn.Conv2d: _conv_ghost,
    nn.Embedding: _embedding_ghost,
    nn.GroupNorm: _from_per_example_norms(_group_norm_per_example),
    nn.LayerNorm: _from_per_example_norms(_layer_norm_per_example),
}
_WEIGHTED = {
    nn.Linear: _linear_weighted,
    nn.Conv2d: _conv_weighted,
    nn.Embedding: _embedding_weighted,
    nn.GroupNorm: _from_per_example_sum(_group_norm_per_example),
    nn.LayerNorm: _from_per_example_sum(_layer_norm_per_example),
}
