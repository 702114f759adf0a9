"""The demo data's second-modality pool (``other_modality/``, ``other_modality.json``): present, deterministic, a
different contrast than the T1w pool, and without effect on any other file."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.data.datalist import load_datalist
from monai_transfer.data.demo import make_demo_data
from monai_transfer.data.demo.generator import (
    OTHER_MODALITY,
    load_anatomy,
    other_modality_site_params,
    simulate_subject,
    site_params,
)

pytest.importorskip("nilearn")

KW = dict(n_subjects=3, n_sites=2, size=24, lesion_prevalence=0.0, seed=5, n_unlabeled=2, slices_per_subject=1)
RECORDS = ("README.txt", "demo_manifest.json")  # the two files that describe the pool when it is written


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("demo_other")
    out = {}
    for name, extra in (("on", {}), ("again", {"n_other_modality": 2}), ("off", {"n_other_modality": 0})):
        paths = make_demo_data(root / name, **KW, **extra)
        out[name] = (root / name, paths)
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "demo_manifest.json").read_text())


def test_pool_exists(runs) -> None:
    folder, paths = runs["on"]
    rows = load_datalist(paths["other_modality"], "unlabeled")  # files checked
    assert len(rows) == 2, "default size: the unlabeled pool's"
    assert all(Path(r["image"]).parent == folder / "other_modality" and r["modality"] == OTHER_MODALITY for r in rows)
    unlabeled = load_datalist(paths["unlabeled"], "unlabeled")
    assert {r["patient_id"] for r in rows}.isdisjoint(e["patient_id"] for e in unlabeled)
    man = _manifest(folder)
    assert man["other_modality"]["n_other_modality"] == 2
    assert {"other_modality.json", "other_modality/oth-000_T2w.nii.gz", "other_modality/oth-001_T2w.nii.gz"} <= set(
        man["files"]
    )
    readme = (folder / "README.txt").read_text()
    assert "other_modality.json" in readme and "T2-like" in readme
    img = nib.load(rows[0]["image"])
    assert img.shape == (24, 24, 24) and np.allclose(img.affine, nib.load(unlabeled[0]["image"]).affine)


def test_deterministic(runs) -> None:
    assert _manifest(runs["on"][0])["files"] == _manifest(runs["again"][0])["files"]


def test_other_files_unchanged(runs) -> None:
    """Every file of a run without the pool is byte-identical in a run with it (README and manifest aside)."""
    off, on = _manifest(runs["off"][0]), _manifest(runs["on"][0])
    assert "other_modality" not in off and "other_modality" not in runs["off"][1]
    assert not (runs["off"][0] / "other_modality").exists()
    assert "other_modality" not in (runs["off"][0] / "README.txt").read_text()
    kept = {k: v for k, v in on["files"].items() if not k.startswith("other_modality") and k not in RECORDS}
    assert kept == {k: v for k, v in off["files"].items() if k not in RECORDS}
    for k in off["files"]:
        if k not in RECORDS:
            assert (runs["on"][0] / k).read_bytes() == (runs["off"][0] / k).read_bytes(), k


def test_contrast_differs_from_t1(runs) -> None:
    """T1w: white matter brighter than grey matter; the second modality: grey matter brighter than white matter.
    The written file is the simulation of that subject, whose tissue labels give the comparison."""
    folder, _ = runs["on"]
    anat = load_anatomy(KW["size"])
    ratios = {"T1w": [], "T2w": []}
    for j in range(2):
        t2 = simulate_subject(anat, KW["seed"], j, other_modality_site_params(KW["seed"], KW["n_sites"])[j % 2], False,
                              pool="other_modality", modality="T2w")  # fmt: skip
        on_disk = np.asarray(nib.load(folder / "other_modality" / f"oth-{j:03d}_T2w.nii.gz").dataobj)
        np.testing.assert_array_equal(on_disk, t2["image"])
        t1 = simulate_subject(anat, KW["seed"], j, site_params(KW["seed"], KW["n_sites"])[j % 2], False,
                              pool="unlabeled")  # fmt: skip
        on_disk = np.asarray(nib.load(folder / "unlabeled" / f"unl-{j:03d}_T1w.nii.gz").dataobj)
        np.testing.assert_array_equal(on_disk, t1["image"])
        for mod, sim in (("T1w", t1), ("T2w", t2)):
            img, tissue = sim["image"], sim["tissue"]
            ratios[mod].append(float(np.median(img[tissue == 3]) / np.median(img[tissue == 2])))
    assert min(ratios["T1w"]) > 1.1 and max(ratios["T2w"]) < 1.0, ratios


def test_invalid_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_other_modality"):
        make_demo_data(tmp_path / "x", n_subjects=1, size=16, n_unlabeled=0, n_other_modality=-1)


def test_cli_flag(tmp_path: Path) -> None:
    from monai_transfer.cli import main

    args = ["data", "demo", "--subjects", "2", "--sites", "1", "--size", "16", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a"), "--other-modality", "1"]) == 0
    assert len(load_datalist(tmp_path / "a" / "other_modality.json", "unlabeled")) == 1
    assert main([*args, "--out", str(tmp_path / "b"), "--other-modality", "0"]) == 0
    assert not (tmp_path / "b" / "other_modality.json").exists()
