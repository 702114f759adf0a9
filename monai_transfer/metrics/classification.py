"""Classification metrics over cases (one score per case, dataset-level metrics).

* :func:`auroc` — area under the ROC curve, one-vs-rest per class (multi-class) or per label (multi-label), built on
  :func:`monai.metrics.compute_roc_auc`.
* :func:`average_precision` — area under the precision-recall curve (AUPRC, average precision), per class, built on
  :func:`monai.metrics.compute_average_precision`.
* :func:`accuracy`, :func:`balanced_accuracy` (mean per-class recall), :func:`f1_macro`.
* :func:`classification_metrics` — all of the above plus the expected calibration error
  (:func:`monai_transfer.metrics.calibration.expected_calibration_error`, Guo et al. 2017).

Inputs follow :mod:`monai_transfer.metrics.inputs`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_average_precision, compute_roc_auc

from monai_transfer.metrics.calibration import expected_calibration_error
from monai_transfer.metrics.inputs import as_numpy, check_classification, nanmean

__all__ = [
    "auroc",
    "average_precision",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "predicted_labels",
    "classification_metrics",
]


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
    targets, scores, _ = check_classification(y_true, y_score, task)
    per_class = _per_class_curve_metric(compute_roc_auc, targets, scores)
    return per_class if average is None else nanmean(per_class)


def average_precision(
    y_true: Any, y_score: Any, task: str | None = None, average: str | None = "macro"
) -> float | np.ndarray:
    """Average precision (area under the precision-recall curve, AUPRC), one-vs-rest per class.

    Same arguments as :func:`auroc`. The chance level of a class is its prevalence.
    """
    targets, scores, _ = check_classification(y_true, y_score, task)
    per_class = _per_class_curve_metric(compute_average_precision, targets, scores)
    return per_class if average is None else nanmean(per_class)


def predicted_labels(y_score: Any, task: str, threshold: float = 0.5) -> np.ndarray:
    """Hard predictions: ``argmax`` for multi-class, ``score >= threshold`` for binary and multi-label."""
    s = as_numpy(y_score)
    if task == "multiclass":
        return s.argmax(axis=1)
    return (s >= threshold).astype(np.int64)


def _hard(y_true: Any, y_score: Any, task: str | None, threshold: float) -> tuple[np.ndarray, np.ndarray, str]:
    targets, scores, task = check_classification(y_true, y_score, task)
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
    targets, scores, task = check_classification(y_true, y_score, task)
    t, p, _ = _hard(targets if task != "multiclass" else targets.argmax(1), scores, task, threshold)
    if task == "multiclass":
        tp, _, fn, _ = _confusion_counts(t, p, task, scores.shape[1])
        present = (tp + fn) > 0
        return float(np.mean(tp[present] / (tp + fn)[present]))
    tp, fp, fn, tn = _confusion_counts(t, p, task, scores.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
    return nanmean(np.nanmean(np.stack([sens, spec]), axis=0))


def f1_macro(y_true: Any, y_score: Any, task: str | None = None, threshold: float = 0.5) -> float:
    """Macro F1: the unweighted mean of per-class F1 (binary: F1 of the positive class). A class never predicted and
    never present is left out; one never predicted but present scores 0."""
    targets, scores, task = check_classification(y_true, y_score, task)
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
    _, _, task = check_classification(y_true, y_score, task)
    roc = auroc(y_true, y_score, task, average=None)
    ap = average_precision(y_true, y_score, task, average=None)
    return {
        "task": task,
        "n": int(len(as_numpy(y_true))),
        "auroc": nanmean(roc),
        "auroc_per_class": [float(v) for v in np.atleast_1d(roc)],
        "auprc": nanmean(ap),
        "auprc_per_class": [float(v) for v in np.atleast_1d(ap)],
        "accuracy": accuracy(y_true, y_score, task, threshold),
        "balanced_accuracy": balanced_accuracy(y_true, y_score, task, threshold),
        "f1_macro": f1_macro(y_true, y_score, task, threshold),
        "ece": expected_calibration_error(y_true, y_score, n_bins=n_bins, task=task),
    }
