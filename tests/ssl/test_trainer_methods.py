"""The SSL trainer with the real methods (SimCLR, BYOL, MoCo v2 on a small ResNet-10) and their view recipes:
training runs, teachers move, and a resume from a mid-epoch checkpoint reproduces the uninterrupted run exactly
(BatchNorm running statistics, EMA teachers and the MoCo queue included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events

from monai_transfer.engines import RunCheckpoint
from monai_transfer.networks import create_backbone
from monai_transfer.ssl import create_method
from monai_transfer.ssl.data import make_ssl_dataloader
from monai_transfer.ssl.resume import resume
from monai_transfer.ssl.schedules import ScheduleHandler
from monai_transfer.ssl.trainer import SSLTrainer

METHODS = {
    "simclr": {"projection_dim": 16, "hidden_dim": 32},
    "byol": {"projection_dim": 16, "hidden_dim": 32},
    "moco_v2": {"projection_dim": 16, "hidden_dim": 32, "queue_size": 16},
}


def _images(n: int = 8, size: int = 32) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.normal(0, 1, (1, size, size)).astype(np.float32)} for _ in range(n)]


def _method(name: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_method(name, create_backbone("resnet10", spatial_dims=2, widen_factor=0.25), **METHODS[name])


def _run(name: str, checkpoint_dir=None, resume_from=None):
    from monai_transfer.ssl.views import make_views

    method = _method(name)
    loader = make_ssl_dataloader(_images(), make_views(name, 2, 24, "ct"), batch_size=4, seed=5, num_replicas=1, rank=0)
    optimizer = torch.optim.SGD(method.parameter_groups(1e-4), lr=0.05, momentum=0.9)
    trainer = SSLTrainer("cpu", 2, loader, method, optimizer, grad_clip_norm=10.0)
    momentum = (0.9, 1.0) if hasattr(method, "teacher_backbone") else None
    ScheduleHandler(4, lr=(0.05, 0.0), warmup_steps=1, teacher_momentum=momentum).attach(trainer)
    if checkpoint_dir is not None:
        # iteration 3 only (mid-epoch 2), saved as a pretraining config saves (resumed by ssl.resume.resume)
        RunCheckpoint(checkpoint_dir, resume=None, every=3, every_epochs=None, module_key="method").attach(trainer)
    losses = {}
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: losses.__setitem__(e.state.iteration, float(e.state.output["loss"]))
    )
    with torch.random.fork_rng(devices=[]):
        if resume_from is not None:
            resume(trainer, resume_from)
        trainer.run()
    return method, losses


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_real_method_trains_and_resumes_exactly(name, tmp_path):
    initial = _method(name)
    method, losses = _run(name, checkpoint_dir=tmp_path)
    assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(v) for v in losses.values())
    if name != "simclr":  # the EMA teacher moved, by the scheduled momentum
        expected = ScheduleHandler(4, teacher_momentum=(0.9, 1.0)).values(3)["teacher_momentum"]
        assert method.teacher_momentum == pytest.approx(expected)
        t = dict(method.teacher_backbone.named_parameters())
        assert any(not torch.equal(p, dict(initial.teacher_backbone.named_parameters())[k]) for k, p in t.items())

    resumed, rest = _run(name, resume_from=tmp_path / "last.pt")
    assert rest == {4: losses[4]}
    for (k, a), b in zip(method.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_dino_last_layer_is_frozen_in_epoch_one_only():
    # the trainer calls the method's after_backward hook: DINO drops its last layer's gradients in epoch 1
    from monai_transfer.ssl.views import make_views

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        method = create_method("dino", create_backbone("resnet10", spatial_dims=2, widen_factor=0.25),
                               out_dim=32, hidden_dim=32, bottleneck_dim=16)  # fmt: skip
    views = make_views("dino", 2, 24, "ct", num_local_views=0)
    loader = make_ssl_dataloader(_images(), views, batch_size=4, seed=5, num_replicas=1, rank=0)
    optimizer = torch.optim.AdamW(method.parameter_groups(0.0), lr=1e-2)
    trainer = SSLTrainer("cpu", 2, loader, method, optimizer)
    last = method.head.last_layer
    snapshots = {}
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: snapshots.__setitem__(e.state.epoch, [p.detach().clone() for p in last.parameters()]),
    )
    before = [p.detach().clone() for p in last.parameters()]
    trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(before, snapshots[1]))
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[1], snapshots[2]))
