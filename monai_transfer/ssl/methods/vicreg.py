"""VICReg: invariance, variance and covariance terms on the expander outputs of two views.

Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
ICLR 2022, arXiv:2105.04906.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_transfer.losses.vicreg import VICRegLoss, _covariance, _variance
from monai_transfer.ssl.heads import ProjectionHead
from monai_transfer.ssl.methods.joint import JointEmbeddingMethod
from monai_transfer.utils.distributed import gather_no_grad

__all__ = ["VICReg"]


class VICReg(JointEmbeddingMethod):
    """VICReg: ``z_i = g(f(x_i))`` (the "expander"); ``VICRegLoss(z1, z2)``.

    Views are forwarded one at a time, as in the official code (batch-norm statistics per view); with a backbone
    without batch norms (ViT, Swin) the two views share one backbone call, which gives the same result faster.

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: expander output; ``None`` means ``2 * num_features`` (4096 for a ResNet-50, 1024 for a
            ResNet-18; the paper uses 8192 and its Table 6 shows a small loss at 4096).
        hidden_dim: expander width; ``None`` means ``projection_dim``.
        num_layers: expander layers (3 in the paper).
        lambda_param: invariance weight (25).
        mu_param: variance weight (25).
        nu_param: covariance weight (1).
        head_norm: norm in the expander's hidden layers, ``"batch"`` (paper), ``"layer"`` or ``None``.
        gather_distributed: variance and covariance over the batches of all DDP ranks.
    """

    method_name = "vicreg"

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int | None = None,
        hidden_dim: int | None = None,
        num_layers: int = 3,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        head_norm: str | None = "batch",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        out = projection_dim or 2 * n
        self.projector = ProjectionHead(n, hidden_dim or out, out, num_layers, norm=head_norm)
        self.criterion = VICRegLoss(
            lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param, gather_distributed=gather_distributed
        )

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss", "invariance", "variance", "covariance"}``; the terms are unweighted and detached (variance
        and covariance as the loss computes them, over all ranks when gathering)."""
        z1, z2 = self.project(views)
        loss = self.criterion(z1, z2)
        with torch.no_grad():
            invariance = F.mse_loss(z1, z2)
            if self.criterion.gather_distributed:
                z1, z2 = gather_no_grad(z1), gather_no_grad(z2)
            eps = self.criterion.eps
            variance = 0.5 * (_variance(z1, eps) + _variance(z2, eps))
            covariance = _covariance(z1) + _covariance(z2)
        return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}
