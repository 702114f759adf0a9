"""KNNMonitor: high accuracy on a separable set, chance on shuffled labels, trainer integration, side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events
from torch import nn
from toy_method import build, toy_data, toy_views

from monai_transfer.ssl.base import SSLMethod
from monai_transfer.ssl.data import make_ssl_dataloader
from monai_transfer.ssl.monitor import KNNMonitor, knn_predict
from monai_transfer.ssl.trainer import SSLTrainer


class PixelMethod(SSLMethod):
    """An SSLMethod whose encoder is the raw pixels (flattened): left/right-bright toy images separate linearly."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten())


def test_knn_accuracy_is_high_on_separable_data_and_chance_on_shuffled_labels():
    train, val = toy_data(40, seed=1), toy_data(200, seed=2)
    monitor = KNNMonitor(PixelMethod(), train, val, k=5)
    assert monitor.evaluate()["knn_accuracy"] > 0.9
    # labels shuffled in both sets: whatever the neighbours vote, it is right for half of the queries
    rng = np.random.default_rng(0)

    def shuffle(data):
        return [dict(d, label=int(y)) for d, y in zip(data, rng.permutation([d["label"] for d in data]))]

    chance = KNNMonitor(PixelMethod(), shuffle(train), shuffle(val), k=5).evaluate()["knn_accuracy"]
    assert abs(chance - 0.5) < 0.15, chance


def test_cross_validated_without_val_and_linear_probe():
    data = toy_data(30, seed=3)
    assert KNNMonitor(PixelMethod(), data, None, k=3).evaluate()["knn_accuracy"] > 0.9
    pytest.importorskip("sklearn")
    result = KNNMonitor(PixelMethod(), data, toy_data(30, seed=4), k=3, linear_probe=True).evaluate()
    assert result["linear_probe_accuracy"] > 0.9
    with pytest.raises(ValueError, match="val_data"):
        KNNMonitor(PixelMethod(), data, None, linear_probe=True)


def test_knn_predict_weighted_votes():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # k=3: two class-0 neighbours far away lose to one very close class-1 neighbour at a low temperature
    query = torch.tensor([[0.05, 1.0]])
    assert knn_predict(train, labels, query, k=3, temperature=0.01).tolist() == [1]
    assert knn_predict(train, labels, torch.tensor([[1.0, 0.05]]), k=1).tolist() == [0]
    with pytest.raises(ValueError, match="features"):
        knn_predict(train, labels, torch.zeros(1, 3))


def test_monitor_on_the_trainer_restores_modes_and_leaves_the_rng_alone():
    method = build(dropout=0.1)
    method.teacher.eval()  # a mixed train/eval state must come back as it was
    loader = make_ssl_dataloader(toy_data(8), toy_views(), batch_size=4, seed=0, num_replicas=1, rank=0)
    trainer = SSLTrainer("cpu", 3, loader, method, torch.optim.SGD(method.parameters(), lr=0.01))
    monitor = KNNMonitor(None, toy_data(8, seed=1), toy_data(8, seed=2), every=2, k=3)
    monitor.attach(trainer)
    modes = {}
    states = {}

    @trainer.on(Events.EPOCH_COMPLETED)
    def record(engine):
        modes[engine.state.epoch] = [m.training for m in method.modules()]
        states[engine.state.epoch] = torch.get_rng_state()

    trainer.run()
    # every=2 over 3 epochs: epoch 2, then the end of the run (epoch 3); no duplicate when they coincide
    assert [h["epoch"] for h in monitor.history] == [2, 3]
    assert "knn_accuracy" in trainer.state.metrics
    assert [m.training for m in method.modules()] == modes[1]
    assert not method.teacher.training and method.backbone.training
    before = torch.get_rng_state()
    monitor.evaluate()
    assert torch.equal(before, torch.get_rng_state())
    restored = KNNMonitor(None, [], None)
    restored.load_state_dict(monitor.state_dict())
    assert restored.history == monitor.history
