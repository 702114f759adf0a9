"""The datalist format: its error, its checks and how a datalist file is written.

A datalist file is a JSON object in the layout of the Medical Segmentation Decathlon ``dataset.json`` and of
``monai.data.load_decathlon_datalist``: optional properties (``name``, ``modality``, ``labels``, ...) plus one list of
entries per section (``"training"``, ``"validation"``, ``"test"``, and ``"unlabeled"`` for pretraining pools). An entry
is a dict with an ``"image"`` (a path, or a list of paths for multi-channel inputs), optionally a ``"label"`` (a path
for segmentation, a number or a list of numbers for classification) and metadata such as ``"patient_id"`` and
``"site"``. Paths are stored relative to the JSON file (``./images/x.nii.gz``) and resolved to absolute paths on load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from monai_transfer.utils.atomic import atomic_write_json

__all__ = [
    "DatalistError",
    "write_datalist",
    "validate_datalist",
    "unlabeled_datalist",
    "DEFAULT_PATH_KEYS",
    "UNLABELED_KEY",
]

DEFAULT_PATH_KEYS: tuple[str, ...] = ("image", "label")
UNLABELED_KEY = "unlabeled"


class DatalistError(ValueError):
    """A datalist entry is malformed or points at a missing file; the message names the entry."""


def _describe(entry: Any, index: int, name: str) -> str:
    ident = ""
    if isinstance(entry, Mapping):
        for k in ("patient_id", "image"):
            if k in entry and isinstance(entry[k], (str, int)):
                ident = f" ({k}={entry[k]!r})"
                break
    return f"{name}[{index}]{ident}"


def _is_path_value(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _looks_relative(value: Any) -> bool:
    """A string stored as an explicit relative path (``./x`` or ``../x``), as :func:`write_datalist` writes them."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_looks_relative(v) for v in value)
    return isinstance(value, str) and (value.startswith("./") or value.startswith("../"))


def _resolve(value: Any, base_dir: str) -> Any:
    if _is_path_value(value):
        v = os.fspath(value)
        return os.path.normpath(v if os.path.isabs(v) else os.path.join(base_dir, v))
    if isinstance(value, (list, tuple)) and value and all(_is_path_value(v) for v in value):
        return [_resolve(v, base_dir) for v in value]
    return value


def _relativize(value: Any, base_dir: str) -> Any:
    if _is_path_value(value):
        v = os.fspath(value)
        if os.path.isabs(v):
            rel = os.path.relpath(v, base_dir)
            if not rel.startswith(".."):
                v = "./" + rel.replace(os.sep, "/")
        return v
    if isinstance(value, (list, tuple)) and value and all(_is_path_value(v) for v in value):
        return [_relativize(v, base_dir) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays and tuples to Python types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def validate_datalist(
    entries: Sequence[Any],
    required_keys: Iterable[str] = ("image",),
    path_keys: Iterable[str] = DEFAULT_PATH_KEYS,
    check_files: bool = True,
    name: str = "datalist",
) -> None:
    """Check that every entry is a dict holding ``required_keys`` and that its path values exist.

    Args:
        entries: the datalist.
        required_keys: keys every entry must have (``("image", "label")`` for a labelled set).
        path_keys: keys whose string values are file or folder paths (a DICOM series may be a folder).
            Non-string values (a class index under ``"label"``) are not paths and are not checked.
        check_files: check that path values exist.
        name: how the list is named in error messages (e.g. the JSON file and section).

    Raises:
        DatalistError: naming the first bad entry (index and patient_id/image), the key and the problem.
    """
    required = tuple(required_keys)
    pkeys = tuple(path_keys)
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise DatalistError(f"{name}: expected a list of entries, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        where = _describe(entry, i, name)
        if not isinstance(entry, Mapping):
            raise DatalistError(f"{where}: expected a dict entry, got {type(entry).__name__}: {entry!r}")
        missing = [k for k in required if k not in entry]
        if missing:
            raise DatalistError(f"{where}: missing key(s) {missing}; entry has {sorted(entry)}")
        for k in required:
            if entry[k] is None or (isinstance(entry[k], str) and not entry[k].strip()):
                raise DatalistError(f"{where}: key {k!r} is empty")
        if not check_files:
            continue
        for k in pkeys:
            if k not in entry:
                continue
            values = entry[k] if isinstance(entry[k], (list, tuple)) else [entry[k]]
            for v in values:
                if _is_path_value(v) and not os.path.exists(v):
                    raise DatalistError(f"{where}: {k} file not found: {os.fspath(v)}")


def write_datalist(
    path: str | os.PathLike,
    sections: Mapping[str, Sequence[Mapping[str, Any]]],
    properties: Mapping[str, Any] | None = None,
    path_keys: Iterable[str] = DEFAULT_PATH_KEYS,
    relative: bool = True,
    check_files: bool = True,
) -> str:
    """Write a datalist JSON file atomically.

    Args:
        path: the JSON file to write.
        sections: section name -> entries (e.g. ``{"training": [...], "validation": [...]}``).
        properties: dataset properties written before the sections (``name``, ``modality``, ``labels``, ...).
        path_keys: keys holding paths.
        relative: store paths that lie under the JSON file's folder relative to it (``./images/x.nii.gz``).
        check_files: check that every path exists before writing.

    Returns:
        The path written.
    """
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    pkeys = tuple(path_keys)
    obj: dict[str, Any] = dict(_plain(dict(properties or {})))
    for name, entries in sections.items():
        entries = list(entries)
        validate_datalist(entries, (), pkeys, check_files, name=f"{path}:{name}")
        rows = []
        for e in entries:
            row = {k: (_relativize(v, base) if relative and k in pkeys else v) for k, v in e.items()}
            rows.append(_plain(row))
        obj[name] = rows
    if "training" in sections and "numTraining" not in obj:
        obj["numTraining"] = len(obj["training"])
    return atomic_write_json(path, obj)


def unlabeled_datalist(
    images: Iterable[str | os.PathLike | Mapping[str, Any]], keep: Iterable[str] = ("patient_id", "site")
) -> list[dict[str, Any]]:
    """An unlabeled pretraining pool: ``[{"image": path, ...metadata}]`` from paths or from labelled entries.

    Args:
        images: image paths, or datalist entries (their ``"label"`` is dropped).
        keep: metadata keys copied from entries.
    """
    out = []
    for item in images:
        if isinstance(item, Mapping):
            row = {"image": item["image"]}
            row.update({k: item[k] for k in keep if k in item})
        else:
            row = {"image": os.fspath(item)}
        out.append(row)
    return out
