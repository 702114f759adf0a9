from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss as LightlyNTXent

from monai_transfer.losses import NTXentLoss


def _reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR loss written out: mean over the 2B views of -log(exp(s_pos/t) / sum_{k != i} exp(s_ik/t))."""
    z = F.normalize(torch.cat([z1, z2]), dim=1).double()
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = [float(z[i] @ z[k]) / t for k in range(2 * n)]
        denom = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -math.log(math.exp(sims[pos]) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(4, 8), (7, 3)])
def test_formula_and_lightly(temperature, shape):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    ours = NTXentLoss(temperature=temperature)(z1, z2)
    assert ours.item() == pytest.approx(_reference(z1, z2, temperature), abs=1e-5)
    theirs = LightlyNTXent(temperature=temperature, memory_bank_size=0)(z1, z2)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_default_temperature_matches_lightly():
    assert NTXentLoss().temperature == LightlyNTXent().temperature == 0.5


def test_gradients_flow():
    z1 = torch.randn(5, 6, requires_grad=True)
    z2 = torch.randn(5, 6, requires_grad=True)
    NTXentLoss()(z1, z2).backward()
    assert z1.grad is not None and z2.grad is not None
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


@pytest.mark.parametrize("a,b", [((4, 8), (4, 9)), ((4, 8), (5, 8)), ((4, 8, 1), (4, 8, 1)), ((8,), (8,))])
def test_shape_mismatch(a, b):
    with pytest.raises(ValueError, match=r"NTXentLoss expects"):
        NTXentLoss()(torch.randn(*a), torch.randn(*b))


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
