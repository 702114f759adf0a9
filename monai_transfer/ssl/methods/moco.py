"""MoCo v2 (momentum key encoder, FIFO queue of negatives) and MoCo v3 (momentum encoder, predictor, symmetric
in-batch InfoNCE).

He, Fan, Wu, Xie and Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
arXiv:1911.05722; Chen, Fan, Girshick and He, "Improved Baselines with Momentum Contrastive Learning",
arXiv:2003.04297; Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021,
arXiv:2104.02057.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_transfer.losses.moco import MoCoLoss
from monai_transfer.ssl.heads import PredictionHead, ProjectionHead
from monai_transfer.ssl.methods._common import backbone_family, batch_shuffle_ddp, batch_unshuffle_ddp
from monai_transfer.ssl.methods.joint import JointEmbeddingMethod

__all__ = ["MoCoV2", "MoCoV3"]

_TRANSFORMERS = ("vit", "swin")


class MoCoV2(JointEmbeddingMethod):
    """MoCo v2: queries ``q = g(f(x1))``, keys ``k = g_t(f_t(x2))`` from the EMA key encoder, InfoNCE against ``k``
    and a FIFO queue of earlier keys (``MoCoLoss(version="v2")``, which enqueues the keys, gathered from all ranks
    when ``gather_distributed``).

    The loss is the paper's asymmetric one (view 1 queries, view 2 keys). Query and key encoders run on different
    views in different networks, so the views are never concatenated. With ``shuffle_bn`` (the paper's Shuffle BN)
    the key batch is shuffled across DDP ranks before the key encoder, so that batch-norm statistics cannot reveal
    which key is the positive; in a single process it has no effect. A single-process run with a batch-norm
    backbone therefore lacks that protection, as lightly's single-GPU example does.

    Batch keys: ``image_v1`` (queries), ``image_v2`` (keys), ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: output of the projector and size of the queue's rows (128 in the paper).
        hidden_dim: projector width; ``None`` means ``num_features`` (2048 for a ResNet-50, as in the paper).
        queue_size: negatives kept. 4096, not the paper's 65536: the queue should stay well below the number of
            training images, or it holds stale copies of the current positives (medical datasets are small; the
            paper's ablation shows little change from 4096 to 65536 on ImageNet).
        temperature: InfoNCE temperature (0.2 in MoCo v2).
        teacher_momentum: initial EMA momentum of the key encoder (0.999 in the paper); schedules overwrite
            ``self.teacher_momentum``.
        head_norm: norm in the projector's hidden layer; ``None`` as in MoCo v2, or ``"batch"`` / ``"layer"``.
        shuffle_bn: shuffle the key batch across DDP ranks (Shuffle BN).
        gather_distributed: enqueue the keys of all ranks.
    """

    method_name = "moco_v2"

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 4096,
        temperature: float = 0.2,
        teacher_momentum: float = 0.999,
        head_norm: str | None = None,
        shuffle_bn: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        self.projector = ProjectionHead(n, hidden_dim or n, projection_dim, num_layers=2, norm=head_norm)
        self.add_teacher()
        self.criterion = MoCoLoss(
            dim=projection_dim,
            queue_size=queue_size,
            temperature=temperature,
            version="v2",
            gather_distributed=gather_distributed,
        )
        self.teacher_momentum = float(teacher_momentum)
        self.shuffle_bn = bool(shuffle_bn)

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": InfoNCE}`` of queries from ``image_v1`` and keys from ``image_v2`` through the key encoder (the
        EMA teacher); in training mode the keys then enter the queue."""
        q = self.projector(self.backbone.forward_features(views[0]))
        with torch.no_grad():
            x_k, idx_unshuffle = batch_shuffle_ddp(views[1]) if self.shuffle_bn else (views[1], None)
            k = self.teacher_projector(self.teacher_backbone.forward_features(x_k))
            k = batch_unshuffle_ddp(k, idx_unshuffle)
        return {"loss": self.criterion(q, k)}


class MoCoV3(JointEmbeddingMethod):
    """MoCo v3: ``q_i = h(g(f(x_i)))``, keys ``k_i = g_t(f_t(x_i))`` from the EMA encoder, and the symmetric InfoNCE
    ``ctr(q1, k2) + ctr(q2, k1)`` with the other keys of the (global) batch as negatives (``MoCoLoss("v3")``).

    Views are forwarded one at a time, as in the official code: every batch norm (projector, predictor, and the
    backbone's for a CNN) then sees one view's batch. With a backbone without batch norms (ViT, Swin) the two views
    share one backbone call, which gives the same result faster.

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        projection_dim: output of projector and predictor (256 in the paper).
        hidden_dim: projector and predictor width; ``None`` means ``2 * num_features`` (4096 for a ResNet-50, as in
            the paper; smaller for the ViTs and small CNNs used on medical data).
        projection_layers: projector layers; ``None`` means 2 for CNNs and 3 for ViT/Swin, the paper's choice.
        temperature: ``None`` means the paper's 1.0 for CNNs and 0.2 for ViT/Swin.
        teacher_momentum: initial EMA momentum (0.99 in the paper, cosine-increased to 1).
        head_norm: norm in the heads' hidden layers and (non-affine) after the projector, ``"batch"`` as in the paper,
            or ``"layer"`` / ``None``.
        gather_distributed: take negative keys from all DDP ranks.
    """

    method_name = "moco_v3"

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 256,
        hidden_dim: int | None = None,
        projection_layers: int | None = None,
        temperature: float | None = None,
        teacher_momentum: float = 0.99,
        head_norm: str | None = "batch",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(backbone)
        n = self.num_features
        transformer = backbone_family(backbone) in _TRANSFORMERS
        hidden = hidden_dim or 2 * n
        layers = projection_layers or (3 if transformer else 2)
        self.projector = ProjectionHead(n, hidden, projection_dim, layers, norm=head_norm, last_norm=head_norm)
        self.predictor = PredictionHead(projection_dim, hidden, projection_dim, num_layers=2, norm=head_norm)
        self.add_teacher()
        if temperature is None:
            temperature = 0.2 if transformer else 1.0
        self.criterion = MoCoLoss(
            dim=projection_dim, temperature=temperature, version="v3", gather_distributed=gather_distributed
        )
        self.teacher_momentum = float(teacher_momentum)

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": ctr(q1, k2) + ctr(q2, k1)}`` (the predictor has no teacher copy)."""
        (q1, q2), (k1, k2) = self.predictions_and_targets(views)
        return {"loss": self.criterion(q1, k2, q2, k1)}
