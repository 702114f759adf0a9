"""Whole runs on the demo data: 2D tissue segmentation at two label fractions beats chance; classification runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice
from monai.transforms import LoadImage

from monai_transfer.data import load_datalist
from monai_transfer.finetune import evaluate, finetune

# a small, fast network: ResNet-10 without max pooling (deepest map 2x2 at 32 px) and a narrow decoder
SEG = {
    "backbone": "resnet10",
    "task": "segmentation",
    "backbone_kwargs": {"no_max_pool": True},
    "head_kwargs": {"feature_size": 8},
    "epochs": 4,
    "batch_size": 4,
    "lr": 3e-3,
    "tensorboard": False,
    # 4 epochs are too few for the default cosine decay to zero; a flat rate also tests that overrides reach the config
    "overrides": ["lr_schedule=constant"],
}


def chance_dice(datalist: str, num_classes: int = 4) -> float:
    """Mean foreground Dice of the best constant prediction and of a uniformly random one, on the test section."""
    loader = LoadImage(image_only=True)
    labels = [torch.as_tensor(np.asarray(loader(e["label"]))).long() for e in load_datalist(datalist, "test")]
    gen = torch.Generator().manual_seed(0)
    best = 0.0
    preds = {f"const{c}": lambda lab, c=c: torch.full_like(lab, c) for c in range(num_classes)}
    preds["random"] = lambda lab: torch.randint(0, num_classes, lab.shape, generator=gen)
    for make in preds.values():
        scores = []
        for lab in labels:
            y = torch.nn.functional.one_hot(lab, num_classes).movedim(-1, 0)[None].float()
            p = torch.nn.functional.one_hot(make(lab), num_classes).movedim(-1, 0)[None].float()
            scores.append(compute_dice(p, y, include_background=False, ignore_empty=True).nanmean().item())
        best = max(best, float(np.mean(scores)))
    return best


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_segmentation_2d_beats_chance(demo, tmp_path, fraction):
    out = tmp_path / f"seg_{fraction}"
    result = finetune(
        pretrained=None, strategy="full", label_fraction=fraction, seed=0, datalist=demo["tissue_seg_2d"],
        out_dir=out, **SEG,
    )  # fmt: skip
    chance = chance_dice(demo["tissue_seg_2d"])
    assert chance < 0.3
    assert result["test"]["mean_dice"] > chance + 0.1, (result["test"], chance)
    assert result["best_metric_name"] == "mean_dice" and 1 <= result["best_epoch"] <= 4
    n_total = result["n_train_total"]
    assert result["n_train"] == n_total if fraction == 1.0 else result["n_train"] < n_total
    # result.json and the checkpoint were written atomically (no temporary file left) inside out_dir only
    saved = json.loads((out / "result.json").read_text())
    assert saved["best_metric"] == pytest.approx(result["best_metric"])
    assert sorted(os.listdir(out)) == ["checkpoints", "configs", "identity.json", "models", "result.json",
                                       "test_cases.json"]
    # precision.json: the run's amp decision, kept by a resumed run
    assert sorted(os.listdir(out / "models")) == ["model.pt"] and sorted(os.listdir(out / "checkpoints")) == [
        "last.json",
        "last.pt",
        "precision.json",
    ]
    # the resolved config that ran is saved, and it is a bundle config MONAI can parse
    config = json.loads((out / "configs" / "train.json").read_text())
    assert config["label_fraction"] == fraction and config["train"]["trainer"]["max_epochs"] == 4
    assert config["lr_schedule"] == "constant" and result["overrides"] == {"lr_schedule": "constant"}
    # evaluate() rebuilds the network from the run's config and reproduces the test metrics
    again = evaluate(out, demo["tissue_seg_2d"], section="test")
    assert again["mean_dice"] == pytest.approx(result["test"]["mean_dice"], abs=1e-5)
    assert len(again["cases"]) == again["n"] == 12
    # per-case boundary metrics are recorded too (voxel units), for the bootstrap summaries of `evaluate`
    case = again["cases"][0]
    assert len(case["hd95_voxels"]) == len(case["surface_dice_1voxel"]) == len(case["dice"]) == 3
    assert all(0.0 <= v <= 1.0 for v in case["surface_dice_1voxel"] if v == v)


def test_label_fraction_subsets_are_nested_and_deterministic(demo, tmp_path):
    from monai_transfer.data import label_fractions

    train = load_datalist(demo["tissue_seg_2d"], "training")
    a = label_fractions(train, [0.5], seed=0, label_key=None, patient_key="patient_id")[0.5]
    b = label_fractions(train, [0.5, 1.0], seed=0, label_key=None, patient_key="patient_id")
    assert a == b[0.5] and all(e in b[1.0] for e in a)


def test_classification_3d_runs(demo, tmp_path):
    out = tmp_path / "cls"
    result = finetune(
        "resnet10", None, "classification", "lp-ft", label_fraction=1.0, seed=1, datalist=demo["lesion_cls_3d"],
        out_dir=out, epochs=2, batch_size=4, lr=1e-3, strategy_kwargs={"lp_epochs": 1}, class_weights="balanced",
        loss="focal", patience=5, tensorboard=True,
    )  # fmt: skip
    assert (out / "result.json").is_file() and (out / "models" / "model.pt").is_file()
    assert result["best_metric_name"] in ("auroc", "accuracy")
    assert result["strategy"]["name"] == "lp-ft" and result["loss"] == "focal"
    assert result["labels"] == ["no_lesion", "lesion"]  # the datalist's class names
    assert len(result["class_weights"]) == 2
    assert 0.0 <= result["test"]["accuracy"] <= 1.0
    metrics = evaluate(out / "models" / "model.pt", demo["lesion_cls_3d"], section="test")
    # evaluate() scores the argmax; the run's test accuracy is at its validation-chosen threshold, 0.5 beside it
    assert metrics["accuracy"] == pytest.approx(result["test"]["accuracy_at_0.5"])
    assert all(len(c["prob"]) == 2 for c in metrics["cases"])
