"""MoCo InfoNCE: v2 with a FIFO queue of negative keys, v3 symmetric with in-batch negatives.

He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
arXiv:1911.05722; Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive Learning" (MoCo v2),
arXiv:2003.04297; Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers" (MoCo v3),
ICCV 2021, arXiv:2104.02057.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai_transfer.losses.checks import check_pair
from monai_transfer.losses.float32 import float32_forward
from monai_transfer.utils.distributed import gather_no_grad, is_distributed, rank

__all__ = ["MoCoLoss"]


class MoCoLoss(_Loss):
    """InfoNCE between queries and momentum-encoder keys.

    ``version="v2"``: for each query ``q_i`` the positive is ``k_i`` and the negatives are the ``queue_size`` keys
    in the ``queue`` buffer; logits ``[q_i . k_i, q_i . queue] / temperature``, target 0. After the loss the keys
    (gathered from all DDP ranks when ``gather_distributed``) replace the oldest queue entries (FIFO, ring buffer
    with pointer ``queue_ptr``; the size never changes). The queue is updated only in training mode (``.train()``).

    ``version="v3"``: no queue; the negatives of ``q_i`` are the other keys of the (global) batch; the symmetric form
    ``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr = 2 * temperature * CrossEntropy`` as in the MoCo v3 pseudocode, where
    the caller passes ``forward(q1, k2, q2, k1)``; without the second pair only ``ctr(q1, k2)`` is returned.

    Queries and keys are L2-normalised here; keys are detached (they come from the momentum encoder).

    Shapes:
        ``q``, ``k`` (and ``q2``, ``k2``): ``(B, D)`` with ``D == dim``; returns a scalar.

    Args:
        dim: feature dimension ``D`` (size of the queue's rows).
        queue_size: number of negative keys kept (v2; 65536 in MoCo v2). Must be positive for v2, ignored for v3.
        temperature: 0.2 for MoCo v2, 1.0 for MoCo v3 (ViT 0.2).
        version: ``"v2"`` (queue) or ``"v3"`` (in-batch negatives, symmetric).
        gather_distributed: v2: enqueue keys from all ranks; v3: negatives from all ranks.

    Raises:
        ValueError: bad arguments, inputs not ``(B, D)`` of the same shape, ``D != dim``, or a second pair given
            to v2 / only half of it given.
    """

    def __init__(
        self,
        dim: int = 128,
        queue_size: int = 65536,
        temperature: float = 0.2,
        version: str = "v2",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if version not in ("v2", "v3"):
            raise ValueError(f"version must be 'v2' or 'v3', got {version!r}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        if dim < 1 or (version == "v2" and queue_size < 1):
            raise ValueError(f"dim and queue_size must be positive, got dim={dim}, queue_size={queue_size}.")
        self.dim = int(dim)
        self.version = version
        self.temperature = float(temperature)
        self.gather_distributed = bool(gather_distributed)
        self.queue_size = int(queue_size) if version == "v2" else 0
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, self.dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _check(self, q: torch.Tensor, k: torch.Tensor) -> None:
        check_pair("MoCoLoss", q, k)
        if q.shape[1] != self.dim:
            raise ValueError(f"MoCoLoss was built with dim={self.dim}, got features of shape {tuple(q.shape)}.")

    @float32_forward
    def forward(
        self, q: torch.Tensor, k: torch.Tensor, q2: torch.Tensor | None = None, k2: torch.Tensor | None = None
    ) -> torch.Tensor:
        """InfoNCE of queries ``q`` against positives ``k`` (v2: and the queue; v3: and the other keys).

        Args:
            q: queries ``(B, D)`` from the online encoder.
            k: keys ``(B, D)`` from the momentum encoder, ``k[i]`` the positive of ``q[i]``.
            q2: v3 only: queries of the other view (symmetric form).
            k2: v3 only: keys that are the positives of ``q2``.
        """
        self._check(q, k)
        if (q2 is None) != (k2 is None):
            raise ValueError("MoCoLoss: pass both q2 and k2 (symmetric MoCo v3) or neither.")
        if self.version == "v2":
            if q2 is not None:
                raise ValueError("MoCoLoss: the symmetric pair (q2, k2) is only supported with version='v3'.")
            return self._v2(q, k)
        loss = self._v3(q, k)
        if q2 is not None:
            self._check(q2, k2)
            loss = loss + self._v3(q2, k2)
        return loss

    def _v2(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q = F.normalize(q, dim=1)
        k = F.normalize(k.detach(), dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        l_neg = q @ self.queue.clone().detach().to(q.dtype).T  # (B, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        if self.training:
            self._dequeue_and_enqueue(gather_no_grad(k) if self.gather_distributed else k)
        return loss

    def _v3(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q = F.normalize(q, dim=1)
        k = F.normalize(k.detach(), dim=1)
        offset = 0
        if self.gather_distributed and is_distributed():
            k = gather_no_grad(k)
            offset = rank() * q.shape[0]
        logits = q @ k.T / self.temperature  # (B, N)
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels) * 2 * self.temperature

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` ``(N, D)`` over the oldest queue rows (wrapping around); keeps only the newest
        ``queue_size`` when ``N > queue_size``."""
        keys = keys.detach().to(self.queue.dtype)[-self.queue_size :]
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=self.queue.device) + ptr) % self.queue_size
        self.queue[idx] = keys
        self.queue_ptr.fill_((ptr + n) % self.queue_size)
