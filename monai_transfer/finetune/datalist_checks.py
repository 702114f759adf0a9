"""What a fine-tuning datalist says about its task, checked before anything trains: the spatial dimensions, the number
of classes (a ``num_classes`` that disagrees with the labels is named), and the class counts that weight the loss.

Entries are MSD-style dicts (``{"image": path, "label": int | path}``) from ``monai_transfer.data.load_datalist``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import LoadImage

__all__ = ["TASKS", "infer_spatial_dims", "check_num_classes", "class_counts"]

TASKS = ("classification", "segmentation")


def infer_spatial_dims(entries: Sequence[Mapping[str, Any]], properties: Mapping[str, Any] | None = None) -> int:
    """2 or 3, from the datalist's ``tensorImageSize`` property, else from the first image's shape."""
    size = str((properties or {}).get("tensorImageSize", "")).upper()
    if size in ("2D", "3D"):
        return int(size[0])
    if not entries:
        raise ValueError("cannot infer spatial_dims from an empty datalist")
    img = LoadImage(image_only=True, ensure_channel_first=True)(entries[0]["image"])
    dims = img.ndim - 1
    if dims not in (2, 3):
        raise ValueError(f"cannot infer spatial_dims from {entries[0]['image']} with shape {tuple(img.shape)}")
    return dims


def _scalar_label(entry: Mapping[str, Any], label_key: str) -> Any:
    if label_key not in entry:
        raise KeyError(f"datalist entry {entry.get('image', entry)!r} has no {label_key!r} key")
    return entry[label_key]


def check_num_classes(
    entries: Sequence[Mapping[str, Any]],
    task: str,
    num_classes: int | None,
    properties: Mapping[str, Any] | None = None,
    label_key: str = "label",
) -> int:
    """Check (or infer, when ``None``) ``num_classes`` against the labels the datalist declares or holds.

    Classification: every label must be an integer in ``[0, num_classes)`` (the entry is named otherwise) and the
    number of classes must equal ``max(label) + 1`` of the section. Segmentation: ``num_classes`` must equal the
    number of entries in the datalist's ``labels`` property when there is one (label maps are checked voxel-wise
    by ``CheckLabelRanged`` when loaded).

    Returns:
        The number of classes.

    Raises:
        ValueError: the problem named (classes found versus given, or the entry with a bad label).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    declared = (properties or {}).get("labels")
    if task == "segmentation":
        if isinstance(declared, Mapping) and declared:
            n = len(declared)
            if num_classes is not None and int(num_classes) != n:
                raise ValueError(
                    f"num_classes={num_classes} but the datalist declares {n} labels {dict(declared)}; "
                    "num_classes counts the background"
                )
            return n
        if num_classes is None:
            raise ValueError("the datalist has no 'labels' property; give num_classes (background included)")
        return int(num_classes)
    values = []
    for e in entries:
        v = _scalar_label(e, label_key)
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"classification label {v!r} of {e.get('image')} is not a class index") from None
        if not math.isfinite(f) or f != int(f) or f < 0:
            raise ValueError(f"classification label {v!r} of {e.get('image')} is not a class index >= 0")
        if num_classes is not None and f >= num_classes:
            raise ValueError(
                f"label {int(f)} of {e.get('image')} is outside [0, {num_classes}) (num_classes={num_classes})"
            )
        values.append(int(f))
    found = sorted(set(values))
    n_found = max(found) + 1 if found else 0
    if num_classes is None:
        if n_found < 2:
            raise ValueError(f"found labels {found}; classification needs at least two classes")
        return n_found
    if int(num_classes) != n_found:
        raise ValueError(
            f"num_classes={num_classes} but the labels found in the datalist are {found} "
            f"(that is {n_found} classes); set num_classes={n_found}"
        )
    return int(num_classes)


def class_counts(
    entries: Sequence[Mapping[str, Any]], task: str, num_classes: int, label_key: str = "label"
) -> list[float]:
    """Per-class counts in ``entries``: images for classification, voxels of the label maps for segmentation."""
    counts = np.zeros(num_classes, dtype=np.float64)
    if task == "classification":
        for e in entries:
            counts[int(float(e[label_key]))] += 1
        return counts.tolist()
    loader = LoadImage(image_only=True)
    for e in entries:
        lab = np.asarray(loader(e[label_key])).astype(np.int64).ravel()
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"label map {e[label_key]} holds values outside [0, {num_classes})")
        counts += np.bincount(lab, minlength=num_classes)[:num_classes]
    return counts.tolist()
