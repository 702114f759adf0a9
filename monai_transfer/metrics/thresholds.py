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

__all__ = [
    "youden_threshold",
    "majority_baseline",
    "accuracy_at_threshold",
    "decision_fields",
    "THRESHOLD_RULES",
    "check_threshold_rule",
    "choose_threshold",
    "choose_class_thresholds",
    "binary_decision_metrics",
    "binary_auroc",
    "binary_average_precision",
    "decisions",
    "ranked_auroc",
    "sorted_average_precision",
]


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


#: the rules a decision threshold can be chosen by (besides a fixed number and ``"sensitivity:X"``)
THRESHOLD_RULES = ("youden", "f1", "argmax")


def check_threshold_rule(rule: Any) -> str | float:
    """A valid rule: ``"youden"``, ``"f1"``, ``"argmax"`` (0.5, the argmax of two classes), a fixed threshold in
    (0, 1), or ``"sensitivity:X"`` (the highest threshold whose validation sensitivity is at least ``X``).

    Raises:
        ValueError: naming the rule and the accepted forms.
    """
    accepted = "youden, f1, argmax, a number in (0, 1) or sensitivity:X with X in (0, 1]"
    if isinstance(rule, bool):
        raise ValueError(f"threshold rule {rule!r} is not one of: {accepted}")
    if isinstance(rule, (int, float)):
        if not 0 < float(rule) < 1:
            raise ValueError(f"a fixed threshold must lie in (0, 1), got {rule}")
        return float(rule)
    text = str(rule).strip().lower()
    if text in THRESHOLD_RULES:
        return text
    if text.startswith("sensitivity:"):
        try:
            target = float(text.split(":", 1)[1])
        except ValueError:
            target = -1.0
        if 0 < target <= 1:
            return f"sensitivity:{target:g}"
    try:
        return check_threshold_rule(float(text))
    except ValueError as e:
        if "fixed threshold" in str(e):
            raise
    raise ValueError(f"threshold rule {rule!r} is not one of: {accepted}")


def _candidates(s: np.ndarray) -> np.ndarray:
    u = np.unique(s)
    return np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])


def choose_threshold(labels: Any, probs: Any, rule: Any = "youden") -> float:
    """The decision threshold (positive when ``p1 >= t``) that ``rule`` picks on these (validation) cases.

    ``youden`` maximises sensitivity + specificity - 1 (Youden 1950); ``f1`` maximises the positive class's F1;
    ``sensitivity:X`` takes the highest threshold whose sensitivity is at least ``X`` (the most specific one that
    meets the target); ``argmax`` is 0.5; a number is itself. Ties go to the candidate nearest 0.5.
    """
    rule = check_threshold_rule(rule)
    if isinstance(rule, float):
        return rule
    if rule == "argmax":
        return 0.5
    if rule == "youden":
        return youden_threshold(labels, probs)
    y, s = _binary(labels, probs)
    if y.sum() == 0:
        raise ValueError(f"threshold rule {rule!r} needs positive cases among the validation cases; there are none")
    cand = _candidates(s)
    pred = s[None, :] >= cand[:, None]
    tp = (pred & (y == 1)).sum(1)
    if rule == "f1":
        fp, fn = (pred & (y == 0)).sum(1), (~pred & (y == 1)).sum(1)
        score = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        best = np.flatnonzero(np.isclose(score, score.max(), rtol=0, atol=1e-12))
        return float(cand[best[np.argmin(np.abs(cand[best] - 0.5))]])
    target = float(rule.split(":", 1)[1])
    ok = np.flatnonzero(tp / y.sum() >= target - 1e-12)
    return float(cand[ok].max())


def choose_class_thresholds(labels: Any, probs: Any, rule: Any = "youden") -> list[float | None]:
    """One-vs-rest thresholds of a multi-class task: per class ``k``, :func:`choose_threshold` of ``rule`` on class
    ``k`` against the rest (its score ``probs[:, k]``). A class whose rule cannot be applied on these cases (no case of
    it, or all of it) gets ``None``: its one-vs-rest metrics are then not reported rather than guessed."""
    y = np.asarray(labels).ravel().astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(y):
        raise ValueError(f"one-vs-rest thresholds need (N, classes) probabilities for N labels; got {p.shape}")
    out: list[float | None] = []
    for k in range(p.shape[1]):
        try:
            out.append(choose_threshold((y == k).astype(np.int64), p[:, k], rule))
        except ValueError:
            out.append(None)
    return out


def binary_decision_metrics(labels: Any, probs: Any, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, F1 (positive class) and balanced accuracy when deciding ``p1 >= t``
    (NaN where a rate has no case to rest on, e.g. the sensitivity of a set without positives)."""
    y, s = _binary(labels, probs)
    return decisions(y, s, threshold)


def decisions(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    """:func:`binary_decision_metrics` of checked arrays (``y`` 0/1 ints, ``s`` 1-D scores): no checks, for the
    thousands of calls of a bootstrap."""
    pred, pos = s >= threshold, y == 1
    tp, fp = int(np.count_nonzero(pred & pos)), int(np.count_nonzero(pred & ~pos))
    n_pos = int(np.count_nonzero(pos))
    fn, tn = n_pos - tp, len(y) - n_pos - fp
    sens = tp / n_pos if n_pos else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    rates = [r for r in (sens, spec) if r == r]
    return {
        "accuracy": (tp + tn) / len(y),
        "sensitivity": sens,
        "specificity": spec,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else float("nan"),
        "balanced_accuracy": float(sum(rates) / len(rates)) if rates else float("nan"),
    }


def binary_auroc(labels: Any, probs: Any) -> float:
    """AUROC of a binary task from the ranks of the positive-class scores (Mann-Whitney U; ties count half): the
    value MONAI's ``compute_roc_auc`` gives, fast enough to recompute on thousands of bootstrap resamples."""
    return ranked_auroc(*_binary(labels, probs))


def ranked_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """:func:`binary_auroc` of checked arrays (no checks)."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos = int(np.count_nonzero(pos))
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((rankdata(s)[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_average_precision(labels: Any, probs: Any) -> float:
    """Average precision (area under the precision-recall curve, step-wise) of the positive class."""
    return sorted_average_precision(*_binary(labels, probs))


def sorted_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """:func:`binary_average_precision` of checked arrays (no checks)."""
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last case of each distinct score
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1), tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
