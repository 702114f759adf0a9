"""Read a projection radiograph (CR/DX/MG) with the DICOM modality LUT and VOI LUT applied (pydicom)."""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["read_radiograph"]


def read_radiograph(path: str | os.PathLike, apply_voi: bool = True, voi_index: int = 0) -> MetaTensor:
    """Load a single-frame grey DICOM radiograph as ``(1, X, Y)`` float32 with the modality and VOI LUTs applied.

    The photometric interpretation is kept in ``meta["PhotometricInterpretation"]`` (``MONOCHROME1`` images are not
    inverted here: :class:`monai_transfer.transforms.RadiographNormalize` does it), so the intensity order after the
    VOI LUT is the file's own.

    Args:
        path: the DICOM file.
        apply_voi: apply the VOI LUT sequence or the window (WindowCenter/Width, VOILUTFunction) when present.
        voi_index: which VOI LUT / window to use when the file holds several.

    Returns:
        A MetaTensor ``(1, X, Y)`` (X = column index, as MONAI's readers), identity-like affine from PixelSpacing.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(os.fspath(path))
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ValueError(f"{path}: expected a grey radiograph, got SamplesPerPixel={ds.SamplesPerPixel}")
    arr = ds.pixel_array
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-frame image, got pixel array shape {arr.shape}")
    arr = apply_modality_lut(arr, ds)
    if apply_voi and ("VOILUTSequence" in ds or "WindowCenter" in ds):
        arr = apply_voi_lut(arr, ds, index=voi_index)
    spacing = ds.get("ImagerPixelSpacing") or ds.get("PixelSpacing") or [1.0, 1.0]
    affine = torch.diag(torch.tensor([float(spacing[1]), float(spacing[0]), 1.0, 1.0], dtype=torch.float64))
    meta = {
        "PhotometricInterpretation": str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        "Modality": str(ds.get("Modality", "")),
        "filename_or_obj": os.fspath(path),
        "spatial_shape": np.asarray(arr.shape[::-1]),
    }
    data = torch.as_tensor(np.ascontiguousarray(np.asarray(arr, dtype=np.float32).T[None]))
    return MetaTensor(data, affine=affine, meta=meta)
