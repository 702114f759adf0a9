from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss as LightlyNTXent

from monai_transfer.losses import MoCoLoss


def _pair(b: int = 4, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


def _reference_v2(q, k, queue, t) -> float:
    q, k, queue = F.normalize(q.double(), dim=1), F.normalize(k.double(), dim=1), queue.double()
    total = 0.0
    for i in range(q.shape[0]):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ queue[j]) / t) for j in range(queue.shape[0]))
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


def test_v2_formula_and_lightly_memory_bank():
    q, k = _pair()
    loss = MoCoLoss(dim=8, queue_size=16, temperature=0.2)
    queue = loss.queue.clone()
    ours = loss(q, k).item()
    assert ours == pytest.approx(_reference_v2(q, k, queue, 0.2), abs=1e-5)
    # lightly's NT-Xent with a memory bank is MoCo's InfoNCE: out0 = queries, out1 = keys, bank = negatives
    lightly = LightlyNTXent(temperature=0.2, memory_bank_size=(16, 8))
    lightly.memory_bank.bank.copy_(queue)
    assert ours == pytest.approx(lightly(q, k).item(), abs=1e-5)


def test_v2_queue_is_fifo_with_fixed_size():
    loss = MoCoLoss(dim=8, queue_size=10, temperature=0.2)
    initial = loss.queue.clone()
    batches = [_pair(b=4, seed=s)[1] for s in range(3)]
    for keys in batches:
        loss(torch.randn(4, 8), keys)
        assert loss.queue.shape == (10, 8)
    expected = initial.clone()
    written = F.normalize(torch.cat(batches), dim=1)  # 12 keys into 10 slots: slots 0, 1 overwritten twice
    for n, key in enumerate(written):
        expected[n % 10] = key
    assert torch.allclose(loss.queue, expected, atol=1e-6)
    assert int(loss.queue_ptr) == 12 % 10
    assert "queue" in loss.state_dict() and "queue_ptr" in loss.state_dict()


def test_v2_uses_queue_before_update_and_eval_does_not_update():
    q, k = _pair()
    loss = MoCoLoss(dim=8, queue_size=16).eval()
    before = loss.queue.clone()
    first = loss(q, k).item()
    assert torch.equal(loss.queue, before) and int(loss.queue_ptr) == 0
    assert loss(q, k).item() == pytest.approx(first)


def test_v3_symmetric_formula():
    q1, q2 = _pair(seed=1)
    k1, k2 = _pair(seed=2)
    t = 1.0
    loss = MoCoLoss(dim=8, temperature=t, version="v3")

    def ctr(q, k):
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / t
        return F.cross_entropy(logits, torch.arange(q.shape[0])) * 2 * t

    assert loss(q1, k2, q2, k1).item() == pytest.approx((ctr(q1, k2) + ctr(q2, k1)).item(), abs=1e-5)
    assert loss(q1, k2).item() == pytest.approx(ctr(q1, k2).item(), abs=1e-5)
    assert loss.queue.numel() == 0


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_gradients_flow_to_queries_only(version):
    q, k = _pair()
    q.requires_grad_()
    k.requires_grad_()
    MoCoLoss(dim=8, queue_size=16, version=version)(q, k).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


@pytest.mark.parametrize(
    "kwargs,args,match",
    [
        ({}, (torch.randn(4, 8), torch.randn(4, 7)), "MoCoLoss expects"),
        ({}, (torch.randn(4, 8), torch.randn(5, 8)), "MoCoLoss expects"),
        ({}, (torch.randn(4, 6), torch.randn(4, 6)), "dim=8"),
        ({}, (torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)), "only supported"),
        ({"version": "v3"}, (torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)), "both q2 and k2"),
    ],
)
def test_bad_inputs(kwargs, args, match):
    with pytest.raises(ValueError, match=match):
        MoCoLoss(dim=8, queue_size=16, **kwargs)(*args)


def test_bad_arguments():
    with pytest.raises(ValueError, match="version"):
        MoCoLoss(version="v1")
    with pytest.raises(ValueError, match="queue_size"):
        MoCoLoss(queue_size=0)
