"""DINO: self-distillation with no labels; the student matches the centred, sharpened EMA teacher over multi-crop
views.

Caron, Touvron, Misra, Jegou, Mairal, Bojanowski and Joulin, "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, arXiv:2104.14294.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping

import torch
from torch import nn

from monai_transfer.losses.dino import DINOLoss
from monai_transfer.ssl.base import SSLMethod, ema_update
from monai_transfer.ssl.heads import DINOHead
from monai_transfer.ssl.methods._common import forward_views, frozen_copy

__all__ = ["DINO"]

_VIEW_KEY = re.compile(r"image_v(\d+)")


class DINO(SSLMethod):
    """DINO: the teacher ``h_t(f_t(.))`` sees the two global views, the student ``h(f(.))`` sees all views; the loss
    is the cross-entropy of every student view against every other teacher view (``DINOLoss``, which also moves the
    teacher's center).

    Like the official multi-crop wrapper, consecutive views of the same size go through the backbone in one call
    (the global crops together, the local crops together) and the head runs once on all embeddings. The teacher
    stays in training mode (batch statistics in a CNN backbone's batch norms, as in the official code).

    The teacher temperature is the plain attribute ``teacher_temperature``: a schedule sets it between steps (the
    paper warms it up linearly from 0.04 to 0.04-0.07 over 30 epochs) and ``forward`` passes it to the loss.
    The paper evaluates the teacher, so ``export_encoder`` returns (a copy of) the teacher backbone.

    Batch keys: ``image_v1``, ``image_v2`` (global crops, ``(B, C, *roi)``) and optionally ``image_v3`` ...
    ``image_vN`` (local crops, ``(B, C, *roi_local)``, usually smaller); the number of views is read from the batch.
    Backbones with fixed input sizes (ViT) need local crops of the global size.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
        out_dim: ``K``, the head's output logits. 4096, not the paper's 65536: a medical dataset has far fewer
            distinct images and modes, and the paper's ablation (Table 9 of the appendix) shows a small gain from
            4096 to 65536 on ImageNet.
        hidden_dim: head MLP width (2048).
        bottleneck_dim: head bottleneck (256).
        num_layers: head MLP layers (3).
        norm_last_layer: freeze the weight norm of the head's last layer (True: stable; the paper's ViT-S uses
            False for a better result).
        student_temperature: student softmax temperature (0.1).
        teacher_temperature: initial teacher temperature (0.04, the paper's warm-up start).
        center_momentum: momentum of the teacher center (0.9).
        teacher_momentum: initial EMA momentum (0.996, cosine-increased to 1 in the paper).
        head_norm: norm in the head's hidden layers: ``None`` (paper, ViT), ``"batch"`` (the paper's ResNet option)
            or ``"layer"``.
        gather_distributed: accepted so every method takes the same options; the center is always averaged over
            DDP ranks and the loss is per sample.
        freeze_last_layer_epochs: epochs (from the start) during which the head's last layer gets no update (1, as
            the official code).
    """

    method_name = "dino"

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        center_momentum: float = 0.9,
        teacher_momentum: float = 0.996,
        head_norm: str | None = None,
        gather_distributed: bool = False,
        freeze_last_layer_epochs: int = 1,
    ) -> None:
        super().__init__(backbone)
        self.view_keys = ("image_v1", "image_v2")
        self.head = DINOHead(
            int(backbone.num_features),
            out_dim,
            hidden_dim=hidden_dim,
            bottleneck_dim=bottleneck_dim,
            num_layers=num_layers,
            norm=head_norm,
            norm_last_layer=norm_last_layer,
        )
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)
        # the warm-up arguments are unused: forward passes self.teacher_temperature explicitly
        self.criterion = DINOLoss(
            out_dim,
            warmup_teacher_temp=teacher_temperature,
            teacher_temp=teacher_temperature,
            warmup_teacher_temp_epochs=0,
            student_temp=student_temperature,
            center_momentum=center_momentum,
        )
        self.teacher_temperature = float(teacher_temperature)
        self.teacher_momentum = float(teacher_momentum)
        self.gather_distributed = bool(gather_distributed)
        self.freeze_last_layer_epochs = int(freeze_last_layer_epochs)

    def views(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The batch's views ``image_v1`` ... ``image_vN`` in order; ``MissingViewError`` names any gap."""
        self.check_batch(batch)
        numbers = [int(m.group(1)) for k in batch if (m := _VIEW_KEY.fullmatch(k))]
        keys = [f"image_v{i}" for i in range(1, max(numbers) + 1)]
        self.check_batch(batch, keys)
        return [batch[k] for k in keys]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": DINO cross-entropy}`` over all (teacher global view, other student view) pairs."""
        views = self.views(batch)
        with torch.no_grad():
            t_features = forward_views(
                self.teacher_backbone.forward_features, views[:2], self.teacher_backbone, separate=False
            )
            teacher_out = self.teacher_head(torch.cat(t_features)).chunk(2)
        s_features = forward_views(self.backbone.forward_features, views, self.backbone, separate=False)
        student_out = self.head(torch.cat(s_features)).split([f.shape[0] for f in s_features])
        loss = self.criterion(teacher_out, student_out, teacher_temp=self.teacher_temperature)
        return {"loss": loss}

    @torch.no_grad()
    def update_teacher(self) -> None:
        """EMA of the teacher (backbone and head) towards the student."""
        ema_update(self.teacher_backbone, self.backbone, self.teacher_momentum)
        ema_update(self.teacher_head, self.head, self.teacher_momentum)

    def export_encoder(self) -> nn.Module:
        """A trainable copy of the teacher backbone (the paper evaluates the teacher); the method is not changed."""
        return copy.deepcopy(self.teacher_backbone).requires_grad_(True)

    def after_backward(self, epoch: int) -> None:
        """Cancel the last layer's gradients during the first ``freeze_last_layer_epochs`` epochs."""
        if epoch <= self.freeze_last_layer_epochs:
            self.cancel_last_layer_gradients()

    def cancel_last_layer_gradients(self) -> None:
        """Drop the gradients of the head's last layer; the official code calls this after ``backward`` during the
        first epoch (``freeze_last_layer=1``), which it found helps training start."""
        for p in self.head.last_layer.parameters():
            p.grad = None
