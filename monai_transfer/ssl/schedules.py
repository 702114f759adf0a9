"""Step-indexed schedules (learning rate, weight decay, EMA momentum, DINO teacher temperature) and their handler.

Every value is a pure function of the global step (``engine.state.iteration - 1``), never of a running state, so a
run resumed from a checkpoint recomputes exactly the values of the uninterrupted run. The shapes follow DINO
(Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", arXiv:2104.14294,
``utils.cosine_scheduler``): a linear warm-up, then a half cosine from ``start`` to ``end``; the teacher temperature
warms up linearly and then stays constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_transfer.utils.distributed import unwrap as _unwrap

__all__ = [
    "cosine_schedule",
    "linear_warmup_schedule",
    "CosineSchedule",
    "LinearWarmupSchedule",
    "ConstantSchedule",
    "ScheduleHandler",
    "as_schedule",
]

#: a schedule as accepted by ``ScheduleHandler``: a constant, a ``step -> value`` callable, ``(start, end)`` (cosine
#: over the whole run) or ``(start, end, warmup_epochs)`` (linear warm-up, then constant)
ScheduleSpec = float | Callable[[int], float] | Sequence[float]


def cosine_schedule(
    step: int, total_steps: int, start: float, end: float, warmup_steps: int = 0, warmup_start: float = 0.0
) -> float:
    """Linear warm-up from ``warmup_start`` to ``start`` over ``warmup_steps``, then a half cosine to ``end``.

    As in DINO's ``cosine_scheduler``: the cosine reaches ``end`` at ``step == total_steps`` (the value of the
    last step, ``total_steps - 1``, is one cosine step away from it); steps past the end return ``end``.

    Args:
        step: 0-based global step.
        total_steps: steps of the whole run (warm-up included).
        start: value at the end of the warm-up (the peak learning rate).
        end: final value.
        warmup_steps: linear warm-up length; 0 for none.
        warmup_start: value at step 0 when there is a warm-up.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}.")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    if step < warmup_steps:
        return warmup_start + (start - warmup_start) * step / warmup_steps
    span = total_steps - warmup_steps
    progress = min((step - warmup_steps) / span, 1.0) if span > 0 else 1.0
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def linear_warmup_schedule(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear from ``start`` (step 0) to ``end`` (step ``warmup_steps``), then constant ``end``.

    DINO's teacher temperature (0.04 to 0.07 over the first 30 epochs) has this shape.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
    if step >= warmup_steps:
        return float(end)
    return start + (end - start) * step / warmup_steps


class CosineSchedule:
    """``cosine_schedule`` as a ``step -> value`` callable (buildable from bundle JSON with ``_target_``)."""

    def __init__(
        self, total_steps: int, start: float, end: float, warmup_steps: int = 0, warmup_start: float = 0.0
    ) -> None:
        cosine_schedule(0, total_steps, start, end, warmup_steps, warmup_start)  # validate now, not at step 0
        self.total_steps, self.start, self.end = int(total_steps), float(start), float(end)
        self.warmup_steps, self.warmup_start = int(warmup_steps), float(warmup_start)

    def __call__(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps, self.start, self.end, self.warmup_steps, self.warmup_start)

    def __repr__(self) -> str:
        return (
            f"CosineSchedule(total_steps={self.total_steps}, start={self.start}, end={self.end}, "
            f"warmup_steps={self.warmup_steps}, warmup_start={self.warmup_start})"
        )


class LinearWarmupSchedule:
    """``linear_warmup_schedule`` as a ``step -> value`` callable."""

    def __init__(self, warmup_steps: int, start: float, end: float) -> None:
        linear_warmup_schedule(0, warmup_steps, start, end)
        self.warmup_steps, self.start, self.end = int(warmup_steps), float(start), float(end)

    def __call__(self, step: int) -> float:
        return linear_warmup_schedule(step, self.warmup_steps, self.start, self.end)

    def __repr__(self) -> str:
        return f"LinearWarmupSchedule(warmup_steps={self.warmup_steps}, start={self.start}, end={self.end})"


class ConstantSchedule:
    """The same value at every step."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __call__(self, step: int) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"ConstantSchedule({self.value})"


def as_schedule(
    spec: ScheduleSpec,
    total_steps: int,
    epoch_length: int | None = None,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
    name: str = "schedule",
) -> Callable[[int], float]:
    """Turn the short forms accepted by ``ScheduleHandler`` into a ``step -> value`` callable.

    Args:
        spec: a number (constant); a callable (returned as is); ``(start, end)``: cosine over ``total_steps`` with
            the given warm-up (``end=None``: constant ``start``); ``(start, end, warmup_epochs)``: linear warm-up
            over ``warmup_epochs * epoch_length`` steps, then constant ``end``.
        total_steps: steps of the whole run.
        epoch_length: iterations per epoch (needed by the 3-value form).
        warmup_steps, warmup_start: warm-up of the cosine form.
        name: used in error messages.
    """
    if callable(spec):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return ConstantSchedule(spec)
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        values = list(spec)
        if len(values) == 2:
            start, end = values
            if end is None:
                return ConstantSchedule(start)
            return CosineSchedule(total_steps, float(start), float(end), warmup_steps, warmup_start)
        if len(values) == 3:
            if epoch_length is None:
                raise ValueError(f"{name}: the form (start, end, warmup_epochs) needs epoch_length.")
            start, end, warmup_epochs = values
            return LinearWarmupSchedule(int(round(float(warmup_epochs) * epoch_length)), float(start), float(end))
    raise ValueError(
        f"{name}: expected a number, a callable step -> value, (start, end) or (start, end, warmup_epochs); got {spec!r}."
    )


class ScheduleHandler:
    """Set optimizer and method hyper-parameters at every ``ITERATION_STARTED`` from the global step alone.

    At each iteration, with ``step = engine.state.iteration - 1`` (0-based):

    * ``lr``: every param group gets ``lr(step) * group.get("lr_scale", 1.0)`` (layer-wise decay sets ``lr_scale``);
    * ``weight_decay``: groups whose ``base_weight_decay`` is > 0 (``SSLMethod.parameter_groups``; groups without
      the key get their initial ``weight_decay`` at ``attach``) get ``weight_decay(step) * group.get("wd_scale", 1.0)``
      (the schedule gives absolute values, as DINO's 0.04 -> 0.4); groups without decay (norms, biases, tokens)
      stay at 0;
    * ``teacher_momentum``: set on the (unwrapped) method, read by ``update_teacher()``;
    * ``teacher_temperature``: set on the method (DINO); the method must have that attribute.

    The values are written to ``engine.state.schedule`` (a dict) and copied into ``engine.state.metrics`` so
    ``StatsHandler`` / ``TensorBoardStatsHandler`` / ``MLFlowHandler`` log them with the epoch metrics.

    Each schedule is given in one of the forms of :func:`as_schedule`; for example DINO's
    ``ScheduleHandler(total_steps, lr=(5e-4, 1e-6), warmup_steps=10 * n, weight_decay=(0.04, 0.4),
    teacher_momentum=(0.996, 1.0), teacher_temperature=(0.04, 0.07, 30), epoch_length=n)``.

    Args:
        total_steps: iterations of the whole run (``max_epochs * epoch_length``).
        lr: learning-rate schedule (``None``: the optimizer's learning rate is left alone).
        weight_decay: weight-decay schedule (``None``: left alone).
        teacher_momentum: EMA momentum schedule (``None``: left alone).
        teacher_temperature: teacher temperature schedule (``None``: left alone).
        warmup_steps: linear warm-up of the ``(start, end)`` learning-rate form (other schedules have none).
        warmup_start_lr: learning rate at step 0 of the warm-up.
        epoch_length: iterations per epoch, for the ``(start, end, warmup_epochs)`` form.
        optimizer: default: ``engine.optimizer`` at ``attach``.
        method: the SSL method (possibly DDP-wrapped); default: ``engine.method`` at ``attach``.
        to_metrics: also copy the values into ``engine.state.metrics``.
    """

    def __init__(
        self,
        total_steps: int,
        lr: ScheduleSpec | None = None,
        weight_decay: ScheduleSpec | None = None,
        teacher_momentum: ScheduleSpec | None = None,
        teacher_temperature: ScheduleSpec | None = None,
        warmup_steps: int = 0,
        warmup_start_lr: float = 0.0,
        epoch_length: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        method: torch.nn.Module | None = None,
        to_metrics: bool = True,
    ) -> None:
        self.total_steps = int(total_steps)
        kw: dict[str, Any] = {"total_steps": self.total_steps, "epoch_length": epoch_length}
        self.schedules: dict[str, Callable[[int], float]] = {}
        if lr is not None:
            self.schedules["lr"] = as_schedule(lr, warmup_steps=int(warmup_steps), warmup_start=warmup_start_lr,
                                               name="lr", **kw)  # fmt: skip
        for name, spec in (
            ("weight_decay", weight_decay),
            ("teacher_momentum", teacher_momentum),
            ("teacher_temperature", teacher_temperature),
        ):
            if spec is not None:
                self.schedules[name] = as_schedule(spec, name=name, **kw)
        self.optimizer = optimizer
        self.method = method
        self.to_metrics = to_metrics

    def values(self, step: int) -> dict[str, float]:
        """The scheduled values at 0-based ``step`` (a pure function of ``step``)."""
        return {name: float(fn(step)) for name, fn in self.schedules.items()}

    def attach(self, engine: Engine) -> None:
        """Register at ``ITERATION_STARTED``; resolve the optimizer and method from the engine if not given."""
        if self.optimizer is None:
            self.optimizer = getattr(engine, "optimizer", None)
        if self.method is None:
            self.method = getattr(engine, "method", None)
        if self.optimizer is None and ({"lr", "weight_decay"} & set(self.schedules)):
            raise ValueError("ScheduleHandler: no optimizer given and the engine has no `optimizer` attribute.")
        target = _unwrap(self.method) if self.method is not None else None
        for name in ("teacher_momentum", "teacher_temperature"):
            if name in self.schedules and (target is None or not hasattr(target, name)):
                raise ValueError(
                    f"ScheduleHandler: a {name} schedule was given but the method "
                    f"({type(target).__name__}) has no `{name}` attribute."
                )
        if self.optimizer is not None and "weight_decay" in self.schedules:
            for group in self.optimizer.param_groups:
                # groups built without SSLMethod.parameter_groups: decay those that started with some decay
                group.setdefault("base_weight_decay", group.get("weight_decay", 0.0))
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def apply(self, step: int, engine: Engine | None = None) -> dict[str, float]:
        """Set the values of ``step`` on the optimizer and the method; return them."""
        values = self.values(step)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                if "lr" in values:
                    group["lr"] = values["lr"] * group.get("lr_scale", 1.0)
                if "weight_decay" in values and group.get("base_weight_decay", 0.0) > 0:
                    group["weight_decay"] = values["weight_decay"] * group.get("wd_scale", 1.0)
        if self.method is not None:
            target = _unwrap(self.method)
            for name in ("teacher_momentum", "teacher_temperature"):
                if name in values:
                    setattr(target, name, values[name])
        if engine is not None:
            engine.state.schedule = values
            if self.to_metrics:
                engine.state.metrics.update(values)
        return values

    def __call__(self, engine: Engine) -> None:
        self.apply(engine.state.iteration - 1, engine)
