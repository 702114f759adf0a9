"""Every kind of start can win a study (issue 21, section 2): its best bundle is written and predicts.

A tiny study runs for real with one start of each kind: random, a checkpoint file (what a published source is once
downloaded), SSL pretrained in the study, supervised pretrained in the study (its start is a bundle folder: the
quickstart's failure), and continual (SSL continuing from the supervised bundle). Which start wins a tiny study is
noise, so the winner is then chosen: the study's own rows (real run folders of the real starts) are given scores that
make each start the best in turn, and the study's own best-bundle step (``_best_bundles``) writes that start's bundle,
whose inference runs (the package's ``infer`` path for every start; ``python -m monai.bundle run`` for the supervised
start, the one that failed).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = """
name: every_start
targets:
  - {name: squares, data: squares.json, task: classification, spatial_dims: 2}
starts:
  - random
  - {name: file_start, path: published.pt}
  - name: ssl_pool
    ssl: {method: simclr, data: pool.json, epochs: 1, batch_size: 8, roi_size: 16, modality: mr}
  - name: supervised_sq
    supervised: {data: squares.json, epochs: 1, batch_size: 4}
  - name: continual_sq
    continual: {from: supervised_sq, ssl: {method: simclr, data: pool.json, epochs: 1, batch_size: 8, roi_size: 16,
                                           modality: mr}}
backbones: [resnet10]
seeds: [0]
finetune: {epochs: 1, batch_size: 4, lr: 0.003, backbone_kwargs: {widen_factor: 0.25}}
"""
STARTS = ["random", "file_start", "ssl_pool", "supervised_sq", "continual_sq"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study folder after a real run, its spec and rows."""
    from monai_transfer.networks import create_backbone
    from monai_transfer.study import load_spec, run_study
    from monai_transfer.weights import Provenance, save_pretrained

    root = tmp_path_factory.mktemp("every_start")
    rng = np.random.default_rng(0)
    entries = []
    (root / "images").mkdir()
    for i in range(24):
        img = rng.normal(0, 1, (16, 16)).astype(np.float32)
        if i % 2:
            r, c = rng.integers(2, 10, 2)
            img[r : r + 5, c : c + 5] += 4
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / "images" / f"img{i:02d}.nii.gz")
        entries.append({"image": f"images/img{i:02d}.nii.gz", "label": i % 2, "patient_id": f"p{i}"})
    dl = {"labels": {"0": "empty", "1": "square"}, "training": entries[:14], "validation": entries[14:20],
          "test": entries[20:]}  # fmt: skip
    (root / "squares.json").write_text(json.dumps(dl))
    (root / "pool.json").write_text(json.dumps({"unlabeled": [{"image": e["image"]} for e in entries]}))
    # a file in the layout a published source has once downloaded: weights with their provenance
    torch.manual_seed(0)
    net = create_backbone("resnet10", spatial_dims=2, in_channels=1, widen_factor=0.25)
    save_pretrained(net, root / "published.pt", Provenance(method="supervised (test)", source_data="squares",
                                                          preprocessing={"intensity": {"name": "zscore"}}))  # fmt: skip
    (root / "spec.yaml").write_text(SPEC)
    spec, raw = load_spec(root / "spec.yaml")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_study(spec, root / "out", raw=raw, progress=False, threads=1)
    finally:
        torch.set_num_threads(before)
    assert result["failed"] == 0, [r.get("error") for r in result["rows"]]
    assert sorted(r["start"] for r in result["rows"]) == sorted(STARTS)
    # the study's own best bundle (whichever start won) was written
    assert (Path(result["best"]["squares"]) / "models" / "model.pt").is_file()
    return root, spec, result["rows"]


@pytest.mark.parametrize("winner", STARTS)
def test_each_start_can_win_and_its_best_bundle_predicts(study, winner, tmp_path):
    from monai_transfer.bundle import run_inference
    from monai_transfer.study.runner import _best_bundles

    root, spec, rows = study
    rows = copy.deepcopy(rows)
    for r in rows:  # the real rows, scored so that ``winner`` has the best mean
        r["score"] = 0.9 if r["start"] == winner else 0.6
    best = Path(_best_bundles(spec, rows, tmp_path)["squares"])
    assert f"{winner} (resnet10" in (best / "STUDY.md").read_text()
    meta = json.loads((best / "configs" / "metadata.json").read_text())
    ours = meta["monai_transfer"]
    if winner == "random":
        assert ours["kind"] == "random"
    else:  # the start's weights are in the bundle and load strictly into its train.json network
        assert ours["kind"] == "file" and list((best / "models" / "pretrained").iterdir())
        assert "missing: 0, unexpected: 0, shape-mismatched: 0" in ours["load_report"]
    if winner == "supervised_sq":  # a fine-tuned network as the start: its backbone loads, its head is dropped
        assert "adapter=monai-transfer" in ours["load_report"] and "dropped on purpose" in ours["load_report"]
    images = sorted((root / "images").glob("*.nii.gz"))[:4]
    preds = run_inference(best, images, tmp_path / "pred")
    lines = [json.loads(x) for x in (preds / "predictions.jsonl").read_text().splitlines() if x.strip()]
    assert len(lines) == 4
    if winner == "supervised_sq":  # and MONAI's own runner runs the same bundle
        out = tmp_path / "monai_run"
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(best / "configs" / "inference.json"),
               "--bundle_root", str(best), "--dataset_dir", str(root / "images"), "--output_dir", str(out)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len((out / "predictions.jsonl").read_text().splitlines()) == 24
