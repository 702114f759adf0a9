"""Reading MSD-style JSON datalists (:mod:`monai_transfer.data.datalist_format` has the format, its checks and the
writer); a MedMNIST ``.npz`` is read through the datalist it converts to
(:func:`monai_transfer.data.adapters.medmnist.medmnist_datalist`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from monai_transfer.data.adapters.medmnist import is_npz, medmnist_datalist
from monai_transfer.data.datalist_format import (
    DEFAULT_PATH_KEYS,
    DatalistError,
    _looks_relative,
    _resolve,
    validate_datalist,
)

__all__ = ["load_datalist", "load_datalist_file", "datalist_path"]


def datalist_path(path: str | os.PathLike) -> str:
    """The datalist JSON file that ``path`` stands for: ``path`` itself, or for a MedMNIST ``.npz`` the datalist it is
    converted to once (``monai_transfer.data.adapters.medmnist_datalist``; cached under ``$MONAI_TRANSFER_CACHE``).

    Raises:
        FileNotFoundError: no such file. DatalistError: a ``.npz`` that is not in the MedMNIST layout.
    """
    return medmnist_datalist(path) if is_npz(path) else os.fspath(path)


def load_datalist_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a datalist JSON file (or a MedMNIST ``.npz``, see :func:`datalist_path`) as a dict (properties and
    sections, paths as stored)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DatalistError(_folder_message(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"datalist file not found: {path}")
    path = datalist_path(path)
    with open(path, encoding="utf-8") as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise DatalistError(f"{path}: not valid JSON: {e}") from e
        except UnicodeDecodeError:
            raise DatalistError(
                f"{path}: not a datalist JSON file (binary content); a MedMNIST file must be named *.npz"
            ) from None
    if not isinstance(obj, dict):
        raise DatalistError(
            f"{path}: expected a JSON object with sections such as 'training', got {type(obj).__name__}"
        )
    return obj


_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".dcm", ".npy", ".npz")


def _folder_message(path: str) -> str:
    """Why a folder given where a datalist file belongs cannot be used, and what to give instead (one sentence)."""
    names = sorted(os.listdir(path))
    datalists = [n for n in names if n.endswith(".json")]
    images = [n for n in names if n.lower().endswith(_IMAGE_SUFFIXES)]
    if not names:
        what = "an empty folder"
    elif datalists:
        what = f"a folder (it holds {', '.join(datalists[:3])}{', ...' if len(datalists) > 3 else ''}: give that file)"
    elif images:
        what = (f"a folder of {len(images)} image(s) and no datalist: list them in a datalist JSON file "
                "(monai_transfer.data.write_datalist)")  # fmt: skip
    else:
        what = "a folder that holds no images and no datalist"
    return f"{path} is {what}; --data takes a datalist JSON file (or a MedMNIST .npz)"


def load_datalist(
    path: str | os.PathLike,
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
    required_keys: Iterable[str] = ("image",),
    path_keys: Iterable[str] = DEFAULT_PATH_KEYS,
    check_files: bool = True,
) -> list[dict[str, Any]]:
    """Load one section of a datalist JSON file with absolute paths (like ``monai.data.load_decathlon_datalist``).

    Args:
        path: the JSON file (or a MedMNIST ``.npz``, see :func:`datalist_path`).
        key: the section (``"training"``, ``"validation"``, ``"test"``, ``"unlabeled"``, ...).
        base_dir: folder that relative paths start from; default: the JSON file's folder.
        required_keys: keys every entry must have.
        path_keys: keys holding paths (resolved against ``base_dir`` and checked); values of other keys that start
            with ``./`` or ``../`` (as :func:`write_datalist` stores paths) are resolved and checked too.
        check_files: check that every path exists.

    Returns:
        A list of entry dicts. Bare string entries (MSD ``"test": ["./imagesTs/x.nii.gz"]``) become ``{"image": path}``.

    Raises:
        DatalistError: the section is missing, or an entry lacks a key or points at a missing file (named).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        path = datalist_path(path)
    obj = load_datalist_file(path)
    if key not in obj:
        sections = [k for k, v in obj.items() if isinstance(v, list)]
        raise DatalistError(f"{path}: no section {key!r}; sections present: {sections}")
    raw = obj[key]
    if not isinstance(raw, list):
        raise DatalistError(f"{path}: section {key!r} is not a list")
    base = os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.path.abspath(path))
    pkeys = tuple(path_keys)
    out: list[dict[str, Any]] = []
    extra: set[str] = set()
    for e in raw:
        entry = {"image": e} if isinstance(e, str) else e
        if isinstance(entry, dict):
            extra |= {k for k, v in entry.items() if k not in pkeys and _looks_relative(v)}
            entry = {k: (_resolve(v, base) if k in pkeys or _looks_relative(v) else v) for k, v in entry.items()}
        out.append(entry)
    validate_datalist(out, required_keys, pkeys + tuple(sorted(extra)), check_files, name=f"{path}:{key}")
    return out
