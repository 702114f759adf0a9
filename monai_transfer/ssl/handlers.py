"""The pretraining trainer's own handlers: the loss per epoch, the chance-loss monitor and the progress bar.

:class:`EpochLosses` (the mean loss per epoch, checkpointed), :class:`ChanceLossMonitor` (a contrastive loss stuck at
its chance value is flagged), :class:`LossProgressBar`, and :func:`close_writers` for the config's ``finalize``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_transfer.utils.distributed import unwrap, world_size

__all__ = ["EpochLosses", "chance_loss", "ChanceLossMonitor", "LossProgressBar", "close_writers"]

logger = logging.getLogger("monai_transfer.ssl")


class EpochLosses:
    """Mean training loss per epoch (``losses``, also ``engine.state.metrics["epoch_loss"]``) and the range of the
    iteration losses within each epoch (``ranges``: ``[min, max]``); a stateful object for
    :class:`~monai_transfer.engines.RunCheckpoint`, so a resumed run keeps the earlier epochs."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.ranges: list[list[float]] = []
        self.running: dict[str, float] = self._empty()

    @staticmethod
    def _empty() -> dict[str, float]:
        return {"sum": 0.0, "n": 0, "min": math.inf, "max": -math.inf}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_mean)

    def _accumulate(self, engine: Engine) -> None:
        value = float(engine.state.output["loss"])
        r = self.running
        r["sum"] += value
        r["n"] += 1
        r["min"], r["max"] = min(r["min"], value), max(r["max"], value)

    def _epoch_mean(self, engine: Engine) -> None:
        r = self.running
        self.losses.append(r["sum"] / max(r["n"], 1))
        self.ranges.append([r["min"], r["max"]])
        engine.state.metrics["epoch_loss"] = self.losses[-1]
        self.running = self._empty()

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "ranges": [list(r) for r in self.ranges], "running": dict(self.running)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.losses = [float(v) for v in state.get("losses", [])]
        self.ranges = [[float(a), float(b)] for a, b in state.get("ranges", [])]
        self.running = {**self._empty(), **dict(state.get("running", {}))}


def chance_loss(formula: str | None, method: torch.nn.Module, batch_size: int) -> float | None:
    """The chance value of a contrastive loss: ``formula`` (``MethodSpec.chance_loss``) evaluated with ``batch``
    (``batch_size``, times the number of ranks when the loss gathers across them), ``queue_size`` and ``temperature``
    (read from the method's ``criterion``) and ``log``."""
    if not formula:
        return None
    criterion = getattr(unwrap(method), "criterion", None)
    gathers = bool(getattr(criterion, "gather_distributed", False))
    names = {
        "log": math.log,
        "batch": int(batch_size) * (world_size() if gathers else 1),
        "queue_size": int(getattr(criterion, "queue_size", 0) or 0),
        "temperature": float(getattr(criterion, "temperature", 1.0)),
    }
    return float(eval(formula, {"__builtins__": {}}, names))  # noqa: S307 - a formula from the method registry


class ChanceLossMonitor:
    """Flag a contrastive loss that stays at its chance value: the embeddings then carry no information.

    At every epoch end, when every iteration loss of the last ``patience`` epochs lay within ``rtol`` (relative) of
    ``chance``, a warning is logged once and kept in ``warnings`` (and in ``result.json``). A run that learns slowly
    also starts near chance, but its iteration losses scatter around it; collapsed embeddings (constant views, a
    temperature far too high) give the chance value at every step. The state is that of :class:`EpochLosses`, so a
    resumed run decides the same.

    Args:
        losses: the run's :class:`EpochLosses`.
        formula: ``MethodSpec.chance_loss``; ``None`` disables the monitor.
        method: the SSL method (its ``criterion`` gives the temperature and queue size).
        batch_size: per rank.
        patience: epochs at chance before the run is flagged.
        rtol: relative distance from chance still counted as chance.
        warmup_epochs: epochs of learning-rate warm-up, not counted (a loss may rest at chance while the rate is
            tiny).
    """

    def __init__(
        self,
        losses: EpochLosses,
        formula: str | None,
        method: torch.nn.Module,
        batch_size: int,
        patience: int = 3,
        rtol: float = 0.01,
        warmup_epochs: float = 0.0,
    ) -> None:
        self.losses = losses
        self.formula = formula
        self.chance = chance_loss(formula, method, batch_size)
        self.patience = max(1, int(patience))
        self.rtol = float(rtol)
        self.skip = int(math.ceil(float(warmup_epochs or 0.0)))
        self.warnings: list[str] = []

    def attach(self, engine: Engine) -> None:
        if self.chance is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def stuck(self) -> bool:
        """Whether every iteration loss of the last ``patience`` epochs lay at chance."""
        last = self.losses.ranges[self.skip :][-self.patience :]
        if self.chance is None or len(last) < self.patience:
            return False
        tol = self.rtol * abs(self.chance)
        return all(abs(lo - self.chance) <= tol and abs(hi - self.chance) <= tol for lo, hi in last)

    def __call__(self, engine: Engine) -> None:
        if self.warnings or not self.stuck():
            return
        msg = (
            f"the loss has stayed at its chance value {self.chance:.4f} ({self.formula}) for {self.patience} epochs "
            f"(last {self.losses.losses[-1]:.4f}): the encoder is not learning. Check that the views are not "
            f"constant (the intensity mapping), lower the temperature or raise the learning rate"
        )
        self.warnings.append(msg)
        logger.warning(msg)


class LossProgressBar:
    """ignite's ``ProgressBar`` showing the loss, attachable from a config (``attach(engine)`` only)."""

    def __init__(self, persist: bool = False) -> None:
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar
        from monai.handlers import from_engine

        ProgressBar(persist=self.persist).attach(engine, output_transform=from_engine(["loss"], first=True))


def close_writers(handlers: Sequence[Any] | None) -> None:
    """Close the event writers of the handlers that hold one (``TensorBoardStatsHandler``)."""
    for h in handlers or ():
        close = getattr(h, "close", None)
        if callable(close) and hasattr(h, "_writer"):
            close()
