"""``create_bundle``: refuses an existing folder, leaves nothing behind when it fails, records where the intensity mapping
comes from, copies a checkpoint starting point, and its network embeds in research code in two lines
(``load_bundle_network``) with the outputs of the bundle's own ``inference.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_transfer.bundle import BundleExistsError, check_bundle, create_bundle, load_bundle_network
from monai_transfer.networks import create_transfer_net

from .conftest import tree_digest

ROOT = Path(__file__).resolve().parents[2]
TINY = {"backbone": "resnet10", "spatial_dims": 2, "backbone_kwargs": {"widen_factor": 0.125}}


def _tiny(out: Path, **kwargs) -> Path:
    args = {**TINY, "task": "classification", "num_classes": 2, "labels": ["normal", "lesion"], **kwargs}
    return create_bundle(out, **args)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_refuses_an_existing_folder_unless_overwrite(tmp_path):
    out = _tiny(tmp_path / "b")
    before = tree_digest(out)
    with pytest.raises(BundleExistsError, match="overwrite"):
        _tiny(out, labels=["a", "b"])
    assert tree_digest(out) == before
    _tiny(out, labels=["a", "b"], overwrite=True)
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "a", "1": "b"}
    assert _leftovers(tmp_path) == []


def test_a_failure_leaves_nothing_half_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        _tiny(tmp_path / "new", weights=tmp_path / "missing.pt")
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path) == []

    out = _tiny(tmp_path / "kept")
    before = tree_digest(out)
    with pytest.raises(FileNotFoundError):  # overwrite=True, but the new bundle cannot be written: the old one stays
        _tiny(out, weights=tmp_path / "missing.pt", overwrite=True)
    assert tree_digest(out) == before and _leftovers(tmp_path) == []

    with pytest.raises(ValueError, match="unknown fine-tuning strategy"):  # caught before anything is written
        _tiny(tmp_path / "s", strategy="fine-tune-everything")
    with pytest.raises(ValueError, match="labels"):
        _tiny(tmp_path / "l", labels=["only_one"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_intensity_departure_is_recorded(tmp_path):
    """The starting point's mapping is the default; an override is written to the configs, said in the README and
    recorded in the metadata next to the provenance it departs from (no download: only the provenance is read)."""
    own = create_bundle(tmp_path / "own", "resnet18", "classification", 2, 2, pretrained="torchvision-imagenet1k-v1")
    meta = json.loads((own / "configs" / "metadata.json").read_text())["monai_transfer"]
    assert meta["intensity"]["name"] == "imagenet" and meta["intensity_origin"] == "the starting point's own"
    assert "models/pretrained/resnet18-f37072fd.pth" in (own / "large_files.yml").read_text()

    other = create_bundle(tmp_path / "z", "resnet18", "classification", 2, 2, pretrained="torchvision-imagenet1k-v1",
                          intensity={"name": "zscore"})  # fmt: skip
    meta = json.loads((other / "configs" / "metadata.json").read_text())["monai_transfer"]
    assert meta["intensity"] == {"name": "zscore"} and meta["intensity_origin"].startswith("departing from")
    assert "departing from the starting point's own imagenet(" in (other / "docs" / "README.md").read_text()
    train = (other / "configs" / "train.json").read_text()
    assert "NormalizeIntensityd" in train and "0.485" not in train


def test_source_caveats_reach_the_readme(tmp_path):
    out = create_bundle(tmp_path / "x", "densenet121", "classification", 2, 2, pretrained="torchxrayvision-all")
    readme = " ".join((out / "docs" / "README.md").read_text().split())
    assert "whole pickled model" in readme and "state_dict()" in readme


def test_checkpoint_starting_point_is_copied_and_reported(tmp_path):
    from monai_transfer.networks import create_backbone
    from monai_transfer.weights import Provenance, save_pretrained

    encoder = create_backbone("resnet10", spatial_dims=2, in_channels=1, widen_factor=0.125)
    prov = Provenance(method="SimCLR", modality="MR", preprocessing={"intensity": {"name": "minmax"}})
    ckpt = save_pretrained(encoder, tmp_path / "encoder.pt", provenance=prov)
    out = _tiny(tmp_path / "b", pretrained=ckpt)
    assert (out / "models" / "pretrained" / "encoder.pt").read_bytes() == Path(ckpt).read_bytes()
    assert not (out / "large_files.yml").exists()
    meta = json.loads((out / "configs" / "metadata.json").read_text())["monai_transfer"]
    assert meta["kind"] == "file" and meta["intensity"]["name"] == "minmax" and meta["load_report"]
    assert "What loaded into the backbone" in (out / "docs" / "README.md").read_text()
    assert check_bundle(out, export=False) == []


def test_segmentation_input_shape_fits_the_network(tmp_path):
    """Segmentation inputs are multiples of the largest stride with two of them at least (what the configs pad to):
    MONAI's verify_net_in_out feeds the smallest, which the decoder's instance norms accept."""
    out = create_bundle(tmp_path / "s", task="segmentation", num_classes=3, **TINY)
    image = json.loads((out / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == ["32*n+32", "32*n+32"]
    assert check_bundle(out, export=False) == []


def _images(folder: Path, n: int = 2) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"case{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((40, 36)).astype(np.float32) * 100, np.diag([0.8, 0.8, 1.0, 1.0])), path)
        paths.append(path)
    return paths


@pytest.mark.slow
@pytest.mark.integration
def test_load_bundle_network_gives_the_bundles_inference_output(tmp_path):
    """``python -m monai.bundle run`` of inference.json (a real subprocess) and the two-line embedding agree."""
    weights = tmp_path / "weights.pt"
    trained = create_transfer_net(task="classification", num_classes=2, seed=3, **TINY)
    torch.save(trained.state_dict(), weights)
    bundle = _tiny(tmp_path / "b", weights=weights, spatial_size=64)
    images = _images(tmp_path / "images")
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--bundle_root", ".",
         "--dataset_dir", str(tmp_path / "images")],
        cwd=bundle, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["image"]: r for r in map(json.loads, (bundle / "eval" / "predictions.jsonl").read_text().splitlines())}

    # the two lines a researcher writes
    net = load_bundle_network(bundle)
    net.eval()

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    preprocessing = parser.get_parsed_content("preprocessing")
    for path in images:
        x = preprocessing({"image": str(path)})["image"].unsqueeze(0)
        with torch.no_grad():
            probs = torch.softmax(net(x), dim=1)[0]
        expected = rows[path.name]["probabilities"]
        np.testing.assert_allclose(probs.numpy(), [expected["normal"], expected["lesion"]], atol=1e-5)
    torch.testing.assert_close(net.state_dict(), trained.state_dict())
