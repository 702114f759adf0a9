"""SwinUNETR's multi-task self-supervised pretraining (Tang, Yang, Li, Roth, Landman, Xu, Nath and Hatamizadeh,
"Self-Supervised Pre-Training of Swin Transformers for 3D Medical Image Analysis", CVPR 2022, arXiv:2111.14791).

Three proxy tasks share one encoder: predicting the rotation (0, 90, 180, 270 degrees) of each view, contrastive
coding between two views of the same volume, and in-painting the cut-out regions of each view. The loss is
``rotation_weight * CE + contrastive_weight * NT-Xent + reconstruction_weight * L1`` (all weights 1 in the paper and
in MONAI research-contributions ``SwinUNETR/Pretrain/losses/loss.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from monai_transfer.losses import NTXentLoss
from monai_transfer.ssl.base import SSLMethod
from monai_transfer.ssl.reconstruction_heads import (
    ContrastiveHead,
    RotationHead,
    UpsampleReconstructionHead,
    check_pyramid_backbone,
)

__all__ = ["SwinUNETRPretraining"]


def _has_batch_statistics(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and (m.training or not m.track_running_stats) for m in module.modules())


class SwinUNETRPretraining(SSLMethod):
    """Rotation + contrastive + in-painting pretraining of a Swin (or CNN) encoder, as SwinUNETR-SSL.

    Batch keys: ``image_v1``, ``image_v2`` (rotated, cut-out views ``(B, C, *roi)``), ``target_v1``, ``target_v2``
    (the same views rotated but not cut out) and ``rot_v1``, ``rot_v2`` (rotation classes, ``(B,)`` long).
    ``roi`` must be divisible by the deepest stride (32 for SwinUNETR's encoder).

    Args:
        backbone: a registry backbone with a feature pyramid (Swin, as the paper, or CNN).
        rotation_weight, contrastive_weight, reconstruction_weight: the loss weights (paper: 1, 1, 1).
        num_rotations: rotation classes (4: multiples of 90 degrees).
        contrastive_dim: size of the contrastive embedding (512 in the paper).
        contrastive_hidden_dim: ``None`` for the paper's linear projection, else the hidden width of an MLP.
        temperature: NT-Xent temperature (0.5 in the paper).
        gather_distributed: take the contrastive negatives from all DDP ranks (the reference uses the local batch).
        upsample: the in-painting head, ``"vae"`` (the reference default) or ``"deconv"``.
        reconstruction_norm: normalisation of the ``"vae"`` head (instance, as the reference; it needs a deepest map
            of more than one voxel in training).

    ``forward`` returns ``{"loss", "rotation", "contrastive", "reconstruction"}``, the three terms detached and
    unweighted.

    Note:
        The rotation and contrastive heads read the global average of the deepest map. The reference ``SSLHead``
        reads its first and second tokens instead (one spatial position each, with a 96^3 input a 3^3 map), which
        ties each task to one corner of the volume and to the input size; pooling keeps both heads valid for any
        input size and any backbone. Both views go through the encoder as one batch of ``2B``, or one by one (as
        the reference) when the encoder has batch norm, so that each view keeps its own batch statistics.
    """

    method_name = "swin_unetr_ssl"

    def __init__(
        self,
        backbone: nn.Module,
        rotation_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        reconstruction_weight: float = 1.0,
        num_rotations: int = 4,
        contrastive_dim: int = 512,
        contrastive_hidden_dim: int | None = None,
        temperature: float = 0.5,
        gather_distributed: bool = False,
        upsample: str = "vae",
        reconstruction_norm: str | tuple = "instance",
    ) -> None:
        check_pyramid_backbone(backbone, "SwinUNETRPretraining")
        super().__init__(backbone)
        if min(rotation_weight, contrastive_weight, reconstruction_weight) < 0:
            raise ValueError("SwinUNETRPretraining loss weights must be non-negative.")
        if num_rotations < 2:
            raise ValueError(f"num_rotations must be at least 2, got {num_rotations}.")
        self.view_keys = ("image_v1", "image_v2", "target_v1", "target_v2", "rot_v1", "rot_v2")
        self.rotation_weight = float(rotation_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.reconstruction_weight = float(reconstruction_weight)
        self.num_rotations = int(num_rotations)
        deepest = backbone.feature_info[-1]
        self.stride = int(deepest.stride)
        self.rotation_head = RotationHead(int(deepest.channels), self.num_rotations)
        self.contrastive_head = ContrastiveHead(int(deepest.channels), contrastive_dim, contrastive_hidden_dim)
        self.reconstruction_head = UpsampleReconstructionHead(
            int(backbone.spatial_dims),
            int(deepest.channels),
            int(backbone.in_channels),
            self.stride,
            mode=upsample,
            norm=reconstruction_norm,
        )
        self.contrastive_loss = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def _check(self, batch: Mapping[str, torch.Tensor]) -> None:
        shape = batch["image_v1"].shape
        for key in ("image_v2", "target_v1", "target_v2"):
            if batch[key].shape != shape:
                raise ValueError(
                    f"SwinUNETRPretraining needs image_v1, image_v2, target_v1 and target_v2 of one shape; image_v1 is "
                    f"{tuple(shape)}, {key} is {tuple(batch[key].shape)}."
                )
        if any(s % self.stride for s in shape[2:]):
            raise ValueError(
                f"SwinUNETRPretraining needs image sizes divisible by the deepest stride {self.stride}, got "
                f"{tuple(shape[2:])}."
            )
        for key in ("rot_v1", "rot_v2"):
            rot = batch[key]
            if rot.shape != (shape[0],) or rot.dtype.is_floating_point:
                raise ValueError(
                    f"{key} must be integer rotation classes of shape ({shape[0]},), got {rot.dtype} {tuple(rot.shape)}."
                )
            if bool(((rot < 0) | (rot >= self.num_rotations)).any()):
                raise ValueError(f"{key} must lie in [0, {self.num_rotations}), got {rot.tolist()}.")

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self._check(batch)
        b = batch["image_v1"].shape[0]
        views = [batch["image_v1"], batch["image_v2"]]
        if _has_batch_statistics(self.backbone):
            # the reference forwards the views one by one; with batch norm, one call would mix their statistics
            deepest = torch.cat([self.backbone.forward_intermediates(v)[-1] for v in views])
        else:
            deepest = self.backbone.forward_intermediates(torch.cat(views))[-1]
        pooled = deepest.flatten(2).mean(dim=2)
        rotation = F.cross_entropy(
            self.rotation_head(pooled).float(), torch.cat([batch["rot_v1"], batch["rot_v2"]]).long()
        )
        z = self.contrastive_head(pooled).float()
        contrastive = self.contrastive_loss(z[:b], z[b:])
        target = torch.cat([batch["target_v1"], batch["target_v2"]])
        reconstruction = F.l1_loss(self.reconstruction_head(deepest).float(), target.float())
        loss = (
            self.rotation_weight * rotation
            + self.contrastive_weight * contrastive
            + self.reconstruction_weight * reconstruction
        )
        return {
            "loss": loss,
            "rotation": rotation.detach(),
            "contrastive": contrastive.detach(),
            "reconstruction": reconstruction.detach(),
        }
