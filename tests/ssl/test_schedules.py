"""Schedules: shapes (warm-up, cosine ends, linear warm-up then constant) and the handler's per-step values."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events
from toy_method import build

from monai_transfer.ssl.schedules import (
    CosineSchedule,
    ScheduleHandler,
    as_schedule,
    cosine_schedule,
    linear_warmup_schedule,
)


@pytest.mark.parametrize(
    "step, expected",
    [(0, 0.0), (5, 0.5), (10, 1.0), (55, 0.55), (100, 0.1), (150, 0.1)],
)
def test_cosine_schedule_values(step, expected):
    # warm-up 0 -> 1 over 10 steps, then cosine 1 -> 0.1 over 90 steps: midpoint (step 55) = 0.55
    assert cosine_schedule(step, 100, 1.0, 0.1, warmup_steps=10) == pytest.approx(expected)


def test_cosine_schedule_is_monotone_and_matches_dino_formula():
    values = [cosine_schedule(s, 50, 0.996, 1.0) for s in range(50)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    # DINO: final + 0.5 (base - final) (1 + cos(pi * i / len)), i in [0, len)
    assert values[7] == pytest.approx(1.0 + 0.5 * (0.996 - 1.0) * (1 + math.cos(math.pi * 7 / 50)))


@pytest.mark.parametrize(
    "kwargs", [dict(total_steps=0), dict(warmup_steps=11), dict(step=-1)], ids=["no-steps", "long-warmup", "neg-step"]
)
def test_cosine_schedule_rejects(kwargs):
    args = dict(step=0, total_steps=10, start=1.0, end=0.0, warmup_steps=0) | kwargs
    with pytest.raises(ValueError):
        cosine_schedule(**args)


def test_linear_warmup_then_constant():
    assert [linear_warmup_schedule(s, 4, 0.04, 0.08) for s in (0, 2, 4, 9)] == pytest.approx([0.04, 0.06, 0.08, 0.08])
    assert linear_warmup_schedule(0, 0, 0.04, 0.07) == 0.07


def test_short_forms():
    assert as_schedule(0.5, 10)(3) == 0.5
    assert as_schedule((1.0, 0.0), 10)(5) == pytest.approx(0.5)
    assert as_schedule((1.0, None), 10)(7) == 1.0
    assert as_schedule((0.04, 0.07, 2), 10, epoch_length=3)(6) == pytest.approx(0.07)
    assert repr(as_schedule((1.0, 0.0), 10)).startswith("CosineSchedule")
    with pytest.raises(ValueError, match="epoch_length"):
        as_schedule((0.04, 0.07, 2), 10)
    with pytest.raises(ValueError, match="expected"):
        as_schedule("cosine", 10)


def _engine(method, optimizer, steps: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.method, engine.optimizer = method, optimizer
    return engine


def test_handler_sets_groups_method_and_metrics_as_a_function_of_the_step():
    method = build()
    method.teacher_temperature = 0.0  # a DINO-like attribute
    groups = method.parameter_groups(0.05)
    groups[0]["lr_scale"] = 0.5
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    total = 12
    handler = ScheduleHandler(
        total,
        lr=(1e-3, 1e-5),
        warmup_steps=4,
        weight_decay=(0.04, 0.4),
        teacher_momentum=(0.9, 1.0),
        teacher_temperature=(0.04, 0.07, 1),
        epoch_length=4,
    )
    engine = _engine(method, optimizer, total)
    handler.attach(engine)
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(dict(e.state.schedule)))
    engine.run([0] * 4, max_epochs=3)
    assert len(seen) == total
    for step, values in enumerate(seen):
        assert values == handler.values(step)
    last = seen[-1]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * last["lr"])  # lr_scale
    assert optimizer.param_groups[1]["lr"] == pytest.approx(last["lr"])
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(last["weight_decay"])
    assert optimizer.param_groups[1]["weight_decay"] == 0.0  # norms and biases stay undecayed
    assert method.teacher_momentum == pytest.approx(last["teacher_momentum"])
    assert method.teacher_temperature == pytest.approx(0.07)
    assert seen[0]["lr"] == 0.0 and seen[4]["lr"] == pytest.approx(1e-3)  # warm-up from 0 to the peak
    assert engine.state.metrics["lr"] == last["lr"]


def test_handler_recomputes_values_after_a_resume():
    """A handler on a fresh engine at iteration k gives the value of step k of the uninterrupted run."""
    method = build()
    optimizer = torch.optim.SGD(method.parameter_groups(0.0), lr=1.0)
    handler = ScheduleHandler(10, lr=CosineSchedule(10, 1.0, 0.0, warmup_steps=2))
    engine = _engine(method, optimizer, 10)
    handler.attach(engine)
    engine.load_state_dict({"iteration": 6, "epoch_length": 2, "max_epochs": 5})
    lrs = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: lrs.append(optimizer.param_groups[0]["lr"]))
    engine.run([0, 0], max_epochs=5)
    assert lrs == pytest.approx([handler.values(s)["lr"] for s in range(6, 10)])


def test_handler_rejects_a_temperature_schedule_for_a_method_without_it():
    method = build()
    engine = _engine(method, torch.optim.SGD(method.parameters(), lr=0.1), 4)
    with pytest.raises(ValueError, match="teacher_temperature"):
        ScheduleHandler(4, teacher_temperature=0.07).attach(engine)


def test_handler_weight_decay_on_plain_groups_keeps_zero_groups_at_zero():
    method = build()
    params = list(method.trainable_parameters())
    optimizer = torch.optim.SGD([{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:]}], lr=0.1)
    handler = ScheduleHandler(4, weight_decay=(0.0, 1.0), optimizer=optimizer)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([0] * 4, max_epochs=1)  # step 0 sets 0.0; later steps must still find the decayed group
    assert handler.values(3)["weight_decay"] > 0
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(handler.values(3)["weight_decay"])
    assert optimizer.param_groups[1]["weight_decay"] == 0.0


def test_bundle_config_builds_the_handler():
    from monai.bundle import ConfigParser

    parser = ConfigParser(
        {
            "total": 20,
            "lr": {
                "_target_": "monai_transfer.ssl.schedules.CosineSchedule",
                "total_steps": "@total",
                "start": 1e-3,
                "end": 1e-5,
                "warmup_steps": 2,
            },
            "handler": {
                "_target_": "monai_transfer.ssl.schedules.ScheduleHandler",
                "total_steps": "@total",
                "lr": "@lr",
                "teacher_momentum": [0.99, 1.0],
            },
        }
    )
    handler = parser.get_parsed_content("handler")
    assert isinstance(handler, ScheduleHandler)
    assert handler.values(2)["lr"] == pytest.approx(1e-3) and handler.values(20)["teacher_momentum"] == 1.0
