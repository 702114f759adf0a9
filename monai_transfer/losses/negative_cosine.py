"""Negative cosine similarity, the SimSiam / BYOL regression loss.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, arXiv:2011.10566;
Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, arXiv:2006.07733 (BYOL's ``2 - 2 cos`` is an affine
function of this loss). Matches ``lightly.loss.NegativeCosineSimilarity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai_transfer.losses.float32 import float32_forward

__all__ = ["NegativeCosineSimilarity"]


class NegativeCosineSimilarity(_Loss):
    """``-cos(p, z)`` along ``dim``, averaged (``reduction="mean"``), summed or returned per element.

    The caller applies stop-gradient to the target (``z.detach()`` in SimSiam; the momentum encoder in BYOL).

    Shapes:
        ``p``, ``z``: the same shape, e.g. ``(B, D)`` predictions and targets; returns a scalar, or the shape of
        the inputs without ``dim`` for ``reduction="none"``.

    Args:
        dim: dimension holding the features.
        eps: as in ``torch.nn.functional.cosine_similarity``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: inputs of different shapes.
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.dim = int(dim)
        self.eps = float(eps)

    @float32_forward
    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Negative cosine similarity between ``p`` and ``z`` (same shape)."""
        if p.shape != z.shape:
            raise ValueError(
                f"NegativeCosineSimilarity expects inputs of the same shape, got {tuple(p.shape)} and {tuple(z.shape)}."
            )
        loss = -F.cosine_similarity(p, z, dim=self.dim, eps=self.eps)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        if self.reduction == "none":
            return loss
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {self.reduction!r}.")
