"""Medical Segmentation Decathlon task folders (Antonelli et al., Nature Communications 2022).

A task folder (``Task09_Spleen``) holds ``dataset.json`` (``name``, ``modality`` {"0": "CT"}, ``labels``
{"0": "background", ...}, ``numTraining``, ``numTest``, ``training`` [{"image": "./imagesTr/x.nii.gz", "label":
"./labelsTr/x.nii.gz"}], ``test`` ["./imagesTs/y.nii.gz"]) and the ``imagesTr``, ``labelsTr``, ``imagesTs`` folders.
Downloading is MONAI's ``monai.apps.DecathlonDataset`` (URLs and MD5s there); this adapter reads a folder on disk.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from ..case_ids import image_stem
from ..datalist_format import DatalistError, validate_datalist

__all__ = ["load_msd", "msd_properties"]

_REQUIRED = ("name", "modality", "labels", "training")


def _read(root: str) -> tuple[str, dict[str, Any]]:
    path = os.path.join(root, "dataset.json") if os.path.isdir(root) else root
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no MSD dataset.json at {path}")
    with open(path, encoding="utf-8") as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise DatalistError(f"{path}: not valid JSON: {e}") from e
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise DatalistError(f"{path}: missing MSD key(s) {missing}; keys present: {sorted(obj)}")
    for k in ("modality", "labels"):
        if not isinstance(obj[k], dict) or not all(str(i).isdigit() for i in obj[k]):
            raise DatalistError(f"{path}: {k!r} must map channel/class indices to names, got {obj[k]!r}")
    return path, obj


def msd_properties(root: str | os.PathLike) -> dict[str, Any]:
    """Task properties of an MSD folder: name, description, modality, labels (int keys), counts, tensorImageSize."""
    _, obj = _read(os.fspath(root))
    props = {k: v for k, v in obj.items() if k not in ("training", "test")}
    props["modality"] = {int(k): v for k, v in obj["modality"].items()}
    props["labels"] = {int(k): v for k, v in obj["labels"].items()}
    props["num_channels"] = len(obj["modality"])
    props["num_classes"] = len(obj["labels"])
    return props


def load_msd(
    root: str | os.PathLike, section: str = "training", check_files: bool = True, strict: bool = False
) -> list[dict[str, Any]]:
    """A MONAI datalist from an MSD task folder, with absolute paths and ``patient_id`` (case id).

    Args:
        root: the task folder (or its ``dataset.json``).
        section: ``"training"`` (image + label) or ``"test"`` (images only).
        check_files: check that every image/label exists (error names the entry).
        strict: raise when ``numTraining``/``numTest`` disagree with the lists (else a warning).

    Returns:
        Entries ``{"image", "label" (training), "patient_id", "modality"}``.
    """
    path, obj = _read(os.fspath(root))
    base = os.path.dirname(os.path.abspath(path))
    if section not in ("training", "test"):
        raise ValueError(f"section must be 'training' or 'test', got {section!r}")
    raw = obj.get(section, [])
    count_key = "numTraining" if section == "training" else "numTest"
    if count_key in obj and int(obj[count_key]) != len(raw):
        msg = f"{path}: {count_key} = {obj[count_key]} but {section!r} lists {len(raw)} cases"
        if strict:
            raise DatalistError(msg)
        warnings.warn(msg, stacklevel=2)
    modality = {int(k): v for k, v in obj["modality"].items()}
    out = []
    for i, e in enumerate(raw):
        entry = {"image": e} if isinstance(e, str) else dict(e) if isinstance(e, dict) else e
        if not isinstance(entry, dict):
            raise DatalistError(f"{path}:{section}[{i}]: expected a dict or a path, got {e!r}")
        for k in ("image", "label"):
            if isinstance(entry.get(k), str):
                entry[k] = os.path.normpath(os.path.join(base, entry[k]))
        if isinstance(entry.get("image"), str):
            entry.setdefault("patient_id", image_stem(entry["image"]))
        entry["modality"] = modality[0] if len(modality) == 1 else [modality[k] for k in sorted(modality)]
        out.append(entry)
    required = ("image", "label") if section == "training" else ("image",)
    validate_datalist(out, required, ("image", "label"), check_files, name=f"{path}:{section}")
    return out
