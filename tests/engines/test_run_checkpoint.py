"""RunCheckpoint: exact resume of a fine-tuning run (bit-identical weights after a SIGKILL), no silent overwrite,
finished runs not retrained, stale temporary files removed, stateful objects restored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import EarlyStopHandler, LrScheduleHandler
from torch.utils.data import DataLoader

from monai_transfer.engines import CheckpointLoadError, EpochSampler, RunCheckpoint, RunExistsError, load_checkpoint
from monai_transfer.engines.checkpoint import clean_stale_tmp, load_state_into, rng_state, set_rng_state, state_of
from monai_transfer.finetune.trainer import AtomicBestCheckpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


# -- a tiny in-process trainer -----------------------------------------------------------------------------------------
class Stop(RuntimeError):
    """Raised to interrupt a run in-process (the SIGKILL test below does it for real)."""


def _tiny_run(save_dir, resume="never", epochs=3, stop_at=None, objects_fn=None, extra_handlers=()):
    """3 epochs of 4 steps: Linear + dropout, AdamW, an epoch-level StepLR attached AFTER the checkpoint."""
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(4, generator=g), "label": torch.tensor(i % 2)} for i in range(16)]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loader = DataLoader(data, batch_size=4, sampler=EpochSampler(data, seed=1))
    trainer = SupervisedTrainer(device="cpu", max_epochs=epochs, train_data_loader=loader, network=net, optimizer=opt,
                                loss_function=torch.nn.CrossEntropyLoss(), decollate=False)  # fmt: skip
    objects = {"lr_scheduler": sched, **(objects_fn(trainer) if objects_fn else {})}
    ckpt = RunCheckpoint(save_dir, net, opt, resume=resume, objects=objects)
    ckpt.attach(trainer)
    LrScheduleHandler(sched, print_lr=False).attach(trainer)  # after the checkpoint: it moves itself last
    for h in extra_handlers:
        h.attach(trainer)
    losses = {}
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: losses.__setitem__(e.state.iteration, float(e.state.output["loss"]))
    )
    if stop_at is not None:

        @trainer.on(Events.EPOCH_STARTED)
        def _stop(engine):
            if engine.state.epoch == stop_at:
                raise Stop()

    with torch.random.fork_rng(devices=[]):
        try:
            trainer.run()
        except Stop:
            pass
    return {"net": net, "trainer": trainer, "ckpt": ckpt, "losses": losses, "lr": opt.param_groups[0]["lr"]}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_interrupted_run_resumes_exactly_in_process(tmp_path):
    full = _tiny_run(tmp_path / "a")
    part = _tiny_run(tmp_path / "b", stop_at=2)
    assert sorted(part["losses"]) == [1, 2, 3, 4]
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ck["format"] == 1 and ck["engine"]["epoch"] == 1 and ck["finished"] is False
    assert ck["objects"]["lr_scheduler"]["last_epoch"] == 1  # saved after the scheduler attached after it
    rest = _tiny_run(tmp_path / "b", resume="auto")
    assert rest["ckpt"].resumed_from == str(tmp_path / "b" / "last.pt") and not rest["ckpt"].resumed_finished
    assert rest["losses"] == {i: full["losses"][i] for i in range(5, 13)}  # the same batches, dropout, rates
    assert _same_weights(rest["net"], full["net"]) and rest["lr"] == full["lr"]
    assert json.loads((tmp_path / "b" / "last.json").read_text())["finished"] is True


def test_never_refuses_an_existing_run_and_overwrite_starts_again(tmp_path):
    _tiny_run(tmp_path, stop_at=2)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(RunExistsError, match=r"epoch 1 of 3\).*--resume auto.*--overwrite"):
        _tiny_run(tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == before  # nothing trained, nothing written
    again = _tiny_run(tmp_path, resume="overwrite")
    assert sorted(again["losses"]) == list(range(1, 13)) and again["ckpt"].resumed_from is None
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        _tiny_run(tmp_path / "c", resume=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="resume must be"):
        RunCheckpoint(tmp_path, torch.nn.Linear(1, 1), None, resume="")
    with pytest.raises(ValueError, match="never be saved"):  # pretraining's form, saving neither by step nor by epoch
        RunCheckpoint(tmp_path, resume=None, every=None, every_epochs=None, module_key="method")


def test_finished_run_is_not_retrained_nor_rewritten(tmp_path):
    full = _tiny_run(tmp_path)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    completed = []
    done = _tiny_run(tmp_path, resume="auto", extra_handlers=[_OnCompleted(completed)])
    assert done["ckpt"].resumed_finished and done["losses"] == {} and completed == []
    assert done["trainer"].state.epoch == 3 and _same_weights(done["net"], full["net"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


class _OnCompleted:
    def __init__(self, seen):
        self.seen = seen

    def attach(self, engine):
        engine.add_event_handler(Events.COMPLETED, lambda e: self.seen.append(e.state.epoch))


def test_early_stopped_run_is_finished_and_objects_come_back(tmp_path):
    """Early stopping (MONAI's EarlyStopHandler on the trainer, a loss that never improves) ends the run at epoch 2;
    the checkpoint says finished, and the stopper's and the best tracker's states travel in ``objects``."""

    def objects(trainer):
        stopper = EarlyStopHandler(patience=1, score_function=lambda e: 0.0, trainer=trainer)
        stopper.attach(trainer)
        best = AtomicBestCheckpoint(tmp_path / "best.pt", trainer.network, metric_name="m")
        best.best_metric, best.best_epoch = 0.5, 1
        return {"stop": stopper, "best": best, "trainer_engine": trainer}

    run = _tiny_run(tmp_path, objects_fn=objects)
    assert run["trainer"].state.epoch == 2
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["finished"] is True and ck["engine"]["epoch"] == 2
    assert ck["objects"]["stop"]["counter"] == 1 and ck["objects"]["best"]["best_metric"] == 0.5
    again = _tiny_run(tmp_path, resume="auto", objects_fn=objects)
    assert again["ckpt"].resumed_finished and again["losses"] == {}


def test_state_adapters_round_trip():
    from ignite.engine import Engine

    best = AtomicBestCheckpoint("unused.pt", torch.nn.Linear(1, 1), metric_name="auroc")
    best.best_metric, best.best_epoch = 0.75, 4
    other = AtomicBestCheckpoint("unused.pt", torch.nn.Linear(1, 1), metric_name="auroc")
    load_state_into(other, state_of(best))
    assert (other.best_metric, other.best_epoch) == (0.75, 4)
    with pytest.raises(ValueError, match="tracks 'dice'"):
        AtomicBestCheckpoint("unused.pt", torch.nn.Linear(1, 1), metric_name="dice").load_state_dict(state_of(best))
    engine = Engine(lambda e, b: None)
    engine.state.best_metric, engine.state.best_metric_epoch = 0.9, 2
    fresh = Engine(lambda e, b: None)
    load_state_into(fresh, state_of(engine))
    assert (fresh.state.best_metric, fresh.state.best_metric_epoch) == (0.9, 2)
    with pytest.raises(RuntimeError, match="no trainer"):
        state_of(EarlyStopHandler(patience=1, score_function=lambda e: 0.0))
    with pytest.raises(TypeError, match="no state_dict"):
        state_of(object())


def test_rng_state_round_trip_and_loads_weights_only(tmp_path):
    import random

    import numpy as np

    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    draws = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(loaded)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_stale_temporary_files_are_removed_on_resume(tmp_path):
    _tiny_run(tmp_path, stop_at=2)
    names = [".last.pt.tmp-abc123.pt", ".last.json.tmp-x.json", ".last.prev.pt.tmp-q.pt"]
    stale = [tmp_path / name for name in names]
    for p in stale:
        p.write_bytes(b"half a checkpoint")  # what a kill -9 during torch.save leaves
    (tmp_path / "keep.txt").write_text("not ours")
    _tiny_run(tmp_path, resume="auto")
    assert not any(p.exists() for p in stale) and (tmp_path / "keep.txt").exists()
    assert clean_stale_tmp(tmp_path / "nowhere") == []


def test_foreign_and_damaged_files_fail_loudly(tmp_path):
    torch.save({"format": 1, "method": {}, "optimizer": {}, "engine": {}}, tmp_path / "ssl.pt")
    with pytest.raises(CheckpointLoadError, match="not a run checkpoint.*pretrained"):
        RunCheckpoint(tmp_path, torch.nn.Linear(1, 1), None).load(None, tmp_path / "ssl.pt")
    torch.save({"format": 99, "network": {}, "optimizer": {}, "engine": {}}, tmp_path / "new.pt")
    with pytest.raises(CheckpointLoadError, match="format 99"):
        load_checkpoint(tmp_path / "new.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "new.pt").read_bytes()[:100])
    with pytest.raises(CheckpointLoadError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")


def test_a_different_epoch_length_is_refused(tmp_path):
    _tiny_run(tmp_path, stop_at=2)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    ck["engine"]["epoch_length"], ck["engine"]["iteration"] = 5, 5
    torch.save(ck, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="5 iterations per epoch, this trainer has 4"):
        _tiny_run(tmp_path, resume="auto")


# -- the proof: a bundle-config fine-tuning run SIGKILLed after epoch 1, resumed in a fresh process -------------------
def _script(out: Path, result: Path, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")  # fmt: skip
    env.pop("MT_TEST_KILL_AT_EPOCH", None)
    if kill_at is not None:
        env["MT_TEST_KILL_AT_EPOCH"] = str(kill_at)
    return subprocess.run([sys.executable, str(HERE / "finetune_toy.py"), str(out), str(result), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_killed_finetune_run_resumes_with_bit_identical_weights(tmp_path):
    """ResNet-10 (batch norm, dropout head), AdamW, random flips and noise, 3 epochs of 4 steps, through
    ``run_config``: once uninterrupted; once SIGKILLed at the start of epoch 2 and resumed with ``resume=auto``."""
    a = _script(tmp_path / "a", tmp_path / "a.pt")
    assert a.returncode == 0, a.stderr[-3000:]
    b = _script(tmp_path / "b", tmp_path / "b.pt", kill_at=2)
    assert b.returncode == -9, b.stderr[-3000:]  # SIGKILL, not a clean exit
    models = tmp_path / "b" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["last.json", "last.pt", "model.pt"]
    assert load_checkpoint(models / "last.pt")["engine"]["epoch"] == 1
    (models / ".last.pt.tmp-killed.pt").write_bytes(b"\0" * 10)  # as if killed while saving

    never = _script(tmp_path / "b", tmp_path / "never.pt")
    assert never.returncode != 0 and "RunExistsError" in never.stderr and "--resume auto" in never.stderr

    c = _script(tmp_path / "b", tmp_path / "c.pt", "--resume", "auto")
    assert c.returncode == 0, c.stderr[-3000:]
    assert not (models / ".last.pt.tmp-killed.pt").exists()
    ref, got = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "c.pt", weights_only=True)
    assert got["resumed_from"] == str(models / "last.pt") and sorted(got["losses"]) == list(range(5, 13))
    assert got["losses"] == {i: ref["losses"][i] for i in range(5, 13)}  # bit-identical floats
    assert got["weights"].keys() == ref["weights"].keys()
    for k, v in ref["weights"].items():
        assert torch.equal(got["weights"][k], v), k  # every tensor, BN running statistics included
    assert got["best_metric"] == ref["best_metric"]
    best_ref = torch.load(tmp_path / "a" / "models" / "model.pt", weights_only=True)
    best_got = torch.load(models / "model.pt", weights_only=True)
    assert all(torch.equal(best_got[k], v) for k, v in best_ref.items())  # the same best model
