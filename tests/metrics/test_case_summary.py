"""Per-case records -> metrics with bootstrap intervals (what ``monai-transfer evaluate`` prints)."""

from __future__ import annotations

import numpy as np
import pytest

from monai_transfer.metrics import classification_metrics, summarize_cases


def test_segmentation_summary_matches_direct_means():
    dice = np.array([[0.5, 0.7, np.nan], [0.2, 0.4, 0.6], [0.9, 0.8, 0.7]])
    s = summarize_cases([{"dice": list(d)} for d in dice], n_resamples=300)
    assert s["dice_per_class"] == pytest.approx(np.nanmean(dice, axis=0).tolist())
    assert s["mean_dice"] == pytest.approx(np.mean(np.nanmean(dice, axis=1)))
    ci = s["mean_dice_ci95"]
    assert ci["low"] <= s["mean_dice"] <= ci["high"] and ci["n_cases"] == 3


def test_segmentation_summary_includes_boundary_metrics_when_recorded():
    cases = [
        {"dice": [0.5, 0.6], "hd95_voxels": [2.0, float("nan")], "surface_dice_1voxel": [0.7, 0.9]},
        {"dice": [0.7, 0.8], "hd95_voxels": [4.0, 6.0], "surface_dice_1voxel": [0.5, 0.3]},
    ]
    s = summarize_cases(cases, n_resamples=200)
    assert s["hd95_voxels_per_class"] == pytest.approx([3.0, 6.0])
    assert s["mean_hd95_voxels"] == pytest.approx(np.mean([2.0, 5.0]))  # per case: NaN classes left out
    assert s["mean_surface_dice"] == pytest.approx(0.6)
    assert "mean_surface_dice_ci95" in s


def test_classification_summary_matches_metrics_and_is_deterministic():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 40)
    p = np.clip(labels * 0.3 + rng.random(40) * 0.7, 0, 1)
    cases = [{"label": int(y), "prob": [1 - q, q]} for y, q in zip(labels, p)]
    a = summarize_cases(cases, n_resamples=300, seed=0)
    b = summarize_cases(cases, n_resamples=300, seed=0)
    direct = classification_metrics(labels, np.stack([1 - p, p], axis=1))
    for key in ("auroc", "accuracy", "balanced_accuracy", "ece"):  # no threshold given: the argmax rule, 0.5
        assert a[key] == pytest.approx(direct[key])
    sklearn = pytest.importorskip("sklearn.metrics")
    assert a["auprc"] == pytest.approx(sklearn.average_precision_score(labels, p))  # of the positive class
    assert a["f1"] == pytest.approx(sklearn.f1_score(labels, p >= 0.5))
    assert a["auroc_ci95"] == b["auroc_ci95"]
    assert a["auroc_ci95"]["low"] <= a["auroc"] <= a["auroc_ci95"]["high"]
    assert a["auroc_ci95"]["high"] - a["auroc_ci95"]["low"] > 0.01  # 40 cases cannot pin AUROC down


def test_one_class_has_no_auroc_interval_and_bad_records_raise():
    s = summarize_cases([{"label": 1, "prob": [0.2, 0.8]}] * 5, n_resamples=100)
    assert "auroc_ci95" not in s
    with pytest.raises(ValueError, match="need 'dice' or 'label' and 'prob'"):
        summarize_cases([{"score": 1}])


def test_cases_of_few_patients_are_resampled_by_patient_and_flagged():
    # 8 slices of 2 patients (the example): the interval rests on 2 independent units, and says so
    rng = np.random.default_rng(0)
    cases = [{"index": i, "label": i % 2, "prob": [0.3, 0.7] if i % 2 else [0.6, 0.4]} for i in range(8)]
    rows = [{"image": f"/data/p{i // 4}_z{i}.nii.gz", "patient_id": f"p{i // 4}"} for i in range(8)]
    from monai_transfer.data.case_ids import attach_ids

    cases = attach_ids(cases, rows)
    assert [c["patient_id"] for c in cases] == [r["patient_id"] for r in rows]
    assert cases[0]["id"] == "p0_z0.nii.gz"  # the file name, no local path
    with pytest.warns(UserWarning, match="2 independent units"):
        s = summarize_cases(cases, n_resamples=200)
    ci = s["accuracy_ci95"]
    assert ci["n_cases"] == 8 and ci["n_units"] == 2 and ci["unit"] == "patient_id"
    assert any("2 independent units" in w for w in s["warnings"])
    # dice records too; one slice per patient: plain case resampling, units = cases
    seg = [{"index": i, "dice": [float(v)]} for i, v in enumerate(rng.random(12))]
    seg = attach_ids(seg, [{"image": f"x{i}.nii", "patient_id": f"q{i}"} for i in range(12)])
    s = summarize_cases(seg, n_resamples=200)
    assert s["mean_dice_ci95"]["n_units"] == 12 and s["mean_dice_ci95"]["unit"] == "case" and not s["warnings"]
    with pytest.raises(ValueError, match="rows"):
        attach_ids(seg, rows)
