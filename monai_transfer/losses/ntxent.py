"""NT-Xent (normalized temperature-scaled cross-entropy), the SimCLR loss.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020, arXiv:2002.05709. Matches ``lightly.loss.NTXentLoss`` (without memory bank) value for value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai_transfer.losses.checks import check_pair
from monai_transfer.losses.float32 import float32_forward
from monai_transfer.utils.distributed import gather_with_grad, is_distributed, rank

__all__ = ["NTXentLoss"]


class NTXentLoss(_Loss):
    """SimCLR contrastive loss over the ``2B`` views of a batch (``2B * world_size`` when gathering).

    For each view, its positive is the other view of the same sample; the ``2N - 2`` other views are negatives
    (``N`` = global batch size). The loss is the cross-entropy over cosine similarities divided by ``temperature``,
    averaged over the ``2B`` local views.

    Shapes:
        ``z1``, ``z2``: ``(B, D)`` projections of the two views; returns a scalar.

    Args:
        temperature: softmax temperature (SimCLR uses 0.1-0.5; lightly's default is 0.5).
        gather_distributed: take negatives from all DDP ranks (``gather_with_grad``); the mean of the per-rank
            losses then equals the single-process loss on the global batch.

    Raises:
        ValueError: non-positive temperature, inputs that are not two ``(B, D)`` tensors of the same shape.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = float(temperature)
        self.gather_distributed = bool(gather_distributed)

    @float32_forward
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss for projections ``z1``, ``z2`` of shape ``(B, D)``."""
        check_pair("NTXentLoss", z1, z2)
        b = z1.shape[0]
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
        offset = 0
        z1_all, z2_all = z1, z2
        if self.gather_distributed and is_distributed():
            z1_all, z2_all = gather_with_grad(z1), gather_with_grad(z2)
            offset = rank() * b
        n = z1_all.shape[0]
        local = torch.cat([z1, z2], dim=0)  # (2B, D)
        candidates = torch.cat([z1_all, z2_all], dim=0)  # (2N, D)
        logits = local @ candidates.T / self.temperature  # (2B, 2N)
        idx = torch.arange(b, device=z1.device) + offset
        self_idx = torch.cat([idx, idx + n])
        pos_idx = torch.cat([idx + n, idx])
        rows = torch.arange(2 * b, device=z1.device)
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[rows, self_idx] = True  # a view is not its own negative
        logits = logits.masked_fill(self_mask, float("-inf"))
        return F.cross_entropy(logits, pos_idx)
