"""The record a registered SSL method is kept as (:class:`MethodSpec`) and the backbone families methods name. The
built-in table (``monai_transfer.ssl.methods.BUILTIN_METHODS``) and the registry both read it; it imports neither."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MethodSpec", "CNN_FAMILIES", "ALL_FAMILIES"]

#: backbone families (``BackboneConfig.family``) whose output is a convolutional feature pyramid
CNN_FAMILIES: tuple[str, ...] = ("resnet", "densenet", "efficientnet", "segresnet")
ALL_FAMILIES: tuple[str, ...] = CNN_FAMILIES + ("vit", "swin")


@dataclass(frozen=True)
class MethodSpec:
    """The record kept for a registered SSL method.

    Attributes:
        name: registry name, e.g. ``"simclr"``.
        target: ``"module:Class"`` of the ``SSLMethod`` subclass.
        kind: ``"contrastive"``, ``"non-contrastive"``, ``"reconstructive"`` or ``"multi-task"``.
        families: backbone families the method fits (``BackboneConfig.family``).
        spatial_dims: spatial dimensions the method supports.
        paper: the paper to cite (authors, year, arXiv id).
        description: one line for ``monai-transfer pretrain --list``.
        defaults: recommended optimiser settings (``lr``, ``weight_decay``, ``optimizer``, ``teacher_momentum``...),
            used by ``pretrain`` where the user gives none.
        reason: why the method is limited to ``families`` (shown when a pair does not fit).
        view_defaults: per backbone family, view-recipe options the backbone imposes unless the user sets them, as
            bundle-config values (``{"vit": {"mask_patch_size": "$list(@network_def.patch_size)"}}``: MAE masks
            exactly the ViT's patches).
        chance_loss: for a contrastive loss, its value when the embeddings carry no information (every candidate
            equally likely), as an expression in ``batch`` (the samples competing as candidates: the global batch
            when the loss gathers across ranks), ``queue_size``, ``temperature`` (read from the method's loss) and
            ``log``; ``None``: no chance level (non-contrastive and reconstructive losses). ``pretrain`` warns when
            the loss stays there.
        min_batch: the smallest batch the method's loss can learn from (``pretrain`` refuses a smaller one before
            anything runs): 2 where the loss takes its negatives from the batch (SimCLR's NT-Xent, MoCo v3: with one
            sample its only candidate is the positive and the loss is 0 at every step) or standardises over it
            (Barlow Twins, VICReg: no variance in one sample). Methods whose heads use batch norm
            (``head_norm="batch"``) also need 2 samples per rank, whatever this value.
        min_batch_scope: what ``min_batch`` counts under DDP: ``"global"`` where the loss gathers across ranks (its
            default under ``torchrun``: per-rank batch x ranks), ``"rank"`` where its statistics are per rank.
        min_batch_why: why, for the message (``"NT-Xent takes its negatives from the batch"``).
    """

    name: str
    target: str
    kind: str
    families: tuple[str, ...] = ALL_FAMILIES
    spatial_dims: tuple[int, ...] = (2, 3)
    paper: str = ""
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    view_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    chance_loss: str | None = None
    min_batch: int = 1
    min_batch_scope: str = "rank"
    min_batch_why: str = ""

    def resolve(self) -> type:
        """Import and return the method class."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)
