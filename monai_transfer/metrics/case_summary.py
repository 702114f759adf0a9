"""Summaries of per-case evaluation records: the full metric set with bootstrap confidence intervals over cases.

``monai_transfer.finetune.evaluate`` returns one record per case (classification: ``label`` and ``prob``;
segmentation: ``dice`` per foreground class). This turns them into the metrics a paper reports, each headline value
with a 95 % BCa bootstrap interval (Efron 1987), deterministic for a seed.

Cases of one patient (2D slices of a volume) are not independent: with ``patient_id`` on the records
(:func:`monai_transfer.data.case_ids.attach_ids` copies it from the datalist rows) the intervals resample patients (cluster bootstrap), and each
interval says how many independent units it rests on (``n_units``, ``unit``); fewer than :data:`MIN_UNITS` are flagged
(``warnings`` in the summary, and a ``UserWarning``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_transfer.metrics.calibration import brier_score
from monai_transfer.metrics.classification import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    classification_metrics,
    f1_macro,
)
from monai_transfer.metrics.stats import bootstrap_ci
from monai_transfer.metrics.thresholds import decisions, ranked_auroc, sorted_average_precision

__all__ = ["summarize_cases", "MIN_UNITS"]

#: fewer independent units than this behind an interval are flagged
MIN_UNITS = 10


def _groups(cases: Sequence[Mapping[str, Any]], kept: Any = None) -> list[str] | None:
    """Patient of each case (cases without one are their own unit), or None when no case names a patient."""
    if not any("patient_id" in c for c in cases):
        return None
    g = [f"patient:{c['patient_id']}" if "patient_id" in c else f"case:{i}" for i, c in enumerate(cases)]
    return g if kept is None else [x for x, k in zip(g, kept) if k]


def _ci(data: Any, statistic: Any, n_resamples: int, seed: int, groups: list[str] | None = None) -> dict[str, Any]:
    r = bootstrap_ci(data, statistic=statistic, n_resamples=n_resamples, seed=seed, groups=groups)
    unit = "patient_id" if r.n_units < r.n_cases else "case"
    return {"estimate": r.estimate, "low": r.low, "high": r.high, "method": r.method, "n_cases": r.n_cases,
            "n_units": r.n_units, "unit": unit}  # fmt: skip


def _flag_few_units(out: dict[str, Any]) -> dict[str, Any]:
    notes = []
    for name, ci in out.items():
        if name.endswith("_ci95") and isinstance(ci, Mapping) and ci["n_units"] < MIN_UNITS:
            what = "patients" if ci["unit"] == "patient_id" else "cases"
            notes.append(
                f"{name[:-5]}: the 95% interval rests on {ci['n_units']} independent units ({what}; "
                f"{ci['n_cases']} cases): too few for a reliable interval (fewer than {MIN_UNITS})"
            )
    out["warnings"] = notes
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return out


#: the threshold-dependent metrics reported per class one-vs-rest (accuracy against the rest adds nothing a reader uses)
OVR_METRICS = ("sensitivity", "specificity", "f1", "balanced_accuracy")


def _one_vs_rest(
    out: dict[str, Any], labels: np.ndarray, probs: np.ndarray, thresholds: Sequence[float | None] | None
) -> dict[str, Any]:
    """Each class against the rest at its own threshold: the values into ``out``, the metric functions returned (for
    the intervals, called on the resampled labels and probabilities)."""
    if thresholds is None:
        return {}
    if len(thresholds) != probs.shape[1]:
        raise ValueError(f"{len(thresholds)} one-vs-rest thresholds for {probs.shape[1]} classes")
    fns: dict[str, Any] = {}
    y = labels.astype(np.int64).ravel()
    for k, t in enumerate(thresholds):
        if t is None:
            continue
        out[f"class{k}_threshold"] = float(t)
        values = decisions((y == k).astype(np.int64), probs[:, k], float(t))
        for name in OVR_METRICS:
            out[f"class{k}_{name}"] = values[name]
            fns[f"class{k}_{name}"] = lambda y, s, k=k, t=float(t), name=name: decisions(
                (np.asarray(y).ravel() == k).astype(np.int64), s[:, k], t
            )[name]
    return fns


def summarize_cases(
    cases: Sequence[Mapping[str, Any]],
    n_resamples: int = 2000,
    seed: int = 0,
    threshold: float | None = None,
    class_thresholds: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """Metrics and 95 % bootstrap intervals from per-case records.

    Args:
        cases: records with ``label`` and ``prob`` (classification) or ``dice`` (segmentation, per foreground class),
            optionally ``patient_id`` (:func:`monai_transfer.data.case_ids.attach_ids`): then patients, not cases, are resampled.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.
        threshold: binary classification: the decision threshold (chosen on validation data, never on these cases)
            at which accuracy, sensitivity, specificity, F1 and balanced accuracy are computed; the accuracy at 0.5
            stays as ``accuracy_at_0.5``. ``None``: the argmax rule (0.5 for two classes).
        class_thresholds: multi-class classification, where asked: one-vs-rest thresholds per class (chosen on
            validation; ``None`` for a class without one), at which each class's sensitivity, specificity, F1 and
            balanced accuracy against the rest are reported as ``class<k>_<metric>``, each with its interval. The
            task's own decision stays the argmax.

    Returns:
        Classification: AUROC per class and mean, AUPRC, accuracy, balanced accuracy, F1, sensitivity and specificity
        (binary), ECE and the Brier score, each headline metric with a case-level interval (``<metric>_ci95``: the
        cases resampled and the metric recomputed). Segmentation: Dice, HD95 and surface Dice (when recorded) per
        class and mean, each mean with an interval over cases. Each interval carries ``n_cases``, ``n_units`` and
        ``unit``; ``warnings`` lists the intervals resting on fewer than ``MIN_UNITS`` independent units.
    """
    if not cases:
        raise ValueError("no cases to summarise")
    if "dice" in cases[0]:
        out: dict[str, Any] = {"task": "segmentation", "n": len(cases)}
        # Dice, then the boundary metrics the evaluator records (HD95 and surface Dice, in voxels), where present
        for key, name in (("dice", "dice"), ("hd95_voxels", "hd95_voxels"), ("surface_dice_1voxel", "surface_dice")):
            if key not in cases[0]:
                continue
            values = np.asarray([c[key] for c in cases], dtype=float)  # (cases, foreground classes)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from a case is NaN there
                per_case = np.nanmean(values, axis=1)
                out[f"{name}_per_class"] = np.nanmean(values, axis=0).tolist()
            kept = per_case[np.isfinite(per_case)]
            out[f"mean_{name}"] = float(kept.mean()) if kept.size else float("nan")
            groups = _groups(cases, np.isfinite(per_case))
            if kept.size > 1 and (groups is None or len(set(groups)) > 1):
                out[f"mean_{name}_ci95"] = _ci(kept, np.mean, n_resamples, seed, groups)
        return _flag_few_units(out)
    if "prob" not in cases[0] or "label" not in cases[0]:
        raise ValueError(f"case records need 'dice' or 'label' and 'prob'; got keys {sorted(cases[0])}")
    labels = np.asarray([c["label"] for c in cases])
    probs = np.asarray([c["prob"] for c in cases], dtype=float)
    out = classification_metrics(labels, probs)
    out["brier"] = brier_score(labels, probs)
    index = np.arange(len(cases))
    groups = _groups(cases)
    binary = probs.ndim == 1 or probs.shape[1] == 2
    if binary:  # the positive class's scores once; rank-based metrics fast enough for thousands of resamples
        y, s = labels.astype(np.int64).ravel(), (probs if probs.ndim == 1 else probs[:, 1])
        t = 0.5 if threshold is None else float(threshold)
        out["auprc"] = sorted_average_precision(y, s)  # of the positive class, as a binary task reports it
        out["accuracy_at_0.5"] = decisions(y, s, 0.5)["accuracy"]
        out.pop("f1_macro", None)  # at 0.5; ``f1`` below is the positive class's at the chosen threshold
        out.update(decisions(y, s, t), threshold=t)
        fns: dict[str, Any] = {"auroc": ranked_auroc, "auprc": sorted_average_precision,
                               "brier": lambda y, s: float(np.mean((s - y) ** 2))}  # fmt: skip
        for name in ("accuracy", "sensitivity", "specificity", "f1", "balanced_accuracy"):
            fns[name] = lambda y, s, name=name: decisions(y, s, t)[name]
    else:
        y, s = labels, probs
        fns = {"auroc": auroc, "auprc": average_precision, "brier": brier_score, "accuracy": accuracy,
               "balanced_accuracy": balanced_accuracy, "f1_macro": f1_macro}  # fmt: skip
        fns.update(_one_vs_rest(out, labels, probs, class_thresholds))
    if len(np.unique(labels)) < 2:
        fns = {k: v for k, v in fns.items() if k not in ("auroc", "auprc", "balanced_accuracy")}
    if len(cases) < 2 or (groups is not None and len(set(groups)) < 2):
        out["warnings"] = [f"no interval: {len(cases)} case(s) of {len(set(groups or range(len(cases))))} unit(s)"]
        return out  # nothing to resample
    for name, fn in fns.items():
        # case indices are resampled, so each resample keeps labels and scores paired and recomputes the metric
        out[f"{name}_ci95"] = _ci(index, lambda i, fn=fn: fn(y[i], s[i]), n_resamples, seed, groups)
    return _flag_few_units(out)
