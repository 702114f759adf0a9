"""One toy SSL run for the exact-resume test (imported by test_resume.py, or run as a script in a subprocess).

``python resume_script.py OUT RESULT.json [--kill-at K] [--resume CHECKPOINT]`` trains 2 epochs of 4 iterations
(dropout, an EMA teacher and a buffer, cosine schedules, a kNN monitor, checkpoints every 3 iterations), records
the loss of every iteration and the final weights in ``RESULT.json`` / ``RESULT.pt``. With ``--kill-at K`` the
process SIGKILLs itself right after the checkpoint of iteration ``K``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from ignite.engine import Events

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy_method import build, pretraining_checkpoint, toy_data, toy_views  # noqa: E402

from monai_transfer.ssl.data import make_ssl_dataloader  # noqa: E402
from monai_transfer.ssl.monitor import KNNMonitor  # noqa: E402
from monai_transfer.ssl.resume import resume  # noqa: E402
from monai_transfer.ssl.schedules import ScheduleHandler  # noqa: E402
from monai_transfer.ssl.trainer import SSLTrainer  # noqa: E402

EPOCHS, N, BATCH, EVERY = 2, 16, 4, 3


def train(out: str | os.PathLike, kill_at: int | None = None, resume_from: str | None = None):
    """Run (or continue) the toy run; return ``({iteration: loss}, final state_dict)``."""
    torch.manual_seed(1234)  # the dropout stream; a resume replaces it with the checkpoint's
    method = build(seed=0, dropout=0.2)
    loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=BATCH, seed=7, num_replicas=1, rank=0)
    optimizer = torch.optim.AdamW(method.parameter_groups(0.05), lr=1e-2)
    trainer = SSLTrainer(
        device="cpu",
        max_epochs=EPOCHS,
        train_data_loader=loader,
        method=method,
        optimizer=optimizer,
        grad_clip_norm=5.0,
    )
    total = EPOCHS * len(loader)
    ScheduleHandler(
        total,
        lr=(1e-2, 1e-4),
        warmup_steps=2,
        weight_decay=(0.05, 0.2),
        teacher_momentum=(0.9, 1.0),
    ).attach(trainer)
    monitor = KNNMonitor(None, toy_data(8, seed=1), toy_data(8, seed=2), k=3)
    monitor.attach(trainer)  # before the checkpoint: the epoch-end checkpoint then holds this epoch's kNN result
    objects = {"monitor": monitor}
    pretraining_checkpoint(out, every=EVERY, config={"toy": True}, objects=objects, keep_previous=True).attach(trainer)
    losses: dict[int, float] = {}
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: losses.__setitem__(e.state.iteration, float(e.state.output["loss"]))
    )
    if kill_at is not None:

        @trainer.on(Events.ITERATION_COMPLETED)
        def die(engine):  # attached after the checkpoint: the checkpoint of this iteration is on disk
            if engine.state.iteration == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    if resume_from is not None:
        resume(trainer, resume_from, objects={"monitor": monitor})
    trainer.run()
    return losses, {k: v.clone() for k, v in method.state_dict().items()}, monitor.history


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("result")
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--resume", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    losses, weights, history = train(a.out, a.kill_at, a.resume)
    result = Path(a.result)
    torch.save(weights, result.with_suffix(".pt"))
    result.write_text(json.dumps({"losses": {str(k): v for k, v in losses.items()}, "history": history}))


if __name__ == "__main__":
    main()
