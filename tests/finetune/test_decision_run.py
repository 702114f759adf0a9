"""A fine-tuning run decides its test section at a threshold chosen on validation, records it, and the inference
bundle made from the run applies it (issue 25)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_transfer.bundle import bundle_from_run
from monai_transfer.bundle.from_run import run_inference
from monai_transfer.data import load_datalist
from monai_transfer.finetune import finetune

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("decided") / "run"
    result = finetune("resnet10", None, "classification", "full", datalist=demo["lesion_cls_3d"], out_dir=out,
                      epochs=1, batch_size=4, spatial_dims=3, progress=False, tensorboard=False, threshold="f1",
                      calibrate="temperature", backbone_kwargs={"widen_factor": 0.25})  # fmt: skip
    return out, result


def test_the_threshold_is_chosen_on_validation_recorded_and_applied_to_the_test(run):
    out, result = run
    decision = json.loads((out / "models" / "decision.json").read_text())
    assert decision["rule"] == "f1" and decision["validation_section"] == "validation"
    assert 0 < decision["threshold"] < 1 and decision["temperature"] > 0
    assert result["decision"] == decision
    test = result["test"]
    assert test["threshold"] == decision["threshold"] and test["threshold_rule"] == "f1"
    assert "accuracy_at_0.5" in test and test["temperature"] == decision["temperature"]
    for name in ("accuracy", "sensitivity", "specificity", "f1", "balanced_accuracy", "brier", "auroc"):
        assert name in test and f"{name}_ci95" in test, name
    assert (out / "calibration.png").stat().st_size > 1000
    saved = json.loads((out / "result.json").read_text())
    assert saved["decision"]["threshold"] == decision["threshold"]


def test_the_inference_bundle_applies_the_runs_threshold_and_temperature(run, demo, tmp_path):
    out, _ = run
    bundle = bundle_from_run(out, tmp_path / "bundle")
    decision = json.loads((bundle / "models" / "decision.json").read_text())
    images = [e["image"] for e in load_datalist(demo["lesion_cls_3d"], "test")]
    preds = run_inference(bundle, images, tmp_path / "pred")
    rows = [json.loads(line) for line in Path(preds, "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(images)
    labels = list(rows[0]["probabilities"])
    for r in rows:
        p1 = r["probabilities"][labels[1]]
        assert r["pred"] == (labels[1] if p1 >= decision["threshold"] else labels[0])
        assert "on validation" in r["decision"]


def test_the_bundles_own_train_json_chooses_and_writes_the_decision(run, tmp_path):
    """``python -m monai.bundle run`` of the run's ``train.json`` (no ``finetune`` around it) writes
    ``models/decision.json`` with its best checkpoint, by the rule its config holds."""
    import subprocess
    import sys

    out, _ = run
    config = json.loads((out / "configs" / "train.json").read_text())
    assert (config["threshold"], config["calibrate"], config["one_vs_rest"]) == ("f1", "temperature", False)
    root = tmp_path / "bundle_run"
    (root / "models").mkdir(parents=True)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(out / "configs" / "train.json"),
           "--bundle_root", str(root), "--train#trainer#max_epochs", "1", "--resume", "overwrite",
           "--threshold", "youden", "--calibrate", "none"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decision = json.loads((root / "models" / "decision.json").read_text())
    assert decision["rule"] == "youden" and decision["temperature"] is None and 0 < decision["threshold"] < 1
    assert decision["epoch"] == 1 and decision["validation_section"] == "validation" and decision["n_validation"] > 0
    assert (root / "models" / "model.pt").is_file()
