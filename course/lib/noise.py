"""Adding independent noise to a number or a tensor, shared by the Laplace and Gaussian mechanisms (notebook 04).

A sampler maps a shape to a float64 tensor of independent noise of that shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from course.lib.validators import check_finite

NoiseSampler = Callable[[tuple[int, ...]], torch.Tensor]


def add_noise(value, sample: NoiseSampler):
    """Return `value` plus independent noise per element: a float for a number, a new tensor for a tensor.

    A tensor result is floating point (an integer or bool tensor is promoted to the default float dtype) so the
    noise is never truncated; the input is not modified.
    """
    if torch.is_tensor(value):
        if not bool(torch.isfinite(value).all()):
            raise ValueError("value must hold only finite numbers")
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        noise = sample(tuple(value.shape)).to(device=value.device, dtype=dtype)
        return value.to(dtype) + noise
    value = check_finite(value, "value")
    return value + float(sample(()).item())
