"""Summaries of per-case evaluation records: the full metric set with bootstrap confidence intervals over cases.

``monai_transfer.finetune.evaluate`` returns one record per case (classification: ``label`` and ``prob``;
segmentation: ``dice`` per foreground class). This turns them into the metrics a paper reports, each headline value
with a 95 % BCa bootstrap interval (Efron 1987), deterministic for a seed.

Cases of one patient (2D slices of a volume) are not independent: with ``patient_id`` on the records
(:func:`attach_ids` copies it from the datalist rows) the intervals resample patients (cluster bootstrap), and each
interval says how many independent units it rests on (``n_units``, ``unit``); fewer than :data:`MIN_UNITS` are flagged
(``warnings`` in the summary, and a ``UserWarning``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_transfer.data.case_ids import attach_ids, class_names, name_cases
from monai_transfer.evaluation.metrics import auroc, classification_metrics
from monai_transfer.evaluation.stats import bootstrap_ci

__all__ = ["summarize_cases", "attach_ids", "class_names", "name_cases", "MIN_UNITS"]

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


def summarize_cases(cases: Sequence[Mapping[str, Any]], n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Metrics and 95 % bootstrap intervals from per-case records.

    Args:
        cases: records with ``label`` and ``prob`` (classification) or ``dice`` (segmentation, per foreground class),
            optionally ``patient_id`` (:func:`attach_ids`): then patients, not cases, are resampled.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        Classification: AUROC per class and mean, AUPRC, accuracy, balanced accuracy, macro F1, ECE, with intervals for
        AUROC (when both classes occur) and accuracy. Segmentation: Dice, HD95 and surface Dice (when recorded) per
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
    index = np.arange(len(cases))
    correct = (probs.argmax(axis=1) == labels.astype(int)) if probs.ndim == 2 else ((probs >= 0.5) == labels)
    groups = _groups(cases)
    out["accuracy_ci95"] = _ci(correct.astype(float), np.mean, n_resamples, seed, groups)
    if len(np.unique(labels)) > 1:
        # resample case indices so each resample keeps labels and scores paired
        out["auroc_ci95"] = _ci(index, lambda i: auroc(labels[i], probs[i]), n_resamples, seed, groups)
    return _flag_few_units(out)
