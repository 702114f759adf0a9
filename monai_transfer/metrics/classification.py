"""Classification and segmentation metrics that return per-case values for bootstrapping.

Classification (one score per case, dataset-level metrics):

* :func:`auroc` — area under the ROC curve, one-vs-rest per class (multi-class) or per label (multi-label), built on
  :func:`monai.metrics.compute_roc_auc`.
* :func:`average_precision` — area under the precision-recall curve (AUPRC, average precision), per class, built on
  :func:`monai.metrics.compute_average_precision`.
* :func:`accuracy`, :func:`balanced_accuracy` (mean per-class recall), :func:`f1_macro`.
* :func:`classification_metrics` — all of the above plus the expected calibration error
  (:func:`monai_transfer.evaluation.calibration.expected_calibration_error`, Guo et al. 2017).

Segmentation (one value per case and class, so statistics can bootstrap over cases):

* :func:`dice_per_case` — Dice per case and class (:class:`monai.metrics.DiceMetric`).
* :func:`hd95_per_case` — 95th-percentile Hausdorff distance in mm (``compute_hausdorff_distance(percentile=95)``).
* :func:`surface_dice_per_case` — normalised surface Dice (NSD) at a tolerance in mm (``compute_surface_dice``),
  Nikolov et al. 2021, "Clinically applicable segmentation of head and neck anatomy for radiotherapy".
* :func:`segmentation_metrics` — the three together with per-class means.

Conventions: ``y_true`` holds integer class indices ``(N,)`` for binary/multi-class tasks or a binary indicator
matrix ``(N, C)`` for multi-label tasks; ``y_score`` holds probabilities or scores ``(N,)`` (binary: score of the
positive class) or ``(N, C)``. Segmentations are label maps ``(B, *spatial)`` / ``(B, 1, *spatial)`` of integers or
one-hot ``(B, C, *spatial)`` (MONAI's channel-first layout; 2D ``(B, H, W)`` label maps also work). Shape and label
mismatches raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import (
    DiceMetric,
    compute_average_precision,
    compute_hausdorff_distance,
    compute_roc_auc,
    compute_surface_dice,
)
from monai.networks.utils import one_hot

__all__ = [
    "infer_task",
    "auroc",
    "average_precision",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "predicted_labels",
    "classification_metrics",
    "as_one_hot",
    "dice_per_case",
    "hd95_per_case",
    "surface_dice_per_case",
    "segmentation_metrics",
]

TASKS = ("binary", "multiclass", "multilabel")


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def infer_task(y_true: Any, y_score: Any) -> str:
    """Guess the task from shapes: ``(N,)`` scores are binary, ``(N, C)`` with 2-D labels multi-label, else multi-class."""
    y, s = _np(y_true), _np(y_score)
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1):
        return "binary"
    if y.ndim == 2 and y.shape == s.shape:
        return "multilabel"
    return "multiclass"


def _check_classification(y_true: Any, y_score: Any, task: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Validate and return ``(targets (N, C) in {0,1}, scores (N, C), task)``; binary gives C = 1."""
    y, s = _np(y_true), _np(y_score).astype(np.float64)
    task = task or infer_task(y, s)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if y.ndim == 2 and y.shape[1] == 1 and task != "multilabel":
        y = y[:, 0]
    if len(y) != len(s):
        raise ValueError(f"y_true and y_score must have the same number of cases, got {len(y)} and {len(s)}")
    if len(y) == 0:
        raise ValueError("no cases given")
    if not np.all(np.isfinite(s)):
        raise ValueError("y_score contains NaN or infinite values")
    if task == "binary":
        if s.ndim == 2 and s.shape[1] == 2:  # two-column probabilities: keep the positive class
            s = s[:, 1]
        if s.ndim != 1 or y.ndim != 1:
            raise ValueError(f"binary task expects y_true (N,) and y_score (N,), got {y.shape} and {s.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"binary y_true must hold 0/1, got values {np.unique(y)[:10]}")
        return y.astype(np.int64)[:, None], s[:, None], task
    if s.ndim != 2:
        raise ValueError(f"{task} task expects y_score (N, C), got shape {s.shape}")
    n_classes = s.shape[1]
    if task == "multilabel":
        if y.shape != s.shape:
            raise ValueError(f"multilabel y_true must have y_score's shape {s.shape}, got {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("multilabel y_true must be a 0/1 indicator matrix")
        return y.astype(np.int64), s, task
    if y.ndim != 1:
        raise ValueError(f"multiclass y_true must be class indices (N,), got shape {y.shape}")
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"multiclass y_true must hold integers in [0, {n_classes - 1}], got {np.unique(y)[:10]}")
    onehot = np.zeros((len(y), n_classes), dtype=np.int64)
    onehot[np.arange(len(y)), y.astype(np.int64)] = 1
    return onehot, s, task


def _per_class_curve_metric(fn: Any, targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    out = np.full(targets.shape[1], np.nan)
    for c in range(targets.shape[1]):
        t = targets[:, c]
        if t.min() == t.max():  # undefined with one class present
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[c] = float(fn(torch.as_tensor(scores[:, c]), torch.as_tensor(t)))
    return out


def auroc(y_true: Any, y_score: Any, task: str | None = None, average: str | None = "macro") -> float | np.ndarray:
    """Area under the ROC curve, one-vs-rest per class (or per label).

    Args:
        y_true: class indices ``(N,)`` or a multi-label indicator matrix ``(N, C)``.
        y_score: scores ``(N,)`` (binary) or ``(N, C)``.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"``; inferred from shapes when None.
        average: ``"macro"`` (mean over classes with both outcomes present) or None (per-class array; NaN for a class
            that is absent or always present).

    Returns:
        The macro mean, or the per-class values.
    """
    targets, scores, _ = _check_classification(y_true, y_score, task)
    per_class = _per_class_curve_metric(compute_roc_auc, targets, scores)
    return per_class if average is None else _nanmean(per_class)


def average_precision(
    y_true: Any, y_score: Any, task: str | None = None, average: str | None = "macro"
) -> float | np.ndarray:
    """Average precision (area under the precision-recall curve, AUPRC), one-vs-rest per class.

    Same arguments as :func:`auroc`. The chance level of a class is its prevalence.
    """
    targets, scores, _ = _check_classification(y_true, y_score, task)
    per_class = _per_class_curve_metric(compute_average_precision, targets, scores)
    return per_class if average is None else _nanmean(per_class)


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def predicted_labels(y_score: Any, task: str, threshold: float = 0.5) -> np.ndarray:
    """Hard predictions: ``argmax`` for multi-class, ``score >= threshold`` for binary and multi-label."""
    s = _np(y_score)
    if task == "multiclass":
        return s.argmax(axis=1)
    return (s >= threshold).astype(np.int64)


def _hard(y_true: Any, y_score: Any, task: str | None, threshold: float) -> tuple[np.ndarray, np.ndarray, str]:
    targets, scores, task = _check_classification(y_true, y_score, task)
    if task == "multiclass":
        return targets.argmax(1), scores.argmax(1), task
    return targets, (scores >= threshold).astype(np.int64), task


def accuracy(y_true: Any, y_score: Any, task: str | None = None, threshold: float = 0.5) -> float:
    """Share of correct predictions (multi-label: of correct label decisions)."""
    t, p, _ = _hard(y_true, y_score, task, threshold)
    return float(np.mean(t == p))


def _confusion_counts(t: np.ndarray, p: np.ndarray, task: str, n_classes: int) -> tuple[np.ndarray, ...]:
    if task == "multiclass":
        cls = np.arange(n_classes)
        tp = np.array([np.sum((t == c) & (p == c)) for c in cls], dtype=np.float64)
        fp = np.array([np.sum((t != c) & (p == c)) for c in cls], dtype=np.float64)
        fn = np.array([np.sum((t == c) & (p != c)) for c in cls], dtype=np.float64)
        tn = len(t) - tp - fp - fn
        return tp, fp, fn, tn
    tp = np.sum((t == 1) & (p == 1), axis=0).astype(np.float64)
    fp = np.sum((t == 0) & (p == 1), axis=0).astype(np.float64)
    fn = np.sum((t == 1) & (p == 0), axis=0).astype(np.float64)
    tn = np.sum((t == 0) & (p == 0), axis=0).astype(np.float64)
    return tp, fp, fn, tn


def balanced_accuracy(y_true: Any, y_score: Any, task: str | None = None, threshold: float = 0.5) -> float:
    """Mean recall over the classes present (binary: mean of sensitivity and specificity; multi-label: mean over
    labels of that binary value)."""
    targets, scores, task = _check_classification(y_true, y_score, task)
    t, p, _ = _hard(targets if task != "multiclass" else targets.argmax(1), scores, task, threshold)
    if task == "multiclass":
        tp, _, fn, _ = _confusion_counts(t, p, task, scores.shape[1])
        present = (tp + fn) > 0
        return float(np.mean(tp[present] / (tp + fn)[present]))
    tp, fp, fn, tn = _confusion_counts(t, p, task, scores.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
    return _nanmean(np.nanmean(np.stack([sens, spec]), axis=0))


def f1_macro(y_true: Any, y_score: Any, task: str | None = None, threshold: float = 0.5) -> float:
    """Macro F1: the unweighted mean of per-class F1 (binary: F1 of the positive class). A class never predicted and
    never present is left out; one never predicted but present scores 0."""
    targets, scores, task = _check_classification(y_true, y_score, task)
    t, p, _ = _hard(targets if task != "multiclass" else targets.argmax(1), scores, task, threshold)
    tp, fp, fn, _ = _confusion_counts(t, p, task, scores.shape[1])
    denom = 2 * tp + fp + fn
    keep = denom > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(2 * tp[keep] / denom[keep]))


def classification_metrics(
    y_true: Any, y_score: Any, task: str | None = None, threshold: float = 0.5, n_bins: int = 15
) -> dict[str, Any]:
    """All classification metrics at once.

    Returns:
        ``auroc`` (macro), ``auroc_per_class`` (list), ``auprc`` (macro), ``auprc_per_class``, ``accuracy``,
        ``balanced_accuracy``, ``f1_macro``, ``ece`` and ``task``, ``n``.
    """
    from monai_transfer.evaluation.calibration import expected_calibration_error

    _, _, task = _check_classification(y_true, y_score, task)
    roc = auroc(y_true, y_score, task, average=None)
    ap = average_precision(y_true, y_score, task, average=None)
    return {
        "task": task,
        "n": int(len(_np(y_true))),
        "auroc": _nanmean(roc),
        "auroc_per_class": [float(v) for v in np.atleast_1d(roc)],
        "auprc": _nanmean(ap),
        "auprc_per_class": [float(v) for v in np.atleast_1d(ap)],
        "accuracy": accuracy(y_true, y_score, task, threshold),
        "balanced_accuracy": balanced_accuracy(y_true, y_score, task, threshold),
        "f1_macro": f1_macro(y_true, y_score, task, threshold),
        "ece": expected_calibration_error(y_true, y_score, n_bins=n_bins, task=task),
    }


# ---------------------------------------------------------------------------------------------------- segmentation


def as_one_hot(seg: Any, num_classes: int | None = None, name: str = "segmentation") -> torch.Tensor:
    """Turn a label map ``(B, 1, *spatial)`` (or a 2D ``(B, H, W)``) or a one-hot ``(B, C, *spatial)`` into one-hot.

    MONAI's channel-first convention: a tensor with one channel is a label map and needs ``num_classes``; one with
    several channels must be one-hot (0/1) and match ``num_classes`` when given. Labels outside
    ``[0, num_classes)`` and non-integer labels raise ``ValueError``.
    """
    t = torch.as_tensor(_np(seg))
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
        out[f"{k}_mean"] = _nanmean(v)
    return out
