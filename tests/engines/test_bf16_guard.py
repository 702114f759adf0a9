"""The bfloat16 convolution guard: inputs smaller than the kernel leave autocast, and nothing else about the network
changes. The wrong oneDNN kernels it works around are shown by ``benchmarks/bf16_conv_check.py``; these tests check
the guard's behaviour, which holds on any CPU."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from monai_transfer.engines.bf16_guard import guard_bf16_convs, input_below_kernel


def _weight_grad(conv: nn.Module, x: torch.Tensor, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = conv(x)
    (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    grad = conv.weight.grad.clone()
    conv.weight.grad = None
    return y, grad


@pytest.mark.parametrize(
    "layer,size",
    [(nn.Conv3d(8, 8, 3, padding=1), 2), (nn.Conv2d(8, 8, 3, stride=2, padding=1), 1),
     (nn.ConvTranspose3d(8, 8, 3, stride=2, padding=1, output_padding=1), 2)],
)  # fmt: skip
def test_input_below_kernel_computes_in_float32(layer, size):
    dims = layer.weight.ndim - 2
    x = torch.randn(2, 8, *([size] * dims), generator=torch.Generator().manual_seed(0))
    _, fp32 = _weight_grad(layer, x, amp=False)
    guarded = guard_bf16_convs(layer)
    y, bf16 = _weight_grad(guarded, x, amp=True)
    assert y.dtype == torch.float32  # left autocast
    torch.testing.assert_close(bf16, fp32, rtol=1e-5, atol=1e-6)


def test_inputs_at_least_the_kernel_stay_in_bfloat16():
    conv = guard_bf16_convs(nn.Conv3d(4, 4, 3, padding=1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 4, 3, 3, 3)).dtype == torch.bfloat16
        assert conv(torch.randn(1, 4, 3, 2, 3)).dtype == torch.float32  # one axis below the kernel is enough
    assert conv(torch.randn(1, 4, 2, 2, 2)).dtype == torch.float32  # no autocast: unchanged
    assert input_below_kernel(torch.zeros(1, 1, 4, 1), (3, 3)) and not input_below_kernel(
        torch.zeros(1, 1, 3, 3), (3, 3)
    )


class _OwnForward(nn.Conv2d):
    def forward(self, x):  # a subclass with its own forward (timm's same-padding convolutions, say)
        return super().forward(x) * 2


def test_network_is_otherwise_unchanged():
    net = nn.Sequential(
        nn.Conv3d(1, 4, 3), nn.BatchNorm3d(4), nn.Sequential(nn.ConvTranspose3d(4, 2, 2)), _OwnForward(2, 2, 1)
    )
    keys = list(net.state_dict())
    guard_bf16_convs(net)
    assert list(net.state_dict()) == keys
    assert type(net[0]).__name__ == "GuardedConv3d" and isinstance(net[0], nn.Conv3d)
    assert type(net[2][0]).__name__ == "GuardedConvTranspose3d" and type(net[3]) is _OwnForward
    teacher = copy.deepcopy(net)  # an EMA teacher: its own weights
    teacher[0].weight.data.zero_()
    assert net[0].weight.abs().sum() > 0
    restored = pickle.loads(pickle.dumps(net[0]))  # spawned workers and Ray pickle networks
    assert type(restored) is type(net[0]) and torch.equal(restored.weight, net[0].weight)


@pytest.mark.parametrize(
    "decision,guarded",
    [({"device": "cpu", "amp": True, "dtype": "bfloat16"}, True), ({"device": "cpu", "amp": False, "dtype": None}, False),
     ({"device": "cuda", "amp": True, "dtype": "float16"}, False)],
)  # fmt: skip
def test_only_cpu_bfloat16_decisions_guard(decision, guarded):
    net = guard_bf16_convs(nn.Sequential(nn.Conv2d(1, 1, 3)), decision)
    assert (type(net[0]) is not nn.Conv2d) is guarded
