"""Checkpoint, inferer and loss pieces of the fine-tuning trainer."""

from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine
from monai.inferers import SimpleInferer, SlidingWindowInferer

from monai_transfer.finetune.trainer import AtomicBestCheckpoint, make_inferer
from monai_transfer.losses import LabelCrossEntropyLoss, balanced_class_weights


def test_best_checkpoint_keeps_best_and_is_atomic(tmp_path):
    net = torch.nn.Linear(2, 2)
    ckpt = AtomicBestCheckpoint(tmp_path / "best.pt", net, "mean_dice", extra={"config": {"a": 1}})
    engine = Engine(lambda e, b: None)
    for epoch, value in enumerate([0.2, 0.5, float("nan"), 0.4], start=1):
        engine.state.epoch = epoch
        engine.state.metrics = {"mean_dice": value}
        with torch.no_grad():
            net.weight.fill_(epoch)
        ckpt(engine)
    payload = torch.load(tmp_path / "best.pt", weights_only=True)
    assert payload["epoch"] == 2 and payload["metric"] == 0.5 and payload["config"] == {"a": 1}
    assert torch.all(payload["network"]["weight"] == 2)
    assert os.listdir(tmp_path) == ["best.pt"]


def test_inferer_choice():
    assert isinstance(make_inferer("segmentation", 3, 16), SlidingWindowInferer)
    assert isinstance(make_inferer("segmentation", 2, 16), SimpleInferer)
    assert isinstance(make_inferer("classification", 3, None), SimpleInferer)


def test_label_cross_entropy_shapes_and_weights():
    loss = LabelCrossEntropyLoss(weight=[1.0, 3.0])
    logits = torch.randn(4, 2, 5, 5)
    target = torch.randint(0, 2, (4, 1, 5, 5))
    ref = torch.nn.functional.cross_entropy(logits, target[:, 0], weight=torch.tensor([1.0, 3.0]))
    assert torch.allclose(loss(logits, target), ref)
    assert torch.allclose(loss(logits, target[:, 0]), ref)
    with pytest.raises(ValueError, match="does not match"):
        loss(logits, torch.zeros(4, 1, 4, 4))
    with pytest.raises(ValueError, match=r"class indices \[2\] outside \[0, 2\)"):
        loss(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    assert balanced_class_weights([30, 10]) == pytest.approx([2 / 3, 2.0])
