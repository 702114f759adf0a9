"""SimSiam: a Siamese network with a predictor and stop-gradient; no negatives, no momentum encoder.

Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021, arXiv:2011.10566.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_transfer.losses.negative_cosine import NegativeCosineSimilarity
from monai_transfer.ssl.heads import PredictionHead, ProjectionHead
from monai_transfer.ssl.methods.joint import JointEmbeddingMethod

__all__ = ["SimSiam"]


class SimSiam(JointEmbeddingMethod):
    """SimSiam: ``z_i = g(f(x_i))``, ``p_i = h(z_i)``; loss ``(-cos(p1, sg(z2)) - cos(p2, sg(z1))) / 2``.

    The projector is the paper's: 3 layers with batch norm on every layer, the last one non-affine; the predictor
    is a 2-layer bottleneck MLP. Views are forwarded one at a time, as in the official code (batch-norm statistics
    per view); with a backbone without batch norms (ViT, Swin) the two views share one backbone call, which gives the
    same result faster.

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: projector output; ``None`` means ``num_features`` (2048 for a ResNet-50, as in the paper).
        hidden_dim: projector width; ``None`` means ``num_features``.
        prediction_dim: predictor bottleneck; ``None`` means ``projection_dim // 4`` (512 for 2048, as in the paper).
        projection_layers: projector layers (3 in the paper's ImageNet runs, 2 in its CIFAR runs).
        head_norm: norm in the heads (hidden layers, and non-affine after the projector): ``"batch"`` (paper),
            ``"layer"`` or ``None``.
        gather_distributed: accepted so every method takes the same options; the loss is per sample, so there is
            nothing to gather.
    """

    method_name = "simsiam"

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int | None = None,
        hidden_dim: int | None = None,
        prediction_dim: int | None = None,
        projection_layers: int = 3,
        head_norm: str | None = "batch",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        out = projection_dim or n
        self.projector = ProjectionHead(n, hidden_dim or n, out, projection_layers, norm=head_norm, last_norm=head_norm)
        self.predictor = PredictionHead(out, prediction_dim or max(out // 4, 1), out, num_layers=2, norm=head_norm)
        self.criterion = NegativeCosineSimilarity()
        self.gather_distributed = bool(gather_distributed)

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": symmetric negative cosine with stop-gradient on the projections}``."""
        z1, z2 = self.project(views)
        p1, p2 = self.predict([z1, z2])
        return {"loss": 0.5 * (self.criterion(p1, z2.detach()) + self.criterion(p2, z1.detach()))}
