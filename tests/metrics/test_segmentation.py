"""Segmentation metrics: per-case shapes, identity, spacing, one-hot and torch inputs, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_transfer.metrics.segmentation import (
    dice_per_case,
    hd95_per_case,
    segmentation_metrics,
    surface_dice_per_case,
)


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
