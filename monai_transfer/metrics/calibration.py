"""Calibration: expected calibration error and reliability-diagram data.

Guo, Pleiss, Sun, Weinberger 2017, "On Calibration of Modern Neural Networks" (ICML): ECE with ``M`` equal-width
confidence bins, ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``. For multi-class tasks the confidence is the
top-label probability and accuracy is whether the top label is correct; for binary tasks the positive-class
probability is compared with the positive frequency per bin; for multi-label tasks each label is a binary task and the
ECE is averaged over labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monai_transfer.metrics.inputs import check_classification

__all__ = ["expected_calibration_error", "reliability_curve", "brier_score", "apply_temperature", "fit_temperature"]


def _bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # equal-width bins (0, 1/M], (1/M, 2/M], ...; 0 goes to the first bin
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_curve(confidence: Any, correct: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and counts for a reliability diagram.

    Args:
        confidence: predicted probability per case ``(N,)`` in [0, 1].
        correct: 1 where the predicted event happened (top label correct, or positive), else 0, ``(N,)``.
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        ``confidence``, ``accuracy`` (NaN for empty bins), ``count`` and ``edges`` arrays.
    """
    conf, corr = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if conf.shape != corr.shape or conf.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-D of one length, got {conf.shape} and {corr.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1] (pass probabilities, not logits)")
    b = _bins(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, minlength=n_bins) / count
        acc = np.bincount(b, corr, minlength=n_bins) / count
    return {"confidence": mean_conf, "accuracy": acc, "count": count, "edges": np.linspace(0, 1, n_bins + 1)}


def _ece_binary(conf: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    r = reliability_curve(conf, outcome, n_bins)
    keep = r["count"] > 0
    return float(np.sum(r["count"][keep] / len(conf) * np.abs(r["accuracy"][keep] - r["confidence"][keep])))


def expected_calibration_error(y_true: Any, y_prob: Any, n_bins: int = 15, task: str | None = None) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins (Guo et al. 2017).

    Args:
        y_true: class indices ``(N,)``, or a multi-label indicator matrix ``(N, C)``.
        y_prob: probabilities ``(N,)`` (binary, positive class) or ``(N, C)`` (softmax rows / sigmoid outputs).
        n_bins: number of bins (15 as in Guo et al.).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``; inferred from shapes when None.

    Returns:
        The ECE in [0, 1].
    """
    targets, probs, task = check_classification(y_true, y_prob, task)
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError("ECE needs probabilities in [0, 1], not logits")
    if task == "multiclass":
        pred = probs.argmax(1)
        conf = probs[np.arange(len(pred)), pred]
        return _ece_binary(conf, targets[np.arange(len(pred)), pred].astype(np.float64), n_bins)
    return float(
        np.mean([_ece_binary(probs[:, c], targets[:, c].astype(np.float64), n_bins) for c in range(probs.shape[1])])
    )


def brier_score(y_true: Any, y_prob: Any) -> float:
    """Brier score (Brier 1950): binary, the mean squared difference of the positive-class probability and the
    outcome (``(N,)`` or ``(N, 2)`` probabilities); multi-class, the mean over cases of the summed squared difference
    to the one-hot label (``(N, C)``). Lower is better; 0.25 is what a constant 0.5 scores on a binary task."""
    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    if len(p) != len(y):
        raise ValueError(f"labels and probabilities disagree on N: {len(y)} vs {len(p)}")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("the Brier score needs probabilities in [0, 1], not logits")
    if p.ndim == 1:
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _as_two_class(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1) if p.ndim == 1 else p


def apply_temperature(y_prob: Any, temperature: float) -> np.ndarray:
    """Class probabilities softened (``T > 1``) or sharpened (``T < 1``): ``softmax(log p / T)``, in the shape given
    (``(N,)`` positive-class probabilities stay ``(N,)``). The ranking of cases, hence AUROC, does not change."""
    p = np.asarray(y_prob, dtype=np.float64)
    if temperature <= 0:
        raise ValueError(f"a temperature must be positive, got {temperature}")
    two = _as_two_class(p)
    z = np.log(np.clip(two, 1e-12, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    out = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return out[:, 1] if p.ndim == 1 else out


def fit_temperature(y_true: Any, y_prob: Any) -> float:
    """The temperature minimising the negative log-likelihood of these (validation) cases (Guo et al. 2017,
    temperature scaling), searched over ``[0.05, 20]``."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(y_prob, dtype=np.float64)
    if len(y) < 2:
        raise ValueError(f"temperature scaling needs at least 2 validation cases, got {len(y)}")

    def nll(log_t: float) -> float:
        q = _as_two_class(apply_temperature(p, float(np.exp(log_t))))
        return float(-np.mean(np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
