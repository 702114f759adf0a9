"""Case records a reader can match to the datalist: the case's id (never a local path), patient and class names.

Used by ``finetune`` (``test_cases.json``), ``evaluate`` and ``monai_transfer.metrics.case_summary`` alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["attach_ids", "class_names", "image_stem", "name_cases", "IMAGE_SUFFIXES"]

#: image file suffixes stripped from a file name to give its id (longest first where one ends another)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def image_stem(path: str | os.PathLike) -> str:
    """A file's id: its name without the image suffix (``a/b/sub-0.nii.gz`` -> ``sub-0``; MSD's and MONAI Label's ids)."""
    base = os.path.basename(os.fspath(path).strip())
    for suffix in IMAGE_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


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
