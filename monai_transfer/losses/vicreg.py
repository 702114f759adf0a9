"""VICReg: variance-invariance-covariance regularisation.

Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
ICLR 2022, arXiv:2105.04906. Matches ``lightly.loss.VICRegLoss`` (same defaults, ``eps=1e-4``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai_transfer.losses.checks import check_pair
from monai_transfer.losses.float32 import float32_forward
from monai_transfer.utils.distributed import gather_with_grad, is_distributed

__all__ = ["VICRegLoss"]


def _variance(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Hinge on the per-dimension standard deviation: ``mean_j relu(1 - sqrt(Var(z_j) + eps))``."""
    return F.relu(1.0 - torch.sqrt(z.var(dim=0) + eps)).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances divided by ``D``."""
    b, d = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (b - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


class VICRegLoss(_Loss):
    """``lambda * MSE(z1, z2) + mu * (v(z1) + v(z2)) / 2 + nu * (c(z1) + c(z2))``.

    Shapes:
        ``z1``, ``z2``: ``(B, D)`` expander outputs of the two views, ``B >= 2``; returns a scalar.

    Args:
        lambda_param: invariance weight (25 in the paper).
        mu_param: variance weight (25).
        nu_param: covariance weight (1).
        gather_distributed: compute the variance and covariance terms over the batches of all DDP ranks
            (``gather_with_grad``, as the official code's ``FullGatherLayer``); the invariance term stays local.
        eps: added to the variance before the square root.

    Raises:
        ValueError: inputs that are not two ``(B, D)`` tensors of the same shape with ``B >= 2``.
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.lambda_param = float(lambda_param)
        self.mu_param = float(mu_param)
        self.nu_param = float(nu_param)
        self.gather_distributed = bool(gather_distributed)
        self.eps = float(eps)

    @float32_forward
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss for embeddings ``z1``, ``z2`` of shape ``(B, D)``."""
        check_pair("VICRegLoss", z1, z2, min_batch=2)
        inv = F.mse_loss(z1, z2)
        if self.gather_distributed and is_distributed():
            z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        var = 0.5 * (_variance(z1, self.eps) + _variance(z2, self.eps))
        cov = _covariance(z1) + _covariance(z2)
        return self.lambda_param * inv + self.mu_param * var + self.nu_param * cov
