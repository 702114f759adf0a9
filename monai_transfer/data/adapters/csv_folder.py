"""A folder of images (NIfTI, PNG/JPEG, DICOM files or DICOM series folders) with a CSV of labels.

CSV columns: ``image`` (a path relative to the folder, or absolute), ``label``, and optionally ``patient_id`` and
``site`` (any further columns are kept as metadata). Labels may be integers (classes), decimals (regression),
class names (mapped to indices in sorted order, or in the order of ``classes``), or multi-label lists written
``"0;1;0"``. Every problem is reported with the CSV line number.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["load_csv_folder", "image_format"]

_FORMATS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".dcm": "dicom",
    ".nrrd": "nrrd",
    ".mha": "mha",
}
_MULTI_SEP = (";", "|")


def image_format(path: str) -> str | None:
    """``"nifti"``, ``"png"``, ``"jpeg"``, ``"dicom"`` (file), ``"dicom_series"`` (folder), ``"nrrd"``, ``"mha"``."""
    if os.path.isdir(path):
        return "dicom_series"
    low = path.lower()
    for suf in sorted(_FORMATS, key=len, reverse=True):
        if low.endswith(suf):
            return _FORMATS[suf]
    return None


def _parse_label(text: str, label_type: str) -> Any:
    t = text.strip()
    if label_type in ("auto", "multilabel") and any(s in t for s in _MULTI_SEP):
        sep = next(s for s in _MULTI_SEP if s in t)
        return [int(v) for v in t.split(sep)]
    if label_type == "multilabel":
        return [int(t)]
    if label_type in ("auto", "int"):
        try:
            return int(t)
        except ValueError:
            if label_type == "int":
                raise
    if label_type in ("auto", "float"):
        try:
            return float(t)
        except ValueError:
            if label_type == "float":
                raise
    return t  # a class name


def load_csv_folder(
    root: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    image_col: str = "image",
    label_col: str | None = "label",
    label_type: str = "auto",
    classes: Sequence[str] | None = None,
    check_files: bool = True,
) -> list[dict[str, Any]]:
    """A MONAI datalist from an image folder and a CSV of labels.

    Args:
        root: the image folder; relative CSV paths start here.
        csv_path: the CSV (default ``root/labels.csv``).
        image_col: column of image paths.
        label_col: column of labels; ``None`` for an unlabeled folder.
        label_type: ``"auto"``, ``"int"``, ``"float"``, ``"multilabel"`` (``"0;1;1"``) or ``"name"`` (class names).
        classes: class names in index order (class-name labels); default: sorted names found.
        check_files: check that every image exists and has a known format.

    Returns:
        Entries ``{"image", "label", "image_format", "patient_id"?, "site"?, ..., "label_name"?}`` in CSV order.

    Raises:
        FileNotFoundError: the CSV or an image is missing (line named). ValueError: missing columns, empty or
            malformed labels, unknown class names, inconsistent multi-label lengths, duplicate images.
    """
    root = os.path.abspath(os.fspath(root))
    csv_path = os.fspath(csv_path) if csv_path is not None else os.path.join(root, "labels.csv")
    if label_type not in ("auto", "int", "float", "multilabel", "name"):
        raise ValueError(f"label_type must be auto, int, float, multilabel or name; got {label_type!r}")
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"label CSV not found: {csv_path}")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        rows = list(reader)
    needed = [image_col] + ([label_col] if label_col else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; columns present: {columns}")
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path}:{n}"
        rel = (row.get(image_col) or "").strip()
        if not rel:
            raise ValueError(f"{where}: empty {image_col!r}")
        path = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(root, rel))
        if path in seen:
            raise ValueError(f"{where}: image {rel!r} already listed on line {seen[path]}")
        seen[path] = n
        if check_files and not os.path.exists(path):
            raise FileNotFoundError(f"{where}: image not found: {path}")
        fmt = image_format(path)
        if check_files and fmt is None:
            raise ValueError(
                f"{where}: unknown image format {rel!r}; expected {sorted(set(_FORMATS.values()))} or a folder"
            )
        if check_files and fmt == "dicom_series" and not any(os.scandir(path)):
            raise ValueError(f"{where}: DICOM series folder is empty: {path}")
        entry: dict[str, Any] = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
        entry.pop(image_col, None)
        entry = {"image": path, **entry, "image_format": fmt}
        if label_col:
            text = (row.get(label_col) or "").strip()
            if not text:
                raise ValueError(f"{where}: empty label in column {label_col!r}")
            try:
                entry["label"] = _parse_label(text, "name" if label_type == "name" else label_type)
            except ValueError as e:
                raise ValueError(f"{where}: label {text!r} is not a valid {label_type} label ({e})") from None
            if label_col != "label":
                entry.pop(label_col, None)
        for k in ("patient_id", "site"):
            if k in entry and entry[k] == "":
                del entry[k]
        out.append(entry)
    if label_col and out:
        _normalise_labels(out, csv_path, classes)
    return out


def _normalise_labels(out: list[dict[str, Any]], csv_path: str, classes: Sequence[str] | None) -> None:
    labels = [e["label"] for e in out]
    kinds = {type(v).__name__ for v in labels}
    if kinds <= {"int", "float"}:
        if "float" in kinds:
            for e in out:
                e["label"] = float(e["label"])
        return
    if kinds == {"list"}:
        lengths = {len(v) for v in labels}
        if len(lengths) > 1:
            raise ValueError(f"{csv_path}: multi-label rows have different lengths {sorted(lengths)}")
        for i, v in enumerate(labels):
            if any(x not in (0, 1) for x in v):
                raise ValueError(f"{csv_path}:{i + 2}: multi-label values must be 0/1, got {v}")
        return
    if kinds == {"str"} or (kinds <= {"str", "int"} and classes is not None):
        names = [str(v) for v in labels]
        order = list(classes) if classes is not None else sorted(set(names))
        index = {c: i for i, c in enumerate(order)}
        for i, (e, name) in enumerate(zip(out, names)):
            if name not in index:
                raise ValueError(f"{csv_path}:{i + 2}: unknown class {name!r}; classes: {order}")
            e["label"] = index[name]
            e["label_name"] = name
        return
    raise ValueError(f"{csv_path}: labels mix types {sorted(kinds)} (e.g. numbers and names); fix the label column")
