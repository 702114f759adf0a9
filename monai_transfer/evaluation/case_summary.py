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

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_transfer.evaluation.metrics import auroc, classification_metrics
from monai_transfer.evaluation.stats import bootstrap_ci

__all__ = ["summarize_cases", "attach_ids", "class_names", "name_cases", "MIN_UNITS"]

#: fewer independent units than this behind an interval are flagged
MIN_UNITS = 10


def attach_ids(cases: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy each case's ``patient_id`` and ``id`` from the datalist row it was evaluated from.

    ``evaluate`` records cases in the order of the section's rows (the loader does not shuffle), each with its
    ``index``; the row's ``id`` (else the image's file name, never a local path) and ``patient_id`` (when present)
    are added.

    Raises:
        ValueError: the numbers of cases and rows differ (the records do not come from these rows).
    """
    if len(cases) != len(rows):
        raise ValueError(f"{len(cases)} case records but {len(rows)} datalist rows: they cannot be matched")
    out = []
    for i, case in enumerate(cases):
        row = rows[int(case.get("index", i))]
        rec = dict(case)
        image = row.get("image")
        rec["id"] = str(row["id"]) if "id" in row else (os.path.basename(os.fspath(image)) if image else str(i))
        if row.get("patient_id") is not None:
            rec["patient_id"] = str(row["patient_id"])
        out.append(rec)
    return out


def class_names(labels: Mapping[str, Any] | Sequence[Any] | None) -> dict[int, str]:
    """Class index -> name from a datalist's ``labels`` property (MSD: ``{"0": "background", "1": "tumour"}``, or a
    list of names); ``{}`` when the datalist names no classes."""
    if not labels:
        return {}
    if isinstance(labels, Mapping):
        out = {}
        for k, v in labels.items():
            try:
                out[int(k)] = str(v)
            except (TypeError, ValueError):
                continue
        return out
    return {i: str(v) for i, v in enumerate(labels)}


def name_cases(
    cases: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    labels: Mapping[str, Any] | Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Case records a reader can match to the datalist: :func:`attach_ids` (``id``, ``patient_id``) plus, for
    classification, the ``predicted`` class (argmax) and, when the datalist names its classes (``labels``),
    ``label_name`` and ``predicted_name``. Segmentation records keep their per-class lists (their order is
    :func:`class_names` without the background)."""
    names = class_names(labels)
    out = attach_ids(cases, rows)
    for rec in out:
        if "prob" in rec and "label" in rec:
            probs = np.asarray(rec["prob"], dtype=float).ravel()
            rec["predicted"] = int(probs.argmax()) if probs.size > 1 else int(probs[0] >= 0.5)
            if names:
                rec["label_name"] = names.get(int(rec["label"]), str(rec["label"]))
                rec["predicted_name"] = names.get(rec["predicted"], str(rec["predicted"]))
    return out


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
