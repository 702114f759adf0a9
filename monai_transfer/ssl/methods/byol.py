"""BYOL: an online network with a predictor regresses the projection of an EMA target network.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020,
arXiv:2006.07733.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_transfer.losses.negative_cosine import NegativeCosineSimilarity
from monai_transfer.ssl.heads import PredictionHead, ProjectionHead
from monai_transfer.ssl.methods.joint import JointEmbeddingMethod

__all__ = ["BYOL"]


class BYOL(JointEmbeddingMethod):
    """BYOL: ``p_i = q(g(f(x_i)))`` online, ``z'_i = g_t(f_t(x_i))`` from the EMA target; symmetric loss
    ``(-cos(p1, z'2) - cos(p2, z'1)) / 2``.

    The paper's ``||p/|p| - z/|z|||^2 = 2 - 2 cos`` summed over both directions equals ``4 + 4 * loss`` here, the
    same minimiser with gradients scaled by 4 (this scale follows lightly and SimSiam).

    Views are forwarded one at a time, as in the official code (batch-norm statistics per view); with a backbone
    without batch norms (ViT, Swin) the two views share one backbone call, which gives the same result faster.
    The target stays in training mode like the online network (its batch norms use batch statistics, as in the
    official code).

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: output of projector and predictor (256 in the paper).
        hidden_dim: projector and predictor width; ``None`` means ``2 * num_features`` (4096 for a ResNet-50, as in
            the paper; 1024 for a ResNet-18).
        teacher_momentum: initial EMA momentum of the target (the paper's 0.996 is for 1000 epochs at batch 4096;
            0.99, its setting for shorter runs, by default); schedules overwrite ``self.teacher_momentum``.
        head_norm: norm in the heads' hidden layers, ``"batch"`` (paper), ``"layer"`` or ``None``.
        gather_distributed: accepted so every method takes the same options; the loss is per sample, so there is
            nothing to gather.
    """

    method_name = "byol"

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 256,
        hidden_dim: int | None = None,
        teacher_momentum: float = 0.99,
        head_norm: str | None = "batch",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        hidden = hidden_dim or 2 * n
        self.projector = ProjectionHead(n, hidden, projection_dim, num_layers=2, norm=head_norm)
        self.predictor = PredictionHead(projection_dim, hidden, projection_dim, num_layers=2, norm=head_norm)
        self.add_teacher()
        self.criterion = NegativeCosineSimilarity()
        self.teacher_momentum = float(teacher_momentum)
        self.gather_distributed = bool(gather_distributed)

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": symmetric negative cosine between predictions and target projections}``."""
        (p1, p2), (t1, t2) = self.predictions_and_targets(views)
        return {"loss": 0.5 * (self.criterion(p1, t2) + self.criterion(p2, t1))}
