"""SimCLR: two augmented views, an MLP projector and the NT-Xent contrastive loss.

Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020, arXiv:2002.05709.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_transfer.losses.ntxent import NTXentLoss
from monai_transfer.ssl.heads import ProjectionHead
from monai_transfer.ssl.methods.joint import JointEmbeddingMethod

__all__ = ["SimCLR"]


class SimCLR(JointEmbeddingMethod):
    """SimCLR: ``z = g(f(x))`` for both views, NT-Xent over the ``2B`` projections (``2N`` when gathering).

    Both views go through the backbone and the projector as one ``2B`` batch, as in the official SimCLR code
    (which concatenates the views and uses global batch norm over all of them): batch statistics are shared by a
    sample's two views and its negatives alike, so they cannot tell positives apart.

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: output of the projector (128 in the paper).
        hidden_dim: projector width; ``None`` means the backbone's ``num_features`` (2048 for a ResNet-50, as in
            the paper).
        num_layers: projector layers (2 in SimCLR v1, 3 in v2).
        temperature: NT-Xent temperature. 0.5, the paper's CIFAR-10 setting (Appendix B.9): the 0.1 of its ImageNet
            runs suits batches of thousands, and medical pretraining runs with small batches.
        head_norm: norm in the projector's hidden layers: ``"batch"`` (paper), ``"layer"`` or ``None``.
        gather_distributed: take negatives from all DDP ranks.
    """

    method_name = "simclr"
    separate_views = False

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        num_layers: int = 2,
        temperature: float = 0.5,
        head_norm: str | None = "batch",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        self.projector = ProjectionHead(n, hidden_dim or n, projection_dim, num_layers, norm=head_norm)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": NT-Xent}`` for the views ``image_v1``, ``image_v2``."""
        z1, z2 = self.project(views)
        return {"loss": self.criterion(z1, z2)}
