"""The skeleton the joint-embedding methods share (SimCLR, MoCo v2/v3, BYOL, SimSiam, Barlow Twins, VICReg).

Two views ``image_v1``, ``image_v2`` run through the backbone and a projector (``z = g(f(x))``), optionally a
predictor (``p = q(z)``) and an EMA teacher copy of backbone and projector; a loss compares them. The base class
holds that skeleton (lightly's decomposition); each method's file keeps only what differs: its heads, its loss and
whether it has a teacher. Modules are created by the subclass in its own order (the order of seeded initialisation
and of ``state_dict``), so the base class creates none itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from monai_transfer.ssl.base import SSLMethod, ema_update
from monai_transfer.ssl.methods._common import forward_views, frozen_copy

__all__ = ["JointEmbeddingMethod"]


class JointEmbeddingMethod(SSLMethod):
    """Base class of the two-view joint-embedding methods.

    Subclasses build ``projector`` (and ``predictor``, ``criterion``) in ``__init__``, call :meth:`add_teacher` where
    the method has an EMA teacher, and implement :meth:`objective`. ``forward`` checks the batch and hands the views
    to :meth:`objective`; ``update_teacher`` moves the teacher (when there is one) by ``teacher_momentum``.

    Batch keys: ``image_v1``, ``image_v2``, ``(B, C, *roi)`` each.

    Args:
        backbone: a registry backbone (``forward_features`` -> ``(B, num_features)``).
    """

    #: each view runs alone through modules with batch statistics, as the method's official code does (``False``:
    #: the views share one call, as in SimCLR's global batch norm over both views)
    separate_views: bool = True

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__(backbone)
        self.view_keys = ("image_v1", "image_v2")

    @property
    def num_features(self) -> int:
        """The backbone's embedding size (the projector's input)."""
        return int(self.backbone.num_features)

    def add_teacher(self) -> None:
        """The EMA teacher: frozen copies of the backbone and the projector (``teacher_backbone``,
        ``teacher_projector``); call it where the method's file creates them, which fixes their ``state_dict`` order."""
        self.teacher_backbone = frozen_copy(self.backbone)
        self.teacher_projector = frozen_copy(self.projector)

    @property
    def has_teacher(self) -> bool:
        """Whether :meth:`add_teacher` made a teacher."""
        return "teacher_backbone" in self._modules

    # -- the skeleton --------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss", <terms>...}`` of :meth:`objective` for the views ``image_v1``, ``image_v2``."""
        self.check_batch(batch)
        return self.objective([batch[k] for k in self.view_keys])

    def objective(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """The method's loss and its terms for the views (what each method's file defines)."""
        raise NotImplementedError

    def project(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[g(f(x)) for x in views]`` (views grouped into calls as :attr:`separate_views` allows)."""
        features = forward_views(self.backbone.forward_features, views, self.backbone, separate=self.separate_views)
        return forward_views(self.projector, features, self.projector, separate=self.separate_views)

    def predict(self, projections: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[q(z) for z in projections]`` through the predictor."""
        return forward_views(self.predictor, projections, self.predictor, separate=self.separate_views)

    @torch.no_grad()
    def targets(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The teacher's projections ``g_t(f_t(x))`` of the views (no gradient)."""
        teacher = self.teacher_backbone
        features = forward_views(teacher.forward_features, views, teacher, separate=self.separate_views)
        return forward_views(self.teacher_projector, features, self.teacher_projector, separate=self.separate_views)

    def predictions_and_targets(self, views: Sequence[torch.Tensor]) -> tuple[list, list]:
        """Online predictions ``q(g(f(x)))`` and teacher projections of each view, BYOL / MoCo v3 style."""
        return self.predict(self.project(views)), self.targets(views)

    @torch.no_grad()
    def update_teacher(self) -> None:
        """EMA of the teacher (backbone and projector) towards the online network; no-op without a teacher."""
        if self.has_teacher:
            ema_update(self.teacher_backbone, self.backbone, self.teacher_momentum)
            ema_update(self.teacher_projector, self.projector, self.teacher_momentum)
