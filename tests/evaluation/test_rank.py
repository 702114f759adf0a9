"""rank_backbones end to end on the demo data (2D slices) with two small random-init candidates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_transfer.data import make_demo_data
from monai_transfer.evaluation.rank import load_images, rank_backbones


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_demo_data(tmp_path_factory.mktemp("demo"), n_subjects=8, size=32, n_unlabeled=4, seed=0)


def _pool_slices(datalist: str) -> np.ndarray:
    """Central axial slices of the unlabeled pool volumes, scaled to [0, 1]: the "pretraining data" for the gap."""
    vols, _ = load_images(datalist, 3, "unlabeled", label_key=None)
    sl = vols[..., vols.shape[-1] // 2].numpy()
    return sl / sl.max(axis=(1, 2, 3), keepdims=True)


def test_rank_backbones_demo_end_to_end(demo: dict[str, str], tmp_path) -> None:
    state = torch.random.get_rng_state()
    res = rank_backbones(
        [("resnet10", None), ("resnet18", None)],
        demo["tissue_seg_2d"],
        spatial_dims=2,
        label_key="lesion",
        source_data=_pool_slices(demo["unlabeled"]),
        finetune_results={"resnet10": 0.7, "resnet18": 0.8},
        n_folds=4,
        out_dir=tmp_path,
    )
    assert torch.equal(state, torch.random.get_rng_state())  # no global RNG side effect
    assert [r["rank"] for r in res.rows] == [1, 2] and res.n_samples == 32
    assert {r["candidate"] for r in res.rows} == {"resnet10", "resnet18"}
    for r in res.rows:
        assert 0 <= r["knn"] <= 1 and 0 <= r["linear_probe"] <= 1 and np.isfinite(r["logme"])
        assert r["frechet"] >= 0 and np.isfinite(r["mmd"]) and r["finetuned"] in (0.7, 0.8)
    assert res.rows[0]["logme"] >= res.rows[1]["logme"]
    assert set(res.correlations) == {"knn", "linear_probe", "logme"}
    assert res.correlations["logme"]["n"] == 2
    saved = json.loads((tmp_path / "ranking.json").read_text())
    assert saved["rows"][0]["candidate"] == res.rows[0]["candidate"]
    assert "kendall_tau" in res.to_table()


def test_rank_backbones_arrays_and_errors() -> None:
    r = np.random.default_rng(0)
    images = r.normal(size=(12, 1, 16, 16, 16)).astype(np.float32)
    labels = np.arange(12) % 2
    images[labels == 1] += 1.0
    res = rank_backbones([("resnet10", None)], (images, labels), spatial_dims=3, rank_by="knn", n_folds=3)
    assert res.rows[0]["candidate"] == "resnet10" and res.rank_by == "knn"
    with pytest.raises(ValueError, match="rank_by"):
        rank_backbones([("resnet10", None)], (images, labels), spatial_dims=3, rank_by="nope")
    with pytest.raises(ValueError, match="two classes"):
        rank_backbones([("resnet10", None)], (images, np.zeros(12)), spatial_dims=3)


def test_scores_on_few_samples_are_flagged_and_mmd_is_not_negative() -> None:
    # issue 12: kNN and linear probes cross-validated on 6 samples were reported without a word, MMD as -0.136
    r = np.random.default_rng(0)
    images = r.normal(size=(6, 1, 16, 16)).astype(np.float32)
    labels = np.arange(6) % 2
    source = r.normal(size=(6, 1, 16, 16)).astype(np.float32)
    with pytest.warns(UserWarning, match="6 target cases"):
        res = rank_backbones([("resnet10", None)], (images, labels), spatial_dims=2, n_folds=3, source_data=source)
    assert res.too_few_samples and any("6 target cases" in w for w in res.warnings)
    assert res.to_dict()["too_few_samples"] is True and "6 target cases" in res.to_table()
    assert res.rows[0]["mmd"] >= 0  # same distribution: the V-statistic is >= 0 (the U-statistic can dip below)
    assert "V-statistic" in res.to_table()


def test_candidates_with_one_file_name_get_distinct_labels() -> None:
    # issue 12: two candidates named encoder.pt got the same label (and so one row of fine-tuning results)
    from monai_transfer.evaluation.rank import candidate_labels

    cands = [("resnet18", "runs/ssl_a/encoder.pt"), ("resnet18", "runs/ssl_b/encoder.pt"), ("resnet18", None)]
    assert candidate_labels(cands) == ["resnet18:ssl_a/encoder.pt", "resnet18:ssl_b/encoder.pt", "resnet18"]
    assert candidate_labels([("resnet18", "a/x.pt"), ("resnet10", "b/x.pt")]) == ["resnet18:x.pt", "resnet10:x.pt"]
    with pytest.raises(ValueError, match="more than once"):
        candidate_labels([("resnet18", "a/x.pt"), ("resnet18", "a/x.pt")])


def test_missing_candidate_checkpoint_fails_before_any_work(tmp_path) -> None:
    images, labels = np.zeros((4, 1, 8, 8), np.float32), np.arange(4) % 2
    with pytest.raises(FileNotFoundError, match="candidate resnet10:.*encoder.pt does not exist"):
        rank_backbones([("resnet10", None), ("resnet10", str(tmp_path / "encoder.pt"))], (images, labels), 2)
    with pytest.raises(KeyError, match="resnet1"):
        rank_backbones([("resnet1", None)], (images, labels), 2)


def test_unreadable_or_non_finite_images_are_named(tmp_path) -> None:
    # issue 12: a truncated NIfTI gave MONAI's "applying transform" traceback, a NaN image "SVD did not converge"
    import nibabel as nib

    from monai_transfer.cli import main

    entries = []
    for i in range(4):
        path = tmp_path / f"img{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.random.default_rng(i).normal(size=(16, 16)).astype(np.float32), np.eye(4)), path)
        entries.append({"image": str(path), "label": i % 2})
    nan = np.ones((16, 16), np.float32)
    nan[3, 4] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes((tmp_path / "img0.nii.gz").read_bytes()[:200])
    for bad, reason in ((truncated, "cannot be read as an image"), (tmp_path / "nan.nii.gz", "NaN or infinite")):
        rows = [*entries, {"image": str(bad), "label": 1}]
        with pytest.raises(ValueError, match=reason) as info:
            rank_backbones([("resnet10", None)], rows, spatial_dims=2)
        assert str(bad) in str(info.value) and len(str(info.value).splitlines()) == 1
    dl = tmp_path / "dl.json"
    dl.write_text(json.dumps({"training": [*entries, {"image": str(truncated), "label": 1}]}))
    assert main(["rank", "--candidate", "resnet10", "--data", str(dl), "--spatial-dims", "2", "--quiet"]) == 2


def test_each_candidate_gets_its_recorded_intensity_mapping(tmp_path) -> None:
    # issue 9: every candidate saw the same 0.5-99.5 percentile scaling, whatever its starting point was trained on
    import nibabel as nib

    from monai_transfer.cli import main
    from monai_transfer.networks import create_backbone
    from monai_transfer.weights import Provenance, save_pretrained

    entries = []
    for i in range(8):
        img = np.random.default_rng(i).normal(100.0 + 50.0 * (i % 2), 30.0, size=(16, 16)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / f"img{i}.nii.gz")
        entries.append({"image": str(tmp_path / f"img{i}.nii.gz"), "label": i % 2})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the random init rank_backbones draws for seed 0: same weights, only the mapping differs
        net = create_backbone("resnet10", 2, 1)
    imagenet = {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    ckpt = save_pretrained(net, tmp_path / "ssl" / "encoder.pt", Provenance(preprocessing={"intensity": imagenet}))
    cands = [("resnet10", None), ("resnet10", str(ckpt))]
    with pytest.warns(UserWarning, match="8 target cases"):
        res = rank_backbones(cands, entries, spatial_dims=2, n_folds=2)
    rows = {r["pretrained"]: r for r in res.rows}
    assert rows[None]["intensity_source"] == "default" and rows[None]["intensity"].startswith("percentile(")
    assert rows[str(ckpt)]["intensity_source"] == "starting point" and rows[str(ckpt)]["intensity_spec"] == imagenet
    assert rows[None]["logme"] != pytest.approx(rows[str(ckpt)]["logme"])  # same weights: the mapping made it
    table = res.to_table()
    assert "resnet10:encoder.pt: imagenet(" in table and "(starting point)" in table and "(default)" in table
    assert json.loads(json.dumps(res.to_dict()))["rows"][0]["intensity_source"] in ("default", "starting point")

    # a user override applies to all, and where it departs from a recorded mapping it is warned about and recorded
    with pytest.warns(UserWarning, match="overrides the mapping its starting point records"):
        res = rank_backbones(cands, entries, spatial_dims=2, n_folds=2, intensity={"name": "minmax"})
    rows = {r["pretrained"]: r for r in res.rows}
    assert {r["intensity_source"] for r in res.rows} == {"user"}
    assert rows[str(ckpt)]["intensity_recorded"].startswith("imagenet(") and "intensity_recorded" not in rows[None]
    assert rows[None]["logme"] == pytest.approx(rows[str(ckpt)]["logme"])  # same weights, same mapping

    # arrays passed directly are used as given
    images, labels = load_images(entries, 2, label_key="label")
    res = rank_backbones(cands[1:], (images, labels), spatial_dims=2, n_folds=2)
    assert res.rows[0]["intensity_source"] == "given"

    dl = tmp_path / "dl.json"
    dl.write_text(json.dumps({"training": entries}))
    argv = ["rank", "--candidate", f"resnet10:{ckpt}", "--data", str(dl), "--spatial-dims", "2"]
    argv += ["--quiet", "--intensity", "range", "--intensity-arg", "a_min=0", "a_max=300", "--out", str(tmp_path / "r")]
    with pytest.warns(UserWarning, match="overrides"):
        assert main(argv) == 0
    saved = json.loads((tmp_path / "r" / "ranking.json").read_text())
    assert saved["rows"][0]["intensity_spec"] == {"name": "range", "a_min": 0, "a_max": 300}
