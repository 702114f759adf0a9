from __future__ import annotations

import pytest
import torch
from lightly.loss import NegativeCosineSimilarity as LightlyNegCos

from monai_transfer.losses import NegativeCosineSimilarity


def test_formula_and_lightly():
    g = torch.Generator().manual_seed(1)
    p, z = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = -(p * z).sum(1) / (p.norm(dim=1) * z.norm(dim=1))
    loss = NegativeCosineSimilarity()
    assert loss(p, z).item() == pytest.approx(ref.mean().item(), abs=1e-6)
    assert loss(p, z).item() == pytest.approx(LightlyNegCos()(p, z).item(), abs=1e-6)
    assert torch.allclose(NegativeCosineSimilarity(reduction="none")(p, z), ref, atol=1e-6)
    assert NegativeCosineSimilarity(reduction="sum")(p, z).item() == pytest.approx(ref.sum().item(), abs=1e-5)


def test_identical_inputs_give_minus_one():
    p = torch.randn(3, 4)
    assert NegativeCosineSimilarity()(p, 2 * p).item() == pytest.approx(-1.0, abs=1e-6)


def test_gradients_flow_to_prediction_only_when_target_detached():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    NegativeCosineSimilarity()(p, z.detach()).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        NegativeCosineSimilarity()(torch.randn(4, 8), torch.randn(4, 7))
