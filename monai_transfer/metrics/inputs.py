"""The input conventions every metric shares: arrays from tensors, a classification task inferred and checked, and
the NaN-aware mean the metrics report.

``y_true`` holds integer class indices ``(N,)`` for binary/multi-class tasks or a binary indicator matrix ``(N, C)`` for
multi-label tasks; ``y_score`` holds probabilities or scores ``(N,)`` (binary: score of the positive class) or
``(N, C)``. Shape and label mismatches raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["TASKS", "as_numpy", "infer_task", "check_classification", "nanmean"]

TASKS = ("binary", "multiclass", "multilabel")


def as_numpy(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` (a tensor is detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def infer_task(y_true: Any, y_score: Any) -> str:
    """Guess the task from shapes: ``(N,)`` scores are binary, ``(N, C)`` with 2-D labels multi-label, else multi-class."""
    y, s = as_numpy(y_true), as_numpy(y_score)
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1):
        return "binary"
    if y.ndim == 2 and y.shape == s.shape:
        return "multilabel"
    return "multiclass"


def check_classification(y_true: Any, y_score: Any, task: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Validate and return ``(targets (N, C) in {0,1}, scores (N, C), task)``; binary gives C = 1."""
    y, s = as_numpy(y_true), as_numpy(y_score).astype(np.float64)
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


def nanmean(a: np.ndarray) -> float:
    """The mean over finite values; NaN when there is none."""
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")
