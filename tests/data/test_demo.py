"""Demo data: determinism, label sanity, lesion prevalence, affines, overwrite guard, DICOM round trip."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.data import list_series, load_series, scan
from monai_transfer.data.datalist import load_datalist
from monai_transfer.data.demo import make_demo_data

pytest.importorskip("nilearn")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "out"
    paths = make_demo_data(out, n_subjects=6, n_sites=2, size=32, lesion_prevalence=0.5, dicom=True, seed=3,
                           n_unlabeled=2, slices_per_subject=2)  # fmt: skip
    return out, paths


def _arr(p: str) -> np.ndarray:
    return np.asarray(nib.load(p).dataobj)


def test_outputs_and_datalists(demo: tuple[Path, dict]) -> None:
    out, paths = demo
    assert "SIMULATION" in (out / "README.txt").read_text()
    seg = load_datalist(paths["tissue_seg_3d"], "training", required_keys=("image", "label"))
    n3 = sum(len(load_datalist(paths["tissue_seg_3d"], k)) for k in ("training", "validation", "test"))
    assert n3 == 6 and {"patient_id", "site", "scanner"} <= set(seg[0])
    n2 = sum(len(load_datalist(paths["tissue_seg_2d"], k)) for k in ("training", "validation", "test"))
    assert n2 == 12
    assert len(load_datalist(paths["unlabeled"], "unlabeled")) == 2
    raw = json.loads(Path(paths["tissue_seg_3d"]).read_text())
    assert raw["labels"]["3"] == "white_matter" and "SIMULATION" in raw["reference"]
    # no patient in two splits, and the 2D task uses the same split
    split3 = {e["patient_id"]: k for k in ("training", "validation", "test") for e in raw[k]}
    raw2 = json.loads(Path(paths["tissue_seg_2d"]).read_text())
    assert all(split3[e["patient_id"]] == k for k in ("training", "validation", "test") for e in raw2[k])


def test_labels_lesions_prevalence_affine(demo: tuple[Path, dict]) -> None:
    out, paths = demo
    cls = [e for k in ("training", "validation", "test") for e in load_datalist(paths["lesion_cls_3d"], k)]
    assert sum(e["label"] for e in cls) == 3  # round(0.5 * 6)
    for e in cls:
        img = nib.load(e["image"])
        tissue = _arr(e["image"].replace("images", "labels").replace("_T1w", "_tissue"))
        lesion = _arr(e["lesion_mask"])
        assert set(np.unique(tissue)) == {0, 1, 2, 3}
        assert (lesion.sum() > 0) == bool(e["label"])
        assert np.all(tissue[lesion > 0] == 3)  # lesions only inside white matter
        a = img.affine
        assert np.allclose(a, np.diag(np.diag(a))) or np.allclose(a[:3, :3], np.diag(np.diag(a[:3, :3])))
        sp = np.diag(a)[:3]
        assert np.allclose(sp, sp[0]) and 4 < sp[0] < 7  # a 32^3 cube over the brain: ~5.5 mm voxels
        # the volume centre lies near the MNI origin region (brain centre), in RAS mm
        centre = a @ np.array([15.5, 15.5, 15.5, 1.0])
        assert np.all(np.abs(centre[:3] - np.array([0, -18, 8])) < 25)
        img_arr = img.get_fdata()
        assert img_arr[tissue == 3].mean() > img_arr[tissue == 0].mean()
    # 2D slice affine: z offset of the slice
    s = load_datalist(paths["tissue_seg_2d"], "training")[0]
    a2 = nib.load(s["image"]).affine
    a3 = nib.load(cls[0]["image"]).affine
    assert np.allclose(a2[:3, 3], (a3 @ np.array([0, 0, s["slice_index"], 1.0]))[:3])


def test_determinism_and_seed(demo: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = demo
    again = make_demo_data(tmp_path / "a", n_subjects=6, n_sites=2, size=32, lesion_prevalence=0.5, dicom=True,
                           seed=3, n_unlabeled=2, slices_per_subject=2)  # fmt: skip
    m1 = json.loads((out / "demo_manifest.json").read_text())["files"]
    m2 = json.loads(Path(again["manifest"]).read_text())["files"]
    assert m1 == m2  # byte-identical files (NIfTI, DICOM, datalists)
    other = make_demo_data(tmp_path / "b", n_subjects=2, n_sites=2, size=32, seed=4, n_unlabeled=0)
    m3 = json.loads(Path(other["manifest"]).read_text())["files"]
    assert m3["images/sub-000_T1w.nii.gz"] != m1["images/sub-000_T1w.nii.gz"]


def test_overwrite_guard(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_demo_data(tmp_path / "x", n_subjects=1, size=16, n_unlabeled=0)
    assert (tmp_path / "x" / "mine.txt").read_text() == "precious"
    make_demo_data(tmp_path / "y", n_subjects=2, n_sites=1, size=16, n_unlabeled=0)
    make_demo_data(tmp_path / "y", n_subjects=1, n_sites=1, size=16, n_unlabeled=0)  # previous demo: allowed
    assert not (tmp_path / "y" / "images" / "sub-001_T1w.nii.gz").exists()  # stale files of the old run removed


def test_dicom_round_trip(demo: tuple[Path, dict], tmp_path: Path) -> None:
    out, paths = demo
    stats = scan(paths["dicom_root"], tmp_path / "index")
    assert stats.series == 6 and stats.quarantined_series == 0 and stats.quarantined_files == 0
    recs = {r["series_record"]["patient_id_hash"] if "series_record" in r else r["series_key"]: r
            for r in list_series(tmp_path / "index")}  # fmt: skip
    rows = [
        e
        for k in ("training", "validation", "test")
        for e in load_datalist(paths["dicom_series"], k, path_keys=("image", "image_nifti"))
    ]
    by_folder = {}
    for r in recs.values():
        by_folder[str(Path(r["files"][0]).parent)] = r
    for e in rows:
        rec = by_folder[str(Path(e["image"]).resolve())]
        img = load_series(tmp_path / "index", rec["series_key"])
        ref = nib.load(e["image_nifti"])
        ref_arr = ref.get_fdata()
        assert tuple(img.shape) == (1, *ref_arr.shape)
        slope = float(np.ptp(ref_arr)) / 32000 + 1e-3
        np.testing.assert_allclose(img[0].numpy(), ref_arr, atol=slope)
        np.testing.assert_allclose(np.asarray(img.affine), ref.affine, atol=1e-4)
        assert rec["modality"] == "MR"
