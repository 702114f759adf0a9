"""Decision thresholds of binary classifiers: Youden's J, the majority-class baseline, accuracy at a threshold.

A model can rank cases well (high AUROC) and still decide badly: when its scores are poorly calibrated, the argmax
rule (binary: positive when ``p1 > 0.5``) can give an accuracy below that of always answering the majority class.
An evaluation should therefore say which threshold produced its accuracy, set the majority baseline beside it, and
offer a threshold chosen on held-out validation data, never on the test data it reports.

Youden's J (Youden 1950, "Index for rating diagnostic tests", Cancer 3:32-35) is ``sensitivity + specificity - 1``;
the threshold that maximises it on the validation set is applied unchanged to the test set. Pure functions over labels
and probabilities; ``decision_fields`` turns the per-case records of ``monai_transfer.finetune.evaluate`` into the
fields an evaluation result reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["youden_threshold", "majority_baseline", "accuracy_at_threshold", "decision_fields"]


def _binary(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(N,)`` in {0, 1} and the positive-class score ``(N,)`` (from ``(N,)`` or ``(N, 2)`` probabilities)."""
    y = np.asarray(labels).ravel()
    s = np.asarray(probs, dtype=np.float64)
    if s.ndim == 2:
        if s.shape[1] != 2:
            raise ValueError(f"thresholds are for binary tasks; got probabilities of {s.shape[1]} classes")
        s = s[:, 1]
    if s.ndim != 1:
        raise ValueError(f"probabilities must be (N,) or (N, 2), got shape {s.shape}")
    if len(s) != len(y):
        raise ValueError(f"labels and probabilities disagree on N: {len(y)} vs {len(s)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"thresholds are for binary tasks with labels 0/1; got labels {sorted(set(y.tolist()))}")
    return y.astype(np.int64), s


def youden_threshold(labels: Any, probs: Any) -> float:
    """The threshold ``t`` (decide positive when ``p1 >= t``) that maximises Youden's J on these cases.

    Candidates are the midpoints between consecutive distinct scores (and one beyond each end), so the threshold
    never sits on a validation score; among equally good candidates the one nearest 0.5 (the argmax rule) wins.

    Args:
        labels: ``(N,)`` 0/1.
        probs: ``(N,)`` positive-class probability, or ``(N, 2)`` class probabilities.

    Returns:
        The threshold.

    Raises:
        ValueError: not binary, one class only, or shapes that disagree.
    """
    y, s = _binary(labels, probs)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("Youden's J needs both classes among the cases; the validation set has one")
    u = np.unique(s)
    candidates = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    pred = s[None, :] >= candidates[:, None]  # (candidates, N)
    j = (pred & (y == 1)).sum(1) / n_pos + (~pred & (y == 0)).sum(1) / n_neg - 1
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def majority_baseline(labels: Any) -> float:
    """Accuracy of always answering the most frequent class of ``labels``."""
    y = np.asarray(labels).ravel()
    if y.size == 0:
        raise ValueError("no labels")
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / y.size)


def accuracy_at_threshold(labels: Any, probs: Any, threshold: float) -> float:
    """Binary accuracy when deciding positive for ``p1 >= threshold``."""
    y, s = _binary(labels, probs)
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def _labels_probs(cases: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    if not cases or "label" not in cases[0] or "prob" not in cases[0]:
        raise ValueError("decision thresholds need classification case records with 'label' and 'prob'")
    return np.asarray([int(c["label"]) for c in cases]), np.asarray([c["prob"] for c in cases], dtype=np.float64)


def decision_fields(
    cases: Sequence[Mapping[str, Any]], val_cases: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The decision rule behind an accuracy, and the baseline to read it against.

    Args:
        cases: the evaluated section's classification records (``label``, ``prob``), as ``evaluate`` returns them.
        val_cases: the validation section's records; when given (binary tasks only), Youden's J threshold is chosen
            on them and applied to ``cases``.

    Returns:
        ``threshold`` (0.5 for the binary argmax rule, ``None`` for multi-class argmax, or the selected value),
        ``threshold_rule`` (``"argmax"`` or ``"youden_validation"``), ``majority_baseline`` (accuracy of always answering
        the most frequent class of ``cases``), and with ``val_cases`` also ``accuracy_at_threshold`` and
        ``n_threshold_cases`` (validation cases the threshold rests on).
    """
    y, p = _labels_probs(cases)
    binary = p.ndim == 2 and p.shape[1] == 2
    out: dict[str, Any] = {
        "threshold": 0.5 if binary else None,
        "threshold_rule": "argmax",
        "majority_baseline": majority_baseline(y),
    }
    if val_cases is not None:
        if not binary:
            raise ValueError(f"threshold selection is for binary tasks; these cases have {p.shape[-1]} classes")
        yv, pv = _labels_probs(val_cases)
        t = youden_threshold(yv, pv)
        out.update(
            threshold=t,
            threshold_rule="youden_validation",
            accuracy_at_threshold=accuracy_at_threshold(y, p, t),
            n_threshold_cases=int(len(yv)),
        )
    return out
