"""DINO self-distillation loss with a centred, sharpened teacher.

Caron, Touvron, Misra, Jegou, Mairal, Bojanowski, Joulin, "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, arXiv:2104.14294. Matches ``lightly.loss.DINOLoss`` (``center_mode="mean"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai_transfer.losses.float32 import float32_forward
from monai_transfer.utils.distributed import all_reduce_mean

__all__ = ["DINOLoss"]


class DINOLoss(_Loss):
    """Cross-entropy between the centred, sharpened teacher softmax and the student log-softmax.

    Teacher view ``i`` and student view ``j`` contribute ``-sum_k P_t(i)_k log P_s(j)_k`` for every pair with
    ``i != j`` (the same view index is skipped: the teacher sees the global crops, which come first in the student
    list). The mean is over pairs and batch. After each forward the ``center`` buffer ``(1, 1, K)`` moves towards the
    batch mean of the teacher outputs: ``c <- m c + (1 - m) mean(t)``, the mean all-reduced over DDP ranks.

    Shapes:
        ``teacher_out``: a sequence of ``V_t`` tensors ``(B, K)`` (or one ``(V_t, B, K)`` tensor), ``V_t >= 1``;
        ``student_out``: a sequence of ``V_s`` tensors ``(B, K)`` (or ``(V_s, B, K)``); returns a scalar.

    Args:
        output_dim: ``K``, the head's output dimension.
        warmup_teacher_temp: teacher temperature at epoch 0.
        teacher_temp: teacher temperature after warm-up.
        warmup_teacher_temp_epochs: epochs of linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``.
        student_temp: student temperature.
        center_momentum: momentum ``m`` of the center update.

    Raises:
        ValueError: wrong ranks, a last dimension other than ``output_dim``, batch sizes that differ, or fewer than
            two views in all (no cross-view pair).
    """

    def __init__(
        self,
        output_dim: int,
        warmup_teacher_temp: float,
        teacher_temp: float,
        warmup_teacher_temp_epochs: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if output_dim < 1:
            raise ValueError(f"output_dim must be positive, got {output_dim}.")
        self.output_dim = int(output_dim)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.teacher_temp = float(teacher_temp)
        self.warmup_teacher_temp_epochs = int(warmup_teacher_temp_epochs)
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, 1, self.output_dim))

    def teacher_temperature(self, epoch: int | None = None) -> float:
        """Teacher temperature at ``epoch`` (linear warm-up, then constant; ``teacher_temp`` when ``None``)."""
        if epoch is None or epoch >= self.warmup_teacher_temp_epochs:
            return self.teacher_temp
        if self.warmup_teacher_temp_epochs <= 1:
            return self.warmup_teacher_temp
        frac = epoch / (self.warmup_teacher_temp_epochs - 1)
        return self.warmup_teacher_temp + frac * (self.teacher_temp - self.warmup_teacher_temp)

    def _stack(self, name: str, x: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        t = torch.stack(list(x)) if not isinstance(x, torch.Tensor) else x
        if t.ndim != 3 or t.shape[0] < 1 or t.shape[-1] != self.output_dim:
            raise ValueError(
                f"DINOLoss expects {name} as views of shape (B, {self.output_dim}) "
                f"(stacked (V, B, {self.output_dim})), got {tuple(t.shape)}."
            )
        return t

    @float32_forward
    def forward(
        self,
        teacher_out: Sequence[torch.Tensor] | torch.Tensor,
        student_out: Sequence[torch.Tensor] | torch.Tensor,
        epoch: int | None = None,
        teacher_temp: float | None = None,
    ) -> torch.Tensor:
        """Loss over all teacher/student view pairs with different indices; updates ``center``.

        Args:
            teacher_out: teacher head outputs, ``V_t`` views of ``(B, K)``.
            student_out: student head outputs, ``V_s`` views of ``(B, K)``.
            epoch: current epoch, for the teacher temperature warm-up.
            teacher_temp: explicit teacher temperature (overrides ``epoch``).
        """
        t = self._stack("teacher_out", teacher_out)
        s = self._stack("student_out", student_out)
        if t.shape[1] != s.shape[1]:
            raise ValueError(f"DINOLoss: teacher and student batch sizes differ: {t.shape[1]} and {s.shape[1]}.")
        n_pairs = t.shape[0] * s.shape[0] - min(t.shape[0], s.shape[0])
        if n_pairs == 0:
            raise ValueError(
                f"DINOLoss needs at least one teacher/student pair of different views, got {t.shape[0]} teacher "
                f"and {s.shape[0]} student view(s)."
            )
        temp = self.teacher_temperature(epoch) if teacher_temp is None else float(teacher_temp)
        t_prob = F.softmax((t.detach() - self.center) / temp, dim=-1)
        s_logp = F.log_softmax(s / self.student_temp, dim=-1)
        ce = -torch.einsum("tbk,sbk->ts", t_prob, s_logp)  # (V_t, V_s), summed over the batch
        cross_view = ~torch.eye(ce.shape[0], ce.shape[1], dtype=torch.bool, device=ce.device)
        loss = ce[cross_view].sum() / (n_pairs * t.shape[1])
        self.update_center(t)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """EMA update of ``center`` with the batch mean of ``teacher_out`` ``(V, B, K)`` (mean over DDP ranks)."""
        batch_center = all_reduce_mean(teacher_out.detach().mean(dim=(0, 1), keepdim=True))
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
