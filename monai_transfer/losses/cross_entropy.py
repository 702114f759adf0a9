"""Cross-entropy on logits with class-index targets in MONAI's layouts, optionally class-weighted.

Class weights inversely proportional to class frequency ("balanced" weights, King & Zeng 2001; used for class
imbalance in medical imaging e.g. by Ronneberger et al. 2015, arXiv:1505.04597) counter a skewed training set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["LabelCrossEntropyLoss", "balanced_class_weights"]


def balanced_class_weights(counts: Sequence[float], normalize: bool = True) -> list[float]:
    """Weights ``n / (C * n_c)`` from per-class counts (classes never seen get weight 0).

    Args:
        counts: count of each class in the training set (images for classification, voxels for segmentation).
        normalize: rescale so that the count-weighted mean weight is 1 (the loss keeps its scale).
    """
    c = torch.as_tensor(list(counts), dtype=torch.float64)
    if c.ndim != 1 or len(c) < 1 or (c < 0).any() or c.sum() <= 0:
        raise ValueError(f"counts must be non-negative with a positive sum, got {list(counts)}")
    w = torch.where(c > 0, c.sum() / (len(c) * c.clamp_min(1e-12)), torch.zeros_like(c))
    if normalize:
        w = w * c.sum() / (w * c).sum()
    return [float(v) for v in w]


class LabelCrossEntropyLoss(_Loss):
    """``torch.nn.functional.cross_entropy`` that accepts MONAI's class-index target layouts.

    Shapes:
        * classification: ``input`` logits ``(B, C)``; ``target`` ``(B,)`` or ``(B, 1)`` class indices.
        * segmentation: ``input`` logits ``(B, C, *spatial)``; ``target`` ``(B, 1, *spatial)`` or ``(B, *spatial)``.

    Args:
        weight: per-class weights ``(C,)`` (e.g. ``balanced_class_weights``), or ``None``.
        label_smoothing: as in ``torch.nn.CrossEntropyLoss``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: shapes that do not match, or a class index outside ``[0, C)`` (named with its value).
    """

    def __init__(
        self,
        weight: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() < 2:
            raise ValueError(f"input must be logits (B, C, *spatial), got shape {tuple(input.shape)}")
        n_classes = input.shape[1]
        if target.dim() == input.dim() and target.shape[1] == 1:
            target = target[:, 0]
        if target.shape != input.shape[:1] + input.shape[2:]:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match input {tuple(input.shape)}: expected class indices "
                f"{(input.shape[0], 1, *input.shape[2:])} or {(input.shape[0], *input.shape[2:])}"
            )
        if self.weight is not None and self.weight.numel() != n_classes:
            raise ValueError(f"weight has {self.weight.numel()} entries but input has {n_classes} classes")
        target = target.long()
        if target.numel() and (target.min() < 0 or target.max() >= n_classes):
            bad = target[(target < 0) | (target >= n_classes)].unique().tolist()
            raise ValueError(f"target has class indices {bad} outside [0, {n_classes})")
        weight = None if self.weight is None else self.weight.to(input.device, input.dtype)
        return F.cross_entropy(
            input, target, weight=weight, reduction=self.reduction, label_smoothing=self.label_smoothing
        )
