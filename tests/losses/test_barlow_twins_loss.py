from __future__ import annotations

import pytest
import torch
from lightly.loss import BarlowTwinsLoss as LightlyBarlow

from monai_transfer.losses import BarlowTwinsRedundancyLoss


def _reference(z1: torch.Tensor, z2: torch.Tensor, lam: float) -> float:
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
    b = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = float(sum(a[k, i] * b[k, j] for k in range(n))) / n
            total += (1 - c_ij) ** 2 if i == j else lam * c_ij**2
    return total


@pytest.mark.parametrize("lam", [5e-3, 0.1])
@pytest.mark.parametrize("shape", [(8, 4), (5, 6)])
def test_formula_and_lightly(lam, shape):
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    ours = BarlowTwinsRedundancyLoss(lambda_param=lam)(z1, z2).item()
    assert ours == pytest.approx(_reference(z1, z2, lam), abs=1e-5)
    assert ours == pytest.approx(LightlyBarlow(lambda_param=lam)(z1, z2).item(), abs=1e-5)


def test_default_lambda_matches_lightly():
    assert BarlowTwinsRedundancyLoss().lambda_param == LightlyBarlow().lambda_param == 5e-3


def test_gradients_flow():
    z1 = torch.randn(6, 4, requires_grad=True)
    z2 = torch.randn(6, 4, requires_grad=True)
    BarlowTwinsRedundancyLoss()(z1, z2).backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("a,b", [((6, 4), (6, 5)), ((6, 4), (7, 4)), ((1, 4), (1, 4)), ((6, 4, 2), (6, 4, 2))])
def test_shape_mismatch(a, b):
    with pytest.raises(ValueError, match="BarlowTwinsRedundancyLoss"):
        BarlowTwinsRedundancyLoss()(torch.randn(*a), torch.randn(*b))
