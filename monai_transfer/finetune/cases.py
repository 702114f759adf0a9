"""The cases a fine-tuning run trains and validates on, read from a datalist section and checked before training.

A bundle config names its data with one expression, ``$monai_transfer.finetune.datalist_cases(@datalist, 'training',
...)``, so the label subset, the label checks and the class count are the same whether the run starts from the
command line, ``python -m monai.bundle run`` or MONAI Label (which replaces ``train#dataset#data`` with its own list).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai_transfer.data.datalist import load_datalist, load_datalist_file
from monai_transfer.data.datalist_format import DatalistError
from monai_transfer.data.splits import label_fractions

__all__ = ["datalist_cases", "check_class_labels", "section_names"]

logger = logging.getLogger(__name__)


def section_names(datalist: str | os.PathLike) -> list[str]:
    """The sections (lists of cases) a datalist holds."""
    return [k for k, v in load_datalist_file(datalist).items() if isinstance(v, list)]


def check_class_labels(
    rows: Sequence[Mapping[str, Any]], num_classes: int | None, where: str, declared: Mapping[str, Any] | None = None
) -> None:
    """Every classification label is an integer class in ``[0, num_classes)`` (and among ``declared`` labels;
    ``num_classes=None``: any integer >= 0).

    Raises:
        ValueError: the first bad case named by its id (or image file) and the section.
    """
    allowed = {int(k) for k in declared} if declared else None
    for i, e in enumerate(rows):
        v = e.get("label")
        case = e.get("id") or os.path.basename(os.fspath(e.get("image", f"case {i}")))
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: label {v!r} of case {case} is not a class index") from None
        bad = not math.isfinite(f) or f != int(f) or f < 0 or (num_classes is not None and f >= num_classes)
        if bad or (allowed is not None and int(f) not in allowed):
            names = f" (declared labels {dict(declared)})" if declared else ""
            classes = f"one of the classes 0..{int(num_classes) - 1}" if num_classes is not None else "a class index"
            raise ValueError(
                f"{where}: label {v!r} of case {case} is not {classes}{names}; fix the datalist or num_classes"
            )


def datalist_cases(
    datalist: str | os.PathLike,
    section: str = "training",
    task: str = "classification",
    num_classes: int | None = None,
    label_fraction: float = 1.0,
    seed: int = 0,
    required: bool = True,
) -> list[dict[str, Any]]:
    """One datalist section's cases (absolute paths), checked, and for ``label_fraction < 1`` the nested subset.

    Args:
        datalist: MSD-style datalist JSON.
        section: the section (``"training"``, ``"validation"``, ``"test"``).
        task: ``"classification"`` (labels are class indices, checked against ``num_classes`` and the datalist's
            ``labels`` property) or ``"segmentation"`` (label maps, checked voxel-wise when loaded).
        num_classes: classes (background included for segmentation); ``None``: the datalist's ``labels``, or any
            class index when it declares none.
        label_fraction: share of the section kept, in ``(0, 1]``: the class-stratified, patient-level subset of
            ``monai_transfer.data.label_fractions`` for ``seed`` (a smaller fraction is a subset of a larger one).
        seed: seed of the subset.
        required: a missing section is an error; otherwise it gives ``[]``.

    Raises:
        DatalistError: the section is missing (sections present named) or a file is missing.
        ValueError: a label outside the classes (case named), or a fraction outside ``(0, 1]``.
    """
    if not 0 < float(label_fraction) <= 1:
        raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
    props = load_datalist_file(datalist)
    if section not in props or not isinstance(props[section], list):
        if not required:
            return []
        present = [k for k, v in props.items() if isinstance(v, list)]
        raise DatalistError(f"{os.fspath(datalist)}: no section {section!r}; sections present: {present}")
    rows = load_datalist(datalist, section, required_keys=("image", "label"))
    where = f"{os.path.basename(os.fspath(datalist))} [{section}]"
    if task == "classification" and rows:
        declared = props.get("labels") if isinstance(props.get("labels"), Mapping) else None
        n = int(num_classes) if num_classes is not None else (len(declared) if declared else None)
        check_class_labels(rows, n, where, declared)
    if float(label_fraction) >= 1 or not rows:
        return rows
    patient_key = "patient_id" if all("patient_id" in e for e in rows) else None
    subset = label_fractions(rows, [float(label_fraction)], seed=seed,
                             label_key="label" if task == "classification" else None,
                             patient_key=patient_key)[float(label_fraction)]  # fmt: skip
    actual = len(subset) / len(rows)
    if abs(actual - float(label_fraction)) > 0.05:
        # rounding and the one-case-per-class minimum: say what the run really trains on
        logger.warning("label_fraction %.3g of %s keeps %d of %d cases (%.0f%%): at least one case per class%s",
                       label_fraction, where, len(subset), len(rows), 100 * actual,
                       " and whole patients" if patient_key else "")  # fmt: skip
    return subset
