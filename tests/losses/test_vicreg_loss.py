from __future__ import annotations

import pytest
import torch
from lightly.loss import VICRegLoss as LightlyVICReg

from monai_transfer.losses import VICRegLoss


def _reference(z1: torch.Tensor, z2: torch.Tensor, lam: float, mu: float, nu: float, eps: float = 1e-4) -> float:
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    inv = float(((z1 - z2) ** 2).sum()) / (n * d)

    def var(z):
        return sum(max(0.0, 1 - float(torch.sqrt(z[:, j].var(unbiased=True) + eps))) for j in range(d)) / d

    def cov(z):
        zc = z - z.mean(0)
        c = [[float((zc[:, i] * zc[:, j]).sum()) / (n - 1) for j in range(d)] for i in range(d)]
        return sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    return lam * inv + mu * 0.5 * (var(z1) + var(z2)) + nu * (cov(z1) + cov(z2))


@pytest.mark.parametrize("params", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
@pytest.mark.parametrize("scale", [0.3, 2.0])  # below / above the variance hinge
def test_formula_and_lightly(params, scale):
    g = torch.Generator().manual_seed(3)
    z1, z2 = scale * torch.randn(6, 5, generator=g), scale * torch.randn(6, 5, generator=g)
    lam, mu, nu = params
    loss = VICRegLoss(lambda_param=lam, mu_param=mu, nu_param=nu)
    # float64: the loss reaches ~40 here, beyond float32's 1e-5 absolute resolution
    z1, z2 = z1.double(), z2.double()
    ours = loss(z1, z2).item()
    assert ours == pytest.approx(_reference(z1, z2, lam, mu, nu), abs=1e-5)
    theirs = LightlyVICReg(lambda_param=lam, mu_param=mu, nu_param=nu)(z1, z2).item()
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert loss(z1.float(), z2.float()).item() == pytest.approx(theirs, rel=1e-5)


def test_defaults_match_lightly():
    ours, theirs = VICRegLoss(), LightlyVICReg()
    assert (ours.lambda_param, ours.mu_param, ours.nu_param, ours.eps) == (
        theirs.lambda_param,
        theirs.mu_param,
        theirs.nu_param,
        theirs.eps,
    )


def test_gradients_flow():
    z1 = (0.3 * torch.randn(6, 4)).requires_grad_()
    z2 = (0.3 * torch.randn(6, 4)).requires_grad_()
    VICRegLoss()(z1, z2).backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("a,b", [((6, 4), (6, 5)), ((6, 4), (7, 4)), ((1, 4), (1, 4)), ((6,), (6,))])
def test_shape_mismatch(a, b):
    with pytest.raises(ValueError, match="VICRegLoss"):
        VICRegLoss()(torch.randn(*a), torch.randn(*b))
