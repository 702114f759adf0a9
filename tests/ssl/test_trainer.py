"""SSLTrainer: learning on a toy, the non-finite-loss stop, MONAI/ignite handlers, gradient clipping, AMP rules."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from monai.handlers import CheckpointSaver, EarlyStopHandler, LrScheduleHandler, StatsHandler, from_engine
from toy_method import build, pretraining_checkpoint, toy_data, toy_views

from monai_transfer.ssl.data import make_ssl_dataloader
from monai_transfer.ssl.resume import load_training_checkpoint
from monai_transfer.ssl.trainer import NonFiniteLossError, SSLTrainer


def make_trainer(
    max_epochs: int = 2, n: int = 16, batch_size: int = 4, lr: float = 1e-2, device: str = "cpu", **kwargs
) -> SSLTrainer:
    method = build(seed=0).to(device)
    loader = make_ssl_dataloader(toy_data(n), toy_views(), batch_size=batch_size, seed=0, num_replicas=1, rank=0)
    optimizer = torch.optim.Adam(method.parameter_groups(1e-4), lr=lr)
    return SSLTrainer(
        device=device, max_epochs=max_epochs, train_data_loader=loader, method=method, optimizer=optimizer, **kwargs
    )


def test_loss_falls_and_the_teacher_follows():
    trainer = make_trainer(max_epochs=8, n=16, batch_size=8, lr=3e-2)
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    teacher_before = trainer.method.teacher["projector"].weight.clone()
    trainer.run()
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05, losses
    assert set(trainer.state.output.keys()) == {"loss", "ntxent", "consistency"}
    assert from_engine(["loss"], first=True)(trainer.state.output) is trainer.state.output["loss"]
    assert not trainer.state.output["loss"].requires_grad
    assert int(trainer.method.num_updates) == 16
    assert not torch.equal(trainer.method.teacher["projector"].weight, teacher_before)


@pytest.mark.parametrize("with_stats", [False, True], ids=["swallowing-handler", "swallowing-and-stats-handlers"])
def test_nonfinite_loss_stops_the_run_names_the_step_and_writes_no_checkpoint_for_it(tmp_path, with_stats):
    trainer = make_trainer(max_epochs=2)
    pretraining_checkpoint(tmp_path, every=1).attach(trainer)
    swallowed = []
    # an EXCEPTION_RAISED handler that does not re-raise: plain ignite would then end the run silently
    trainer.add_event_handler(Events.EXCEPTION_RAISED, lambda e, exc: swallowed.append(exc))
    if with_stats:  # MONAI's StatsHandler logs and re-raises
        StatsHandler(name="test_ssl_trainer", output_transform=from_engine(["loss"], first=True)).attach(trainer)

    @trainer.on(Events.ITERATION_STARTED)
    def poison(engine):
        if engine.state.iteration == 6:  # epoch 2, second batch
            engine.state.batch["image_v1"][0, 0, 0, 0] = float("nan")

    with pytest.raises(NonFiniteLossError) as info:
        trainer.run()
    err = info.value
    assert "epoch 2, iteration 6" in str(err) and "ntxent=nan" in str(err) and "loss=nan" in str(err)
    assert (err.epoch, err.iteration) == (2, 6) and math.isnan(err.terms["loss"])
    assert len(swallowed) == 1  # EXCEPTION_RAISED handlers ran once
    assert json.loads((tmp_path / "last.json").read_text())["iteration"] == 5
    ckpt = load_training_checkpoint(tmp_path / "last.pt")
    assert ckpt["engine"]["iteration"] == 5
    # the failing step changed no weight: the live method still equals the iteration-5 checkpoint
    for k, v in trainer.method.state_dict().items():
        assert torch.equal(v, ckpt["method"][k]), k


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_monai_and_ignite_handlers_attach(tmp_path):
    from ignite.handlers import ProgressBar

    trainer = make_trainer(max_epochs=3)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    handlers = [
        StatsHandler(name="test_ssl_handlers", output_transform=from_engine(["loss"], first=True), tag_name="loss"),
        CheckpointSaver(
            str(tmp_path), {"method": trainer.method, "optimizer": trainer.optimizer}, save_interval=1, n_saved=1
        ),
        LrScheduleHandler(scheduler, print_lr=False),
        EarlyStopHandler(patience=1, score_function=lambda e: -float(e.state.output["loss"]), epoch_level=True),
    ]
    for h in handlers:
        h.attach(trainer)
    handlers[-1].set_trainer(trainer)
    ProgressBar(persist=False).attach(trainer, output_transform=from_engine(["loss"], first=True))
    fired = []
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, lambda e: fired.append(e.state.iteration))
    records = _Records()
    logging.getLogger("test_ssl_handlers").addHandler(records)  # StatsHandler's logger does not propagate
    try:
        trainer.run()
    finally:
        logging.getLogger("test_ssl_handlers").removeHandler(records)
    assert any("loss: " in m for m in records.messages), records.messages
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt")  # CheckpointSaver wrote one
    epochs_run = trainer.state.epoch
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**epochs_run)
    assert fired == list(range(1, trainer.state.iteration + 1))


def test_grad_clipping_caps_the_norm():
    max_norm = 1e-3
    trainer = make_trainer(max_epochs=1, grad_clip_norm=max_norm)
    norms = []

    @trainer.on(IterationEvents.MODEL_COMPLETED)
    def after_step(engine):  # gradients are still there until the next zero_grad
        grads = [p.grad for p in engine.method.trainable_parameters() if p.grad is not None]
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        norms.append((float(engine.state.output["grad_norm"]), float(after)))

    trainer.run()
    assert len(norms) == 4
    for before, after in norms:
        assert before > max_norm  # the toy's gradients are much larger: clipping was active
        assert after <= max_norm * (1 + 1e-5)


def test_amp_rules_on_cpu():
    from monai_transfer.engines import resolve_precision

    with pytest.raises(ValueError, match="bfloat16"):  # float16 autocast is CUDA only
        make_trainer(precision={"amp": True, "dtype": "float16", "device": "cpu"})
    assert make_trainer(precision=resolve_precision("off", "cpu")).amp_dtype is None
    # the decision engines makes for the run (fine-tuning's trainer gets the same record)
    trainer = make_trainer(max_epochs=1, precision=resolve_precision("on", "cpu"))
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    trainer.run()
    assert torch.isfinite(trainer.state.output["loss"])
    with pytest.raises(ValueError, match="grad_clip_norm"):
        make_trainer(grad_clip_norm=0.0)


def test_forward_must_return_a_loss_dict():
    trainer = make_trainer(max_epochs=1)
    trainer.method.forward = lambda batch: torch.zeros(())  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="dict with 'loss'"):
        trainer.run()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_amp_scales_clips_and_checkpoints_the_scaler(tmp_path):
    from monai_transfer.engines import resolve_precision
    from monai_transfer.ssl.resume import resume

    trainer = make_trainer(max_epochs=1, precision=resolve_precision("on", "cuda"), grad_clip_norm=1.0, device="cuda")
    assert trainer.amp_dtype == torch.float16 and trainer.scaler is not None
    pretraining_checkpoint(tmp_path, every=2).attach(trainer)
    trainer.run()
    assert torch.isfinite(trainer.state.output["loss"]) and trainer.state.output["loss"].device.type == "cuda"
    ckpt = load_training_checkpoint(tmp_path / "last.pt")
    assert ckpt["scaler"] is not None and ckpt["engine"]["iteration"] == 4

    fresh = make_trainer(max_epochs=1, precision=resolve_precision("on", "cuda"), grad_clip_norm=1.0, device="cuda")
    resume(fresh, tmp_path / "last.pt")
    assert fresh.scaler.get_scale() == trainer.scaler.get_scale()
    for k, v in trainer.method.state_dict().items():
        assert torch.equal(fresh.method.state_dict()[k], v), k
