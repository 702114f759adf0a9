"""Classification and segmentation metrics: known values, sklearn agreement, per-case shapes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_transfer.evaluation.calibration import expected_calibration_error, reliability_curve
from monai_transfer.evaluation.metrics import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    classification_metrics,
    dice_per_case,
    f1_macro,
    hd95_per_case,
    segmentation_metrics,
    surface_dice_per_case,
)

try:
    import sklearn.metrics as skm
except ImportError:  # pragma: no cover - scikit-learn is optional, only a reference here
    skm = None


def _multiclass(n: int = 60, c: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = np.arange(n) % c
    s = r.dirichlet(np.ones(c), n)
    s[np.arange(n), y] += 0.3 * r.random(n)
    return y, s / s.sum(1, keepdims=True)


def test_auroc_known_values() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == pytest.approx(1.0)
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.skipif(skm is None, reason="scikit-learn not installed")
def test_classification_agrees_with_sklearn() -> None:
    y, s = _multiclass()
    per = auroc(y, s, average=None)
    onehot = np.eye(3)[y]
    ref = [skm.roc_auc_score(onehot[:, c], s[:, c]) for c in range(3)]
    np.testing.assert_allclose(per, ref, atol=1e-9)
    np.testing.assert_allclose(
        average_precision(y, s, average=None),
        [skm.average_precision_score(onehot[:, c], s[:, c]) for c in range(3)],
        atol=1e-9,
    )
    pred = s.argmax(1)
    assert accuracy(y, s) == pytest.approx(skm.accuracy_score(y, pred))
    assert balanced_accuracy(y, s) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert f1_macro(y, s) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    # binary
    yb, sb = (y == 1).astype(int), s[:, 1]
    assert f1_macro(yb, sb) == pytest.approx(skm.f1_score(yb, sb >= 0.5))
    assert balanced_accuracy(yb, sb) == pytest.approx(skm.balanced_accuracy_score(yb, sb >= 0.5))
    # multi-label
    r = np.random.default_rng(1)
    yl = r.integers(0, 2, (50, 4))
    sl = np.clip(yl * 0.3 + r.random((50, 4)) * 0.7, 0, 1)
    np.testing.assert_allclose(auroc(yl, sl, average=None), skm.roc_auc_score(yl, sl, average=None), atol=1e-9)
    assert auroc(yl, sl) == pytest.approx(skm.roc_auc_score(yl, sl, average="macro"))
    assert f1_macro(yl, sl) == pytest.approx(skm.f1_score(yl, sl >= 0.5, average="macro"))


def test_classification_metrics_keys_and_tasks() -> None:
    y, s = _multiclass()
    m = classification_metrics(y, s)
    assert m["task"] == "multiclass" and len(m["auroc_per_class"]) == 3
    assert 0.5 < m["auroc"] <= 1 and 0 <= m["ece"] <= 1
    mb = classification_metrics((y == 0).astype(int), s[:, 0])
    assert mb["task"] == "binary" and len(mb["auroc_per_class"]) == 1
    # a class absent from y_true gives NaN for that class and is left out of the mean
    per = auroc(np.array([0, 1, 0, 1]), np.eye(3)[[0, 1, 0, 1]] * 0.8 + 0.05, average=None)
    assert np.isnan(per[2]) and per[0] == 1.0


@pytest.mark.parametrize(
    "y,s,msg",
    [
        ([0, 1, 2], [0.1, 0.2], "same number"),
        ([0, 3, 1], np.full((3, 3), 1 / 3), r"integers in \[0, 2\]"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1"),
        (np.zeros((3, 2)), np.zeros((3, 3)), "multilabel"),
    ],
)
def test_classification_errors(y: object, s: object, msg: str) -> None:
    task = "multilabel" if msg == "multilabel" else None
    with pytest.raises(ValueError, match=msg):
        auroc(y, s, task=task)


def test_ece_known_values_and_reliability() -> None:
    # perfectly calibrated in each bin: confidence 0.8, 4 of 5 correct -> ECE 0
    y = np.array([1, 1, 1, 1, 0])
    p = np.full(5, 0.8)
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.0)
    # overconfident: confidence 0.9, half correct -> |0.5 - 0.9| = 0.4
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error([0, 1, 1, 0], probs, n_bins=15) == pytest.approx(0.4)
    # two bins: hand-worked weighted mean
    conf = np.array([0.15, 0.15, 0.95, 0.95])
    y2 = np.array([0, 1, 1, 1])  # binary: positive-class frequency per bin
    expected = 0.5 * abs(0.5 - 0.15) + 0.5 * abs(1.0 - 0.95)
    assert expected_calibration_error(y2, conf, n_bins=10) == pytest.approx(expected)
    r = reliability_curve(conf, y2, n_bins=10)
    assert r["count"].sum() == 4 and r["count"][1] == 2 and r["count"][9] == 2
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([0, 1], [-1.0, 2.0])


def _spheres(shape: tuple[int, ...], centres: list[tuple[float, ...]], radius: float) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    lab = np.zeros(shape, dtype=np.int64)
    for i, c in enumerate(centres, start=1):
        d = np.sqrt(sum((grid[k] - c[k]) ** 2 for k in range(len(shape))))
        lab[d <= radius] = i
    return lab


@pytest.mark.parametrize("spatial", [(32, 32), (20, 20, 20)])
def test_segmentation_per_case_and_identity(spatial: tuple[int, ...]) -> None:
    nd = len(spatial)
    a = _spheres(spatial, [(6,) * nd, (14,) * nd], 4)
    b = _spheres(spatial, [(7,) * nd, (14,) * nd], 4)
    y = np.stack([a, a])[:, None]
    p = np.stack([a, b])[:, None]
    m = segmentation_metrics(p, y, num_classes=3, spacing=(1.0,) * nd, tolerance_mm=1.0)
    assert m["dice"].shape == (2, 2) and m["hd95"].shape == (2, 2) and m["nsd"].shape == (2, 2)
    np.testing.assert_allclose(m["dice"][0], 1.0)
    np.testing.assert_allclose(m["hd95"][0], 0.0)
    np.testing.assert_allclose(m["nsd"][0], 1.0)
    assert m["dice"][1, 0] < 1 and m["dice"][1, 1] == pytest.approx(1.0)
    assert 1.0 <= m["hd95"][1, 0] <= np.sqrt(nd) + 1e-3  # shifted by one voxel along every axis
    assert m["dice_case_mean"].shape == (2,)


def test_hd95_and_nsd_use_spacing() -> None:
    a = _spheres((32, 32), [(12, 12)], 6)
    b = np.roll(a, 2, axis=0)
    h1 = hd95_per_case(b[None, None], a[None, None], num_classes=2, spacing=(1.0, 1.0))
    h2 = hd95_per_case(b[None, None], a[None, None], num_classes=2, spacing=(2.0, 1.0))
    assert h1[0, 0] == pytest.approx(2.0) and 2.0 < h2[0, 0] <= 4.0 + 1e-6  # a shift of 2 voxels of 2 mm along x
    n_tight = surface_dice_per_case(b[None, None], a[None, None], 1.0, num_classes=2, spacing=(1.0, 1.0))
    n_loose = surface_dice_per_case(b[None, None], a[None, None], 3.0, num_classes=2, spacing=(1.0, 1.0))
    assert n_tight[0, 0] < n_loose[0, 0] == pytest.approx(1.0)


def test_segmentation_accepts_one_hot_and_torch() -> None:
    a = _spheres((16, 16), [(8, 8)], 4)
    oh = torch.nn.functional.one_hot(torch.as_tensor(a), 2).permute(2, 0, 1)[None]
    np.testing.assert_allclose(dice_per_case(oh, a[None, None], num_classes=2), [[1.0]])
    np.testing.assert_allclose(dice_per_case(torch.as_tensor(a)[None], a[None], num_classes=2), [[1.0]])


@pytest.mark.parametrize(
    "pred,label,kw,msg",
    [
        (np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 9)), {"num_classes": 2}, "shapes differ"),
        (np.full((1, 1, 8, 8), 3), np.zeros((1, 1, 8, 8)), {"num_classes": 2}, r"labels must lie in \[0, 1\]"),
        (np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)), {}, "num_classes"),
        (np.zeros((1, 3, 8, 8)), np.zeros((1, 1, 8, 8)), {"num_classes": 2}, "channels do not match"),
        (np.zeros((8, 8)), np.zeros((8, 8)), {"num_classes": 2}, "expected"),
    ],
)
def test_segmentation_errors(pred: np.ndarray, label: np.ndarray, kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        dice_per_case(pred, label, **kw)
