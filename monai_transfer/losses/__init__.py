"""Losses, one per file (``_Loss`` subclasses with shape checks).

Fine-tuning uses MONAI's own losses where they suffice (``monai.losses.FocalLoss``, ``monai.losses.DiceCELoss``);
``LabelCrossEntropyLoss`` adds class-weighted cross-entropy on MONAI's class-index target layouts.
"""

from __future__ import annotations

from monai_transfer.losses.cross_entropy import LabelCrossEntropyLoss, balanced_class_weights

__all__ = ["LabelCrossEntropyLoss", "balanced_class_weights"]
