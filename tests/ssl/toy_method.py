"""A tiny SSLMethod and data for the trainer tests: conv encoder, linear projector, NT-Xent and an EMA teacher.

The teacher's prediction enters the loss (a BYOL-like consistency term), and a buffer counts teacher updates, so a
resume that forgot the teacher or the buffers would change the losses.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, CopyItemsd, RandFlipd, RandGaussianNoised, RandScaleIntensityd
from torch import nn

from monai_transfer.engines.checkpoint import RunCheckpoint
from monai_transfer.losses import NTXentLoss
from monai_transfer.ssl.base import SSLMethod, ema_update

__all__ = ["ToyEncoder", "ToyMethod", "toy_data", "toy_views", "build", "pretraining_checkpoint"]


class ToyEncoder(nn.Module):
    """Conv(1->8) + norm + ReLU + global average pool: ``forward_features(x) -> (B, 8)``."""

    def __init__(self, in_channels: int = 1, width: int = 8, norm: str = "group") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.norm = {"group": lambda: nn.GroupNorm(2, width), "batch": lambda: nn.BatchNorm2d(width)}[norm]()
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class ToyMethod(SSLMethod):
    """NT-Xent between the two views plus ``0.1 *`` MSE to an EMA teacher's projection of the other view.

    Args:
        backbone: default a :class:`ToyEncoder` with ``norm``.
        dim: projection size.
        gather: NT-Xent negatives from all DDP ranks.
        norm: ``"group"`` (DDP-equivalent) or ``"batch"``.
        dropout: dropout before the projector (uses torch's global generator).
    """

    method_name = "toy"

    def __init__(
        self,
        backbone: nn.Module | None = None,
        dim: int = 8,
        gather: bool = True,
        norm: str = "group",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(backbone if backbone is not None else ToyEncoder(norm=norm))
        self.view_keys = ("image_v1", "image_v2")
        self.projector = nn.Linear(self.backbone.num_features, dim)
        # dropout draws from torch's global generator: an exact resume must restore it
        self.dropout = nn.Dropout(dropout)
        self.teacher = copy.deepcopy(nn.ModuleDict({"backbone": self.backbone, "projector": self.projector}))
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.ntxent = NTXentLoss(temperature=0.5, gather_distributed=gather)
        self.teacher_momentum = 0.9

    def _student(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.dropout(self.backbone.forward_features(x)))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        v1, v2 = batch["image_v1"], batch["image_v2"]
        z1, z2 = self._student(v1), self._student(v2)
        contrastive = self.ntxent(z1, z2)
        with torch.no_grad():
            t2 = self.teacher["projector"](self.teacher["backbone"].forward_features(v2))
        consistency = F.mse_loss(z1, t2)
        loss = contrastive + 0.1 * consistency
        return {"loss": loss, "ntxent": contrastive.detach(), "consistency": consistency.detach()}

    @torch.no_grad()
    def update_teacher(self) -> None:
        student = nn.ModuleDict({"backbone": self.backbone, "projector": self.projector})
        ema_update(self.teacher, student, self.teacher_momentum)
        self.num_updates += 1


def toy_data(n: int = 16, size: int = 8, seed: int = 0, classes: int = 2) -> list[dict]:
    """``n`` images ``(1, size, size)``: class 0 bright on the left half, class 1 on the right, plus noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.normal(0, 0.3, (1, size, size)).astype(np.float32)
        label = i % classes
        if label == 0:
            img[:, :, : size // 2] += 1.0
        else:
            img[:, :, size // 2 :] += 1.0
        out.append({"image": img, "label": label})
    return out


def toy_views() -> Compose:
    """Two random views ``image_v1``, ``image_v2`` of ``image`` (MONAI transforms drawing from their own ``R``)."""
    return Compose(
        [
            CopyItemsd(keys="image", times=2, names=["image_v1", "image_v2"]),
            RandFlipd(keys="image_v1", prob=0.5, spatial_axis=0),
            RandScaleIntensityd(keys=["image_v1", "image_v2"], factors=0.2, prob=1.0),
            RandGaussianNoised(keys=["image_v1", "image_v2"], prob=1.0, std=0.1),
        ]
    )


def build(seed: int = 0, **kwargs) -> ToyMethod:
    """A ToyMethod whose initial weights depend only on ``seed`` (a forked RNG, no global side effect)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ToyMethod(**kwargs)


def pretraining_checkpoint(save_dir, every=None, every_epochs=1, **kwargs) -> RunCheckpoint:
    """The checkpoint handler as a pretraining config builds it: it only saves (``ssl.resume.resume`` resumes)."""
    return RunCheckpoint(save_dir, resume=None, every=every, every_epochs=every_epochs, module_key="method",
                         every_rank=False, **kwargs)  # fmt: skip
