"""SSL losses compute in float32 under autocast: the same value as float32 inputs without autocast."""

from __future__ import annotations

import pytest
import torch

from monai_transfer.losses import (
    BarlowTwinsRedundancyLoss,
    DINOLoss,
    MoCoLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    VICRegLoss,
)


@pytest.mark.parametrize(
    "make",
    [lambda: NTXentLoss(temperature=0.1), NegativeCosineSimilarity, BarlowTwinsRedundancyLoss, VICRegLoss,
     lambda: MoCoLoss(dim=16, version="v3")],
)  # fmt: skip
def test_loss_under_bfloat16_autocast_is_the_float32_loss(make):
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(8, 16, generator=g).bfloat16().requires_grad_(True) for _ in range(2))
    reference = make()(z1.detach().float(), z2.detach().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = make()(z1, z2)
    assert loss.dtype == torch.float32 and torch.equal(loss.detach(), reference)
    loss.backward()  # gradients reach the bfloat16 embeddings in their own dtype
    assert z1.grad is not None and z1.grad.dtype == torch.bfloat16


def test_dino_loss_under_autocast_matches_float32():  # views come as lists of tensors
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(4, 32, generator=g).bfloat16() for _ in range(2)]
    student = [torch.randn(4, 32, generator=g).bfloat16() for _ in range(3)]
    reference = DINOLoss(32, 0.04, 0.04, 0)([t.float() for t in teacher], [s.float() for s in student], epoch=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DINOLoss(32, 0.04, 0.04, 0)(teacher, student, epoch=0)
    assert loss.dtype == torch.float32 and torch.equal(loss, reference)


def test_float64_inputs_stay_float64():  # only half precision is raised: a float64 check keeps its digits
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(8, 16, generator=g, dtype=torch.float64) for _ in range(2))
    assert VICRegLoss()(z1, z2).dtype == torch.float64 and NTXentLoss()(z1, z2).dtype == torch.float64
