"""One chain end to end, as a user runs it (issue 9): ``pretrain`` on unlabeled scans -> its fine-tuning bundle ->
that bundle's ``train.json`` on labelled data -> the inference bundle of the best weights -> ``inference.json`` on new
scans, label maps with the inputs' geometry. No hand editing between the steps: only ``--set`` of values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.cli import main
from monai_transfer.data import load_datalist, make_demo_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pretrain_to_bundle_to_finetune_to_inference(tmp_path):
    demo = make_demo_data(tmp_path / "demo", n_subjects=12, size=32, n_unlabeled=8, seed=0)
    pre = tmp_path / "simclr"
    code = main(["pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", "3", "--modality", "mr",
                 "--data", demo["unlabeled"], "--out", str(pre), "--epochs", "1", "--batch-size", "4",
                 "--backbone-arg", "widen_factor=0.25"])  # fmt: skip
    assert code == 0
    bundle = pre / "bundle"
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["intensity"] == {"name": "preset", "preset": "mr"}  # the encoder's own preprocessing, as data
    from monai_transfer.bundle import check_bundle

    assert [str(p) for p in check_bundle(bundle, export=False)] == []

    # fine-tune the bundle's train.json on the 3D tissue labels: 4 classes instead of the bundle's 2, by --set only
    seg = demo["tissue_seg_3d"]
    labels = list(json.loads(open(seg).read())["labels"].values())
    ft = tmp_path / "ft"
    code = main(["finetune", "--config", str(bundle / "configs" / "train.json"), "--out", str(ft),
                 "--set", f"datalist={seg}", "--set", "num_classes=4", "--set", f"labels={json.dumps(labels)}",
                 "--set", "train#trainer#max_epochs=1", "--set", "batch_size=2", "--set", f"pretrained={pre / 'encoder.pt'}"])  # fmt: skip
    assert code == 0
    result = json.loads((ft / "result.json").read_text())
    assert result["load_report"]["ok"] and result["test"]["n"] > 0
    assert (ft / "bundle" / "configs" / "inference.json").is_file()

    # the inference bundle on new scans, through MONAI's own entry point
    images = tmp_path / "new"
    images.mkdir()
    for e in load_datalist(seg, "test")[:2]:
        os.link(e["image"], images / os.path.basename(e["image"]))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(ft / "bundle/configs/inference.json"),
           "--bundle_root", str(ft / "bundle"), "--dataset_dir", str(images), "--output_dir", str(tmp_path / "pred")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for src in images.iterdir():
        name = src.name.replace(".nii.gz", "_seg.nii.gz")
        out = nib.load(str(tmp_path / "pred" / name))
        inp = nib.load(str(src))
        assert out.shape == inp.shape and np.allclose(out.affine, inp.affine)
        assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 3}
