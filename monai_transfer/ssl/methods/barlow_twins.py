"""Barlow Twins: the cross-correlation of two views' embeddings is driven to the identity.

Zbontar, Jing, Misra, LeCun and Deny, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
ICML 2021, arXiv:2103.03230.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_transfer.losses.barlow_twins import BarlowTwinsRedundancyLoss
from monai_transfer.ssl.heads import ProjectionHead
from monai_transfer.ssl.methods.joint import JointEmbeddingMethod

__all__ = ["BarlowTwins"]


class BarlowTwins(JointEmbeddingMethod):
    """Barlow Twins: ``z_i = g(f(x_i))``; ``BarlowTwinsRedundancyLoss(z1, z2)``.

    Views are forwarded one at a time, as in the official code (each view's batch-norm statistics are its own, and
    the loss standardises each view over its own batch); with a backbone without batch norms (ViT, Swin) the two
    views share one backbone call, which gives the same result faster.

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: projector output; ``None`` means ``2 * num_features`` (4096 for a ResNet-50 and 1024 for a
            ResNet-18, smaller than the paper's 8192, which its Fig. 4 shows costs about a point on ImageNet and
            fits the memory of 3D pretraining).
        hidden_dim: projector width; ``None`` means ``projection_dim``.
        num_layers: projector layers (3 in the paper).
        lambda_param: weight of the off-diagonal term (5e-3 in the paper).
        head_norm: norm in the projector's hidden layers, ``"batch"`` (paper), ``"layer"`` or ``None``.
        gather_distributed: average the cross-correlation matrix over DDP ranks.
    """

    method_name = "barlow_twins"

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int | None = None,
        hidden_dim: int | None = None,
        num_layers: int = 3,
        lambda_param: float = 5e-3,
        head_norm: str | None = "batch",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        out = projection_dim or 2 * n
        self.projector = ProjectionHead(n, hidden_dim or out, out, num_layers, norm=head_norm)
        self.criterion = BarlowTwinsRedundancyLoss(lambda_param=lambda_param, gather_distributed=gather_distributed)

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": redundancy-reduction loss}``."""
        z1, z2 = self.project(views)
        return {"loss": self.criterion(z1, z2)}
