"""``lesion_scale`` of the demo data: 1 writes exactly the files written without it; a larger scale gives larger
lesions in the same subjects (and only there); it is recorded; a non-positive scale is refused."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest

from monai_transfer.data.demo import make_demo_data

pytest.importorskip("nilearn")

KW = dict(n_subjects=6, n_sites=2, size=24, lesion_prevalence=0.5, seed=3, n_unlabeled=1, n_other_modality=0,
          slices_per_subject=1)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo_lesion_scale")
    out = {}
    for name, extra in (("default", {}), ("one", {"lesion_scale": 1.0}), ("three", {"lesion_scale": 3.0})):
        make_demo_data(root / name, **KW, **extra)
        out[name] = root / name
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "demo_manifest.json").read_text())


def test_scale_one_is_byte_identical_to_the_default(runs) -> None:
    for rel in _manifest(runs["default"])["files"]:
        assert (runs["default"] / rel).read_bytes() == (runs["one"] / rel).read_bytes(), rel
    assert (runs["default"] / "demo_manifest.json").read_bytes() == (runs["one"] / "demo_manifest.json").read_bytes()


def test_larger_scale_grows_the_same_subjects_lesions(runs) -> None:
    dl = json.loads((runs["three"] / "lesion_cls_3d.json").read_text())
    cases = [c for section in ("training", "validation", "test") for c in dl[section]]
    grown = 0
    for c in cases:
        small = nib.load(runs["default"] / c["lesion_mask"]).get_fdata() > 0
        large = nib.load(runs["three"] / c["lesion_mask"]).get_fdata() > 0
        assert small.any() == large.any() == bool(c["label"])  # same subjects have lesions
        if c["label"]:
            assert large.sum() > small.sum()
            grown += 1
    assert grown == 3
    assert _manifest(runs["three"])["params"]["lesion_scale"] == 3.0
    assert "lesion_scale" not in _manifest(runs["default"])["params"]


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_non_positive_scale_is_refused(tmp_path: Path, scale: float) -> None:
    with pytest.raises(ValueError, match="lesion_scale must be > 0"):
        make_demo_data(tmp_path / "x", **KW, lesion_scale=scale)
    assert not (tmp_path / "x").exists()  # refused before anything is written
