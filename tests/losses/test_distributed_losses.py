"""Gathering across ranks: two CPU processes with the gloo backend, compared with one process on the whole batch."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from monai_transfer.losses import (
    BarlowTwinsRedundancyLoss,
    DINOLoss,
    MoCoLoss,
    NTXentLoss,
    VICRegLoss,
    gather_with_grad,
)
from monai_transfer.losses.distributed import rank, world_size

WORLD = 2
B = 3  # per rank
D = 5


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * B, D, generator=g), torch.randn(WORLD * B, D, generator=g)


def _single_process(loss: torch.nn.Module) -> tuple[float, torch.Tensor, torch.Tensor]:
    z1, z2 = (z.requires_grad_() for z in _data())
    value = loss(z1, z2)
    value.backward()
    return value.item(), z1.grad, z2.grad


def _check_gathered_loss(loss: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Mean of per-rank losses equals the single-process loss; DDP-averaged gradients equal its gradients."""
    r = rank()
    full1, full2 = _data()
    z1 = full1[r * B : (r + 1) * B].clone().requires_grad_()
    z2 = full2[r * B : (r + 1) * B].clone().requires_grad_()
    value = loss(z1, z2)
    value.backward()
    mean_value = value.detach().clone()
    dist.all_reduce(mean_value)
    ref_value, g1, g2 = _single_process(reference)
    assert abs(mean_value.item() / WORLD - ref_value) < 1e-5, (mean_value.item() / WORLD, ref_value)
    # DDP averages parameter gradients over ranks: the effective gradient of the local rows is grad / WORLD
    assert torch.allclose(z1.grad / WORLD, g1[r * B : (r + 1) * B], atol=1e-6)
    if g2 is None:  # keys from a momentum encoder (MoCo) get no gradient
        assert z2.grad is None
    else:
        assert torch.allclose(z2.grad / WORLD, g2[r * B : (r + 1) * B], atol=1e-6)


def _cross_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + 1e-5)
    b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + 1e-5)
    return a.T @ b / a.shape[0]


def _worker(r: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        assert world_size() == WORLD and rank() == r

        # gather_with_grad: concatenation in rank order; the local slice gets the sum of all ranks' gradients
        x = torch.full((2, 3), float(r + 1), requires_grad=True)
        gathered = gather_with_grad(x)
        assert torch.equal(gathered, torch.cat([torch.full((2, 3), 1.0), torch.full((2, 3), 2.0)]))
        weights = torch.arange(WORLD * 2, dtype=torch.float32).unsqueeze(1) + 10 * r  # differs per rank
        (gathered * weights).sum().backward()
        own = torch.arange(WORLD * 2, dtype=torch.float32)[r * 2 : (r + 1) * 2].unsqueeze(1)
        expected = sum(own + 10 * s for s in range(WORLD)).expand(2, 3)
        assert torch.allclose(x.grad, expected), (x.grad, expected)

        _check_gathered_loss(NTXentLoss(0.5, gather_distributed=True), NTXentLoss(0.5))
        _check_gathered_loss(VICRegLoss(gather_distributed=True), VICRegLoss())
        _check_gathered_loss(
            MoCoLoss(dim=D, temperature=0.5, version="v3", gather_distributed=True),
            MoCoLoss(dim=D, temperature=0.5, version="v3"),
        )

        # Barlow Twins: every rank computes the loss of the cross-correlation averaged over ranks
        full1, full2 = _data()
        value = BarlowTwinsRedundancyLoss(gather_distributed=True)(
            full1[r * B : (r + 1) * B], full2[r * B : (r + 1) * B]
        )
        c = sum(_cross_correlation(full1[s * B : (s + 1) * B], full2[s * B : (s + 1) * B]) for s in range(WORLD))
        c = c / WORLD
        off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        assert abs(value.item() - ((torch.diagonal(c) - 1).pow(2).sum() + 5e-3 * off).item()) < 1e-5

        # DINO: the center moves towards the mean over all ranks' teacher outputs
        full_t, full_s = _data()
        dino = DINOLoss(D, 0.04, 0.04, 0)
        dino([full_t[r * B : (r + 1) * B]] * 2, [full_s[r * B : (r + 1) * B]] * 3)
        assert torch.allclose(dino.center, 0.1 * full_t.mean(0).view(1, 1, D), atol=1e-6)

        # MoCo v2: keys from all ranks enter the queue, in rank order
        moco = MoCoLoss(dim=D, queue_size=8, gather_distributed=True)
        moco(full_s[r * B : (r + 1) * B], full_t[r * B : (r + 1) * B])
        assert torch.allclose(moco.queue[: WORLD * B], torch.nn.functional.normalize(full_t, dim=1), atol=1e-6)
        assert int(moco.queue_ptr) == WORLD * B
    finally:
        dist.destroy_process_group()


def test_gather_with_grad_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_losses_across_two_gloo_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"),), nprocs=WORLD, join=True)
