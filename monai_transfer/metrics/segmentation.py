"""Segmentation metrics, one value per case and class, so that statistics can bootstrap over cases.

* :func:`dice_per_case` — Dice per case and class (:class:`monai.metrics.DiceMetric`).
* :func:`hd95_per_case` — 95th-percentile Hausdorff distance in mm (``compute_hausdorff_distance(percentile=95)``).
* :func:`surface_dice_per_case` — normalised surface Dice (NSD) at a tolerance in mm (``compute_surface_dice``),
  Nikolov et al. 2021, "Clinically applicable segmentation of head and neck anatomy for radiotherapy".
* :func:`segmentation_metrics` — the three together with per-class means.

Segmentations are label maps ``(B, *spatial)`` / ``(B, 1, *spatial)`` of integers or one-hot ``(B, C, *spatial)``
(MONAI's channel-first layout; 2D ``(B, H, W)`` label maps also work). Shape and label mismatches raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance, compute_surface_dice
from monai.networks.utils import one_hot

from monai_transfer.metrics.inputs import as_numpy, nanmean

__all__ = ["as_one_hot", "dice_per_case", "hd95_per_case", "surface_dice_per_case", "segmentation_metrics"]


def as_one_hot(seg: Any, num_classes: int | None = None, name: str = "segmentation") -> torch.Tensor:
    """Turn a label map ``(B, 1, *spatial)`` (or a 2D ``(B, H, W)``) or a one-hot ``(B, C, *spatial)`` into one-hot.

    MONAI's channel-first convention: a tensor with one channel is a label map and needs ``num_classes``; one with
    several channels must be one-hot (0/1) and match ``num_classes`` when given. Labels outside
    ``[0, num_classes)`` and non-integer labels raise ``ValueError``.
    """
    t = torch.as_tensor(as_numpy(seg))
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim not in (4, 5):
        raise ValueError(
            f"{name}: expected (B, 1, *spatial) label maps or (B, C, *spatial) one-hot with 2 or 3 spatial dims, "
            f"got shape {tuple(t.shape)}"
        )
    if t.shape[1] > 1:
        if num_classes is not None and t.shape[1] != num_classes:
            raise ValueError(f"{name}: {t.shape[1]} channels do not match num_classes={num_classes}")
        if not torch.all((t == 0) | (t == 1)):
            raise ValueError(f"{name}: a multi-channel input must be one-hot (0/1 values)")
        return t.float()
    if num_classes is None:
        raise ValueError(f"{name}: give num_classes for a label map")
    if torch.is_floating_point(t) and not torch.all(t == t.round()):
        raise ValueError(f"{name}: a label map must hold integers")
    t = t.long()
    if t.min() < 0 or t.max() >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, {num_classes - 1}], found [{int(t.min())}, {int(t.max())}]")
    return one_hot(t, num_classes=num_classes, dim=1).float()


def _pair(y_pred: Any, y: Any, num_classes: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    p, g = as_one_hot(y_pred, num_classes, "y_pred"), as_one_hot(y, num_classes, "y")
    if p.shape != g.shape:
        raise ValueError(f"prediction and label shapes differ after one-hot: {tuple(p.shape)} vs {tuple(g.shape)}")
    return p, g


def dice_per_case(y_pred: Any, y: Any, num_classes: int | None = None, include_background: bool = False) -> np.ndarray:
    """Dice per case and class, shape ``(B, C)`` (``C - 1`` without background). NaN where the label and the
    prediction are both empty for a class (MONAI's ``ignore_empty``)."""
    p, g = _pair(y_pred, y, num_classes)
    metric = DiceMetric(include_background=include_background, reduction="none", ignore_empty=True)
    return metric(p, g).cpu().numpy().astype(np.float64)


def hd95_per_case(
    y_pred: Any,
    y: Any,
    num_classes: int | None = None,
    spacing: Sequence[float] | float | None = None,
    include_background: bool = False,
) -> np.ndarray:
    """95th-percentile symmetric Hausdorff distance per case and class, in mm when ``spacing`` is given (voxels
    otherwise), shape ``(B, C)``; NaN/inf where a structure is missing from the prediction or the label."""
    p, g = _pair(y_pred, y, num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = compute_hausdorff_distance(p, g, include_background=include_background, percentile=95, spacing=spacing)
    return v.cpu().numpy().astype(np.float64)


def surface_dice_per_case(
    y_pred: Any,
    y: Any,
    tolerance_mm: float | Sequence[float] = 1.0,
    num_classes: int | None = None,
    spacing: Sequence[float] | float | None = None,
    include_background: bool = False,
) -> np.ndarray:
    """Normalised surface Dice (NSD) per case and class at ``tolerance_mm`` (one value or one per class), ``(B, C)``.

    Nikolov et al. 2021, "Clinically applicable segmentation of head and neck anatomy for radiotherapy: deep learning
    algorithm development and validation study" (JMIR). Built on :func:`monai.metrics.compute_surface_dice`.
    """
    p, g = _pair(y_pred, y, num_classes)
    n_cls = p.shape[1] - (0 if include_background else 1)
    tol = [float(tolerance_mm)] * n_cls if np.isscalar(tolerance_mm) else [float(t) for t in tolerance_mm]
    if len(tol) != n_cls:
        raise ValueError(f"tolerance_mm needs {n_cls} values (one per class), got {len(tol)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = compute_surface_dice(p, g, class_thresholds=tol, include_background=include_background, spacing=spacing)
    return v.cpu().numpy().astype(np.float64)


def segmentation_metrics(
    y_pred: Any,
    y: Any,
    num_classes: int | None = None,
    spacing: Sequence[float] | float | None = None,
    tolerance_mm: float = 1.0,
    include_background: bool = False,
) -> dict[str, Any]:
    """Dice, HD95 and NSD per case and class, with per-class and overall means (NaN/inf values left out of means).

    Returns:
        ``dice``, ``hd95``, ``nsd``: per-case arrays ``(B, C)``; ``dice_per_class`` etc.: lists of class means;
        ``dice_mean``, ``hd95_mean``, ``nsd_mean``: scalars; ``dice_case_mean`` etc.: per-case means over classes
        ``(B,)`` (the values to bootstrap over cases).
    """
    out: dict[str, Any] = {
        "dice": dice_per_case(y_pred, y, num_classes, include_background),
        "hd95": hd95_per_case(y_pred, y, num_classes, spacing, include_background),
        "nsd": surface_dice_per_case(y_pred, y, tolerance_mm, num_classes, spacing, include_background),
    }
    for k in ("dice", "hd95", "nsd"):
        v = np.where(np.isfinite(out[k]), out[k], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[f"{k}_per_class"] = [float(x) for x in np.nanmean(v, axis=0)]
            out[f"{k}_case_mean"] = np.nanmean(v, axis=1)
        out[f"{k}_mean"] = nanmean(v)
    return out
