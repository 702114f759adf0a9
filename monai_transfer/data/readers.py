"""NIfTI / NRRD / MHA volumes through MONAI's readers, described by the same record as an indexed DICOM series."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from monai.data import MetaTensor
from monai.transforms import LoadImage

__all__ = ["read_image", "image_record"]

_SUFFIX_READER = {
    ".nii": "NibabelReader",
    ".nii.gz": "NibabelReader",
    ".nrrd": "ITKReader",
    ".mha": "ITKReader",
    ".mhd": "ITKReader",
    ".nhdr": "ITKReader",
}


def _reader_for(path: str) -> str:
    low = path.lower()
    for suffix, reader in sorted(_SUFFIX_READER.items(), key=lambda kv: -len(kv[0])):
        if low.endswith(suffix):
            return reader
    raise ValueError(f"unsupported image file {path}; expected one of {sorted(_SUFFIX_READER)}")


def read_image(path: str | os.PathLike, reader: str | None = None, dtype: Any = np.float32) -> MetaTensor:
    """Load a NIfTI/NRRD/MHA volume channel-first with a RAS affine (``LoadImage(..., ensure_channel_first=True)``).

    Args:
        path: the image file.
        reader: MONAI reader name; default NibabelReader for NIfTI, ITKReader for NRRD/MHA.
        dtype: output dtype.

    Returns:
        A MetaTensor ``(C, X, Y, Z)``; ``meta["series_record"]`` holds :func:`image_record`'s record.
    """
    path = str(path)
    img = LoadImage(reader=reader or _reader_for(path), image_only=True, ensure_channel_first=True, dtype=dtype)(path)
    img.meta["series_record"] = image_record(path, img)
    return img


def image_record(path: str | os.PathLike, image: MetaTensor | None = None) -> dict[str, Any]:
    """The series record of a volume file, with the keys of a DICOM index record (DICOM-only fields ``None``).

    Args:
        path: the image file.
        image: the already loaded image (loaded with :func:`read_image` when not given).
    """
    path = str(path)
    img = image if image is not None else read_image(path)
    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    dims = [int(s) for s in img.shape[1:]]
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    cosines = ras_to_lps @ (affine[:3, :3] / np.where(spacing == 0, 1, spacing))
    return {
        "series_key": os.path.abspath(path),
        "series_uid": None,
        "study_uid": None,
        "modality": None,
        "body_part": None,
        "study_description": None,
        "series_description": None,
        "series_number": None,
        "sop_class": None,
        "dims": dims,
        "spacing": [float(s) for s in spacing],
        "orientation": [float(v) for v in np.concatenate([cosines[:, 0], cosines[:, 1]])] if len(dims) >= 2 else None,
        "frames": dims[2] if len(dims) > 2 else 1,
        "n_files": 1,
        "samples_per_pixel": int(img.shape[0]),
        "multi_frame": False,
        "frame_order": None,
        "transfer_syntaxes": [os.path.basename(path).split(".", 1)[-1]],
        "affine": affine.round(8).tolist(),
        "patient_id_hash": None,
        "patient_name_hash": None,
        "birth_date_hash": None,
        "files": [os.path.abspath(path)],
        "status": "ok",
        "issues": [],
    }
