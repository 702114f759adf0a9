"""Linear warm-up then cosine decay, as a multiplier of each parameter group's own base learning rate.

Fine-tuning strategies give every stage its own rate and add groups during training (gradual unfreezing, LP-FT), so
a ``torch.optim.lr_scheduler`` with base rates fixed at construction would undo them. Here each group keeps a
``base_lr`` (set by the strategy, or taken from ``lr`` the first time the group is seen) and the handler sets
``lr = base_lr * factor(iteration)`` before every iteration. The factor is a function of the global iteration alone,
so a resumed run recomputes the same rates.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["warmup_cosine_factor", "WarmupCosineHandler"]


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, final_factor: float = 0.0) -> float:
    """The multiplier at 0-based ``step``: linear from ``1 / warmup_steps`` to 1, then cosine to ``final_factor``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


class WarmupCosineHandler:
    """Ignite handler: before each iteration, every group's ``lr`` becomes ``base_lr * warmup_cosine_factor``.

    Args:
        optimizer: the optimizer whose groups are scheduled.
        max_epochs: the run's epochs (the schedule spans ``max_epochs * epoch_length`` iterations); ``None``: the
            engine's own ``max_epochs`` (so that an override of ``train#trainer#max_epochs``, as MONAI Label makes,
            keeps the schedule consistent).
        warmup_epochs: epochs of linear warm-up (fractions allowed; 0: none).
        final_factor: the multiplier at the end of the run.
        schedule: ``"cosine"`` (warm-up then cosine) or ``"constant"`` (warm-up then flat).
    """

    def __init__(
        self,
        optimizer: Any,
        max_epochs: int | None = None,
        warmup_epochs: float = 0.0,
        final_factor: float = 0.0,
        schedule: str = "cosine",
    ) -> None:
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        if warmup_epochs < 0 or (max_epochs is not None and max_epochs < 1):
            raise ValueError(f"need max_epochs >= 1 and warmup_epochs >= 0, got {max_epochs} and {warmup_epochs}")
        self.optimizer = optimizer
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.warmup_epochs = float(warmup_epochs)
        self.final_factor = float(final_factor)
        self.schedule = schedule

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def factor(self, iteration: int, epoch_length: int, max_epochs: int | None = None) -> float:
        """The multiplier of 1-based ``iteration``."""
        epochs = self.max_epochs if self.max_epochs is not None else max_epochs
        if epochs is None:
            raise ValueError("max_epochs is unknown: give it, or attach the handler to an engine")
        total = int(epochs) * epoch_length
        warm = int(round(self.warmup_epochs * epoch_length))
        if self.schedule == "constant":
            return (iteration) / warm if iteration <= warm and warm > 0 else 1.0
        return warmup_cosine_factor(iteration - 1, total, warm, self.final_factor)

    def __call__(self, engine: Any) -> None:
        f = self.factor(int(engine.state.iteration), int(engine.state.epoch_length), engine.state.max_epochs)
        for group in self.optimizer.param_groups:
            base = group.setdefault("base_lr", group["lr"])
            group["lr"] = base * f
