"""The surface every self-supervised method offers to the trainer (DESIGN convention 4).

An ``SSLMethod`` is an ``nn.Module`` that owns the encoder (``backbone``, a registry backbone), its heads, its loss
and, where the method has one, an EMA teacher. It is deliberately small: ``forward(batch)`` returns the loss and
its named terms; the trainer does everything else (devices, mixed precision, clipping, schedules, checkpoints).

Batch keys (all produced by the method's view recipe in ``monai_transfer.ssl.views``, shapes after collation):

* joint-embedding methods: ``image_v1``, ``image_v2`` ``(B, C, *roi)``; DINO adds local crops ``image_v3`` ...
* MAE / SimMIM: ``image`` ``(B, C, *roi)`` and ``mask`` ``(B, 1, *grid)``, 1 where a patch is masked
  (``grid = roi // mask_patch_size``);
* Models Genesis: ``image_v1`` (the corrupted view) and ``image`` (the restoration target);
* SwinUNETR multi-task: ``image_v1``, ``image_v2`` (rotated, cut-out inputs), ``target_v1``, ``target_v2`` (rotated,
  uncut) and ``rot_v1``, ``rot_v2`` (rotation classes, ``(B,)`` long).

Schedules set plain float attributes between steps (``teacher_momentum``; DINO's ``teacher_temperature``), so a
method never needs to know the iteration count, and a resumed run recomputes them from the step alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

__all__ = ["SSLMethod", "MissingViewError", "ema_update"]


class MissingViewError(KeyError):
    """A batch lacks a key the method needs (usually: the data pipeline is not the method's view recipe)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student`` for parameters; buffers are copied.

    Args:
        teacher: the EMA copy (its parameters have ``requires_grad=False``).
        student: the online module with the same structure.
        momentum: in [0, 1]; 1 leaves the teacher unchanged.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}.")
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student have different parameter lists; build the teacher with copy.deepcopy.")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1.0 - momentum)
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        tb.copy_(sb)


class SSLMethod(nn.Module):
    """Base class of the self-supervised methods.

    Subclasses set ``view_keys`` (the batch keys ``forward`` reads) and implement ``forward``; methods with an
    EMA teacher override ``update_teacher`` and ``export_encoder``.

    Args:
        backbone: the encoder being pretrained, a registry backbone (``forward_features`` and
            ``forward_intermediates``).
    """

    #: the method's registry name, set by each subclass
    method_name: str = ""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.view_keys: tuple[str, ...] = ()
        # overwritten by schedules between steps; methods without a teacher ignore it
        self.teacher_momentum: float = 0.996

    # -- contract ------------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Return ``{"loss": scalar with grad, <term>: detached scalar, ...}`` for one batch."""
        raise NotImplementedError

    def after_backward(self, epoch: int) -> None:
        """Called by the trainer between ``backward`` and the optimizer step (``epoch`` counts from 1).

        The place for gradient surgery a paper prescribes (DINO drops its last layer's gradients in epoch 1).
        """

    @torch.no_grad()
    def update_teacher(self) -> None:
        """Move the EMA teacher towards the student by ``self.teacher_momentum``; no-op without a teacher."""

    def export_encoder(self) -> nn.Module:
        """The encoder whose weights are published (the student, or the teacher where the paper says so)."""
        return self.backbone

    # -- shared helpers ------------------------------------------------------------------------------------------
    def check_batch(self, batch: Mapping[str, torch.Tensor], keys: Sequence[str] | None = None) -> None:
        """Raise ``MissingViewError`` naming the missing keys and the keys that were present."""
        missing = [k for k in (self.view_keys if keys is None else keys) if k not in batch]
        if missing:
            raise MissingViewError(
                f"{type(self).__name__} needs batch keys {list(self.view_keys)}; missing {missing}, got "
                f"{sorted(batch)}. Build the data pipeline with monai_transfer.ssl.views.make_views"
                f"({self.method_name!r}, ...)."
            )

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimizer updates (a teacher's are frozen)."""
        return (p for p in self.parameters() if p.requires_grad)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Two optimizer groups: weights with ``weight_decay``; biases, norms, tokens and embeddings without.

        The split is ``monai_transfer.networks.weight_decay.no_weight_decay_names``, shared with fine-tuning: norms,
        biases, 1-D parameters and position embeddings / class and mask tokens are not decayed (DINO, MAE practice). Each group carries ``base_weight_decay``; a weight-decay schedule sets the groups whose value is above 0.
        """
        from monai_transfer.networks.weight_decay import no_weight_decay_names

        excluded = no_weight_decay_names(self)  # the rule fine-tuning uses too
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if name in excluded else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay, "base_weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0, "base_weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]
