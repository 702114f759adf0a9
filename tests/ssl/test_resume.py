"""Exact resume: a run SIGKILLed after a mid-epoch checkpoint continues, in a fresh process, with the very losses and
final weights of the uninterrupted run; damaged checkpoints fail loudly, naming the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from resume_script import train

from monai_transfer.engines.checkpoint import CheckpointLoadError
from monai_transfer.ssl.resume import load_training_checkpoint, resume

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KILL_AT = 6  # epoch 2, two of its four iterations done; checkpoints every 3 iterations and at epoch ends


def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, str(HERE / "resume_script.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _train(*args, **kwargs):
    with torch.random.fork_rng(devices=[]):  # the script seeds torch's generator; keep the test process's own
        return train(*args, **kwargs)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """Run A (uninterrupted, in this process) and run B (a subprocess killed right after the iteration-6 save)."""
    tmp = tmp_path_factory.mktemp("resume")
    torch.set_num_threads(1)
    losses, weights, history = _train(tmp / "a")
    proc = _script(str(tmp / "b"), str(tmp / "b.json"), "--kill-at", str(KILL_AT))
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL, not a clean exit
    return {"dir": tmp / "b", "losses": losses, "weights": weights, "history": history, "tmp": tmp}


@pytest.mark.slow
@pytest.mark.integration
def test_killed_run_leaves_complete_checkpoints(killed_run):
    d = killed_run["dir"]
    assert sorted(p.name for p in d.iterdir()) == ["last.json", "last.prev.pt", "last.pt"]  # no temporary files
    assert load_training_checkpoint(d / "last.pt")["engine"] == {
        "epoch": 2,
        "iteration": KILL_AT,
        "epoch_length": 4,
        "max_epochs": 2,
    }
    assert load_training_checkpoint(d / "last.prev.pt")["engine"]["iteration"] == 4  # the epoch-1 end
    summary = json.loads((d / "last.json").read_text())
    assert summary["iteration"] == KILL_AT and summary["loss"] == pytest.approx(killed_run["losses"][KILL_AT])


@pytest.mark.slow
@pytest.mark.integration
def test_resume_in_a_fresh_process_continues_exactly(killed_run):
    result = killed_run["tmp"] / "c.json"
    proc = _script(str(killed_run["tmp"] / "c"), str(result), "--resume", str(killed_run["dir"] / "last.pt"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = {int(k): v for k, v in json.loads(result.read_text())["losses"].items()}
    assert sorted(got) == [7, 8]
    assert got == {i: killed_run["losses"][i] for i in (7, 8)}  # bit-identical floats
    weights = torch.load(result.with_suffix(".pt"), weights_only=True)
    for k, v in killed_run["weights"].items():
        assert torch.equal(weights[k], v), k  # student, EMA teacher and the update-count buffer


@pytest.mark.slow
def test_resume_from_the_previous_checkpoint_when_asked(killed_run, tmp_path):
    losses, weights, history = _train(tmp_path, resume_from=str(killed_run["dir"] / "last.prev.pt"))
    assert losses == {i: killed_run["losses"][i] for i in range(5, 9)}
    assert all(torch.equal(weights[k], v) for k, v in killed_run["weights"].items())
    assert history == killed_run["history"]  # the monitor's history travels in the checkpoint's "objects"


def _damaged(killed_run, tmp_path, keep: float) -> Path:
    d = tmp_path / "ckpt"
    shutil.copytree(killed_run["dir"], d)
    data = (d / "last.pt").read_bytes()
    (d / "last.pt").write_bytes(data[: int(len(data) * keep)])
    return d


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["truncated", "empty"])
def test_damaged_checkpoint_names_the_file_and_the_previous_one_still_works(killed_run, tmp_path, keep):
    from resume_script import BATCH, N, toy_data, toy_views

    d = _damaged(killed_run, tmp_path, keep)
    with pytest.raises(CheckpointLoadError, match=str(d / "last.pt")) as info:
        load_training_checkpoint(d / "last.pt")
    assert "last.prev.pt" in str(info.value)

    from toy_method import build

    from monai_transfer.ssl.data import make_ssl_dataloader
    from monai_transfer.ssl.trainer import SSLTrainer

    method = build(dropout=0.2)
    loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=BATCH, seed=7, num_replicas=1, rank=0)
    trainer = SSLTrainer("cpu", 2, loader, method, torch.optim.AdamW(method.parameter_groups(0.05)))
    with pytest.raises(CheckpointLoadError, match="last.pt"):
        resume(trainer, d)
    with torch.random.fork_rng(devices=[]):
        ckpt = resume(trainer, d, fallback_to_prev=True)
    assert ckpt["engine"]["iteration"] == 4 and trainer.state.iteration == 4 and trainer.state.epoch == 1
    assert trainer.resumed_from == str(d / "last.prev.pt")


def test_a_file_that_is_not_a_training_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "encoder.pt")
    with pytest.raises(CheckpointLoadError, match="not a training checkpoint"):
        load_training_checkpoint(tmp_path / "encoder.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_training_checkpoint(tmp_path / "missing.pt")


@pytest.mark.slow
def test_mid_epoch_resume_sets_the_skip_and_refuses_a_loader_that_cannot_skip(killed_run):
    from resume_script import BATCH, N, toy_data, toy_views
    from toy_method import build

    from monai_transfer.ssl.data import SeededViewDataset, make_ssl_dataloader
    from monai_transfer.ssl.trainer import SSLTrainer

    method = build(dropout=0.2)
    loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=BATCH, seed=7, num_replicas=1, rank=0)
    trainer = SSLTrainer("cpu", 2, loader, method, torch.optim.AdamW(method.parameter_groups(0.05)))
    with torch.random.fork_rng(devices=[]):
        resume(trainer, killed_run["dir"] / "last.pt")
    assert loader.sampler.pending_skip == (KILL_AT - 4) * BATCH and loader.sampler.epoch == 2

    plain = torch.utils.data.DataLoader(SeededViewDataset(toy_data(N), toy_views()), batch_size=BATCH)
    other = SSLTrainer("cpu", 2, plain, build(dropout=0.2), torch.optim.AdamW(method.parameter_groups(0.05)))
    with pytest.raises(ValueError, match="EpochSampler") as info:
        resume(other, killed_run["dir"] / "last.pt")
    # issue 21: the command line's words (a flag), not the API's argument exact=False
    assert "exact=False" not in str(info.value) and "--overwrite" in str(info.value)


def test_epoch_end_checkpoint_follows_the_epoch_handlers_and_restores_objects(tmp_path):
    """every=2 with 4-iteration epochs: iteration 4 is saved once, at EPOCH_COMPLETED, after an epoch-level
    LrScheduleHandler attached before it; resuming with ``objects`` restores the scheduler, so the run is exact."""
    from ignite.engine import Events
    from monai.handlers import LrScheduleHandler
    from resume_script import BATCH, N, toy_data, toy_views
    from toy_method import build, pretraining_checkpoint

    from monai_transfer.ssl.data import make_ssl_dataloader
    from monai_transfer.ssl.trainer import SSLTrainer

    def run(directory, resume_from=None):
        method = build()
        loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=BATCH, seed=7, num_replicas=1, rank=0)
        optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
        trainer = SSLTrainer("cpu", 2, loader, method, optimizer)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        LrScheduleHandler(scheduler, print_lr=False).attach(trainer)
        ckpt = pretraining_checkpoint(directory, every=2, objects={"lr_scheduler": scheduler}, keep_previous=True)
        ckpt.attach(trainer)
        saves, losses = [], {}
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: losses.__setitem__(e.state.iteration, float(e.state.output["loss"]))
        )

        @trainer.on(Events.EPOCH_COMPLETED)
        def snapshot(engine):
            if engine.state.epoch == 1:
                shutil.copy(ckpt.path, tmp_path / "epoch1.pt")

        original = ckpt.save
        ckpt.save = lambda engine, **kw: saves.append(engine.state.iteration) or original(engine, **kw)
        if resume_from is not None:
            resume(trainer, resume_from, objects={"lr_scheduler": scheduler})
        trainer.run()
        return saves, losses, optimizer.param_groups[0]["lr"]

    saves, losses, lr = run(tmp_path / "a")
    assert saves == [2, 4, 6, 8]
    assert load_training_checkpoint(tmp_path / "epoch1.pt")["objects"]["lr_scheduler"]["last_epoch"] == 1
    _, rest, lr_resumed = run(tmp_path / "c", resume_from=tmp_path / "epoch1.pt")
    assert rest == {i: losses[i] for i in range(5, 9)} and lr_resumed == lr == pytest.approx(0.025)
    with pytest.raises(CheckpointLoadError, match="no state for 'missing'"):
        resume(
            SSLTrainer("cpu", 2, [], build(), torch.optim.SGD(build().parameters(), lr=0.1), epoch_length=4),
            tmp_path / "epoch1.pt",
            objects={"missing": None},
            exact=False,
        )


@pytest.mark.slow
def test_resuming_a_finished_run_trains_nothing(tmp_path):
    from resume_script import BATCH, N, toy_data, toy_views
    from toy_method import build

    from monai_transfer.ssl.data import make_ssl_dataloader
    from monai_transfer.ssl.trainer import SSLTrainer

    _train(tmp_path / "full")  # the whole run: last.pt is at iteration 8 of 8
    method = build(dropout=0.2)
    loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=BATCH, seed=7, num_replicas=1, rank=0)
    trainer = SSLTrainer("cpu", 2, loader, method, torch.optim.AdamW(method.parameter_groups(0.05)))
    with torch.random.fork_rng(devices=[]):
        resume(trainer, tmp_path / "full" / "last.pt")
    before = {k: v.clone() for k, v in method.state_dict().items()}
    trainer.run()  # ignite alone would start a new run from iteration 0
    assert trainer.state.iteration == 8
    assert all(torch.equal(v, method.state_dict()[k]) for k, v in before.items())
