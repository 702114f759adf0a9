"""Losses, one per file (``_Loss`` subclasses with shape checks).

Fine-tuning uses MONAI's own losses where they suffice (``monai.losses.FocalLoss``, ``monai.losses.DiceCELoss``);
``LabelCrossEntropyLoss`` adds class-weighted cross-entropy on MONAI's class-index target layouts.

Self-supervised pretraining losses: ``NTXentLoss`` (SimCLR), ``NegativeCosineSimilarity`` (SimSiam/BYOL),
``BarlowTwinsRedundancyLoss``, ``VICRegLoss``, ``DINOLoss`` and ``MoCoLoss`` (MoCo v2 queue / v3 symmetric);
``gather_with_grad`` gathers embeddings across DDP ranks keeping the local gradient.
"""

from __future__ import annotations

from monai_transfer.losses.barlow_twins import BarlowTwinsRedundancyLoss
from monai_transfer.losses.cross_entropy import LabelCrossEntropyLoss, balanced_class_weights
from monai_transfer.losses.dino import DINOLoss
from monai_transfer.losses.moco import MoCoLoss
from monai_transfer.losses.negative_cosine import NegativeCosineSimilarity
from monai_transfer.losses.ntxent import NTXentLoss
from monai_transfer.losses.vicreg import VICRegLoss
from monai_transfer.utils.distributed import gather_with_grad

__all__ = [
    "LabelCrossEntropyLoss",
    "balanced_class_weights",
    "BarlowTwinsRedundancyLoss",
    "DINOLoss",
    "MoCoLoss",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "VICRegLoss",
    "gather_with_grad",
]
