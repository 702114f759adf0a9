"""SSL losses compute in float32 under autocast.

Their logits are similarities divided by a temperature (0.1 for SimCLR: a bfloat16 cosine, exact to about 3
significant digits, becomes a logit off by up to 0.04), then exponentiated and summed over the batch; covariance
and cross-correlation terms square values. In bfloat16 or float16 these lose the digits the loss is made of, so the
decorated ``forward`` leaves autocast and casts its float16 and bfloat16 tensor arguments (and those in list
arguments) to float32; float64 stays float64. The embeddings' gradients flow back through the cast in the autocast
dtype, as in any mixed-precision step.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["float32_forward"]

F = TypeVar("F", bound=Callable[..., Any])


_LOW = (torch.float16, torch.bfloat16)


def _float32(value: Any) -> Any:
    """Half-precision tensors as float32, also inside lists and tuples (DINO's views); float64 stays float64."""
    if isinstance(value, torch.Tensor) and value.dtype in _LOW:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    return value


def float32_forward(forward: F) -> F:
    """Decorate a loss's ``forward(self, *tensors, **kwargs)``: float32 inputs, autocast off inside."""

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        on = torch.is_autocast_enabled(device)
        with torch.autocast(device, enabled=False) if on else contextlib.nullcontext():
            return forward(self, *(_float32(a) for a in args), **{k: _float32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
