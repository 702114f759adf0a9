"""Convolutions whose input is smaller than their kernel run in float32 under CPU bfloat16 autocast.

Why: on this project's development CPU (AMD EPYC, AVX512-BF16, torch 2.14.1's oneDNN) the bfloat16 *weight gradient*
of a convolution is wrong when an axis of its input is smaller than the kernel along that axis: a 3x3x3 convolution
on a 2x2x2 input, or a strided 3x3 one on a 1x1 input, gave gradients with a relative error near 1, or inf and NaN,
while the forward pass and the input gradient stayed within bfloat16 rounding (0.3 %). Deep networks reach such
sizes in their last stages (a ResNet at a 32^3 crop ends at 1^3), so a 3D BYOL ResNet-50 went to NaN within two
epochs and smaller cases trained on silently wrong gradients. ``benchmarks/bf16_conv_check.py`` prints the sweep.

The guard swaps the class of each plain ``nn.ConvNd`` / ``nn.ConvTransposeNd`` for a subclass whose ``forward``
leaves autocast for such inputs (a few voxels: the float32 cost is negligible). Parameters, state-dict keys,
``isinstance`` checks, deep copies (EMA teachers) and pickling stay as they were; subclasses with their own
``forward`` (timm's same-padding convolutions, for example) are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["guard_bf16_convs", "input_below_kernel"]


def input_below_kernel(x: torch.Tensor, kernel_size: Sequence[int]) -> bool:
    """Whether some spatial axis of ``x`` (``(B, C, *spatial)``) is shorter than the kernel along it."""
    k = tuple(int(s) for s in kernel_size)
    return any(int(s) < kk for s, kk in zip(x.shape[-len(k) :], k))


class _Float32WhenTiny:
    """``forward`` in float32 when CPU autocast is on and the input is smaller than the kernel."""

    def forward(self, input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: A002 - torch's name
        if (
            input.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and input_below_kernel(input, self.kernel_size)  # type: ignore[attr-defined]
        ):
            with torch.autocast("cpu", enabled=False):
                return super().forward(input.float(), *args, **kwargs)  # type: ignore[misc]
        return super().forward(input, *args, **kwargs)  # type: ignore[misc]


class GuardedConv1d(_Float32WhenTiny, nn.Conv1d):
    pass


class GuardedConv2d(_Float32WhenTiny, nn.Conv2d):
    pass


class GuardedConv3d(_Float32WhenTiny, nn.Conv3d):
    pass


class GuardedConvTranspose1d(_Float32WhenTiny, nn.ConvTranspose1d):
    pass


class GuardedConvTranspose2d(_Float32WhenTiny, nn.ConvTranspose2d):
    pass


class GuardedConvTranspose3d(_Float32WhenTiny, nn.ConvTranspose3d):
    pass


_GUARDED = {
    nn.Conv1d: GuardedConv1d,
    nn.Conv2d: GuardedConv2d,
    nn.Conv3d: GuardedConv3d,
    nn.ConvTranspose1d: GuardedConvTranspose1d,
    nn.ConvTranspose2d: GuardedConvTranspose2d,
    nn.ConvTranspose3d: GuardedConvTranspose3d,
}


def guard_bf16_convs(module: nn.Module, precision: dict[str, Any] | None = None) -> nn.Module:
    """``module`` with its plain convolutions guarded (in place; returned for config expressions).

    With ``precision`` (a :func:`monai_transfer.engines.resolve_precision` decision) only a CPU bfloat16 decision
    guards: on CUDA and in float32 the network is returned untouched.
    """
    if precision is not None and not (precision.get("device") == "cpu" and precision.get("dtype") == "bfloat16"):
        return module
    for m in module.modules():
        guarded = _GUARDED.get(type(m))
        if guarded is not None:
            m.__class__ = guarded
    return module
