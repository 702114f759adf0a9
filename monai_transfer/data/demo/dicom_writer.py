"""Write a volume as a DICOM series (one file per slice) whose geometry matches its RAS affine.

The series loads back with :func:`monai_transfer.data.load_series` (and ITK/SimpleITK) as the same ``(X, Y, Z)``
array and RAS affine: column direction = LPS of affine axis 0, row direction = LPS of axis 1, slices along axis 2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from monai_transfer.utils.atomic import atomic_save

__all__ = ["write_dicom_series", "dicom_uid"]

_UID_ROOT = "1.2.826.0.1.3680043.10.1523."  # a documentation-only prefix with generate_uid's hashing


def dicom_uid(*parts: object) -> str:
    """A deterministic UID hashed from ``parts`` (pydicom ``generate_uid`` with entropy sources)."""
    return generate_uid(prefix=_UID_ROOT, entropy_srcs=[str(p) for p in parts])


def write_dicom_series(
    volume: np.ndarray,
    affine: np.ndarray,
    out_dir: str | os.PathLike,
    patient_id: str,
    uid_seed: Sequence[object],
    modality: str = "MR",
    series_description: str = "SIMULATED T1w (monai_transfer demo, built on MNI152)",
    institution: str = "",
    scanner: str = "",
    series_number: int = 1,
) -> list[str]:
    """Write ``volume`` (X, Y, Z) with RAS ``affine`` as int16 DICOM slices with RescaleSlope/Intercept.

    Stored values are ``round((v - intercept) / slope)`` with ``intercept = min(v)`` rounded down and ``slope`` the
    smallest step that fits int16; rescaled values equal ``v`` within ``slope / 2``. Each file is written atomically.

    Args:
        volume: the image, ``(X, Y, Z)``.
        affine: its 4x4 RAS affine (right-handed: positive determinant).
        out_dir: folder for the files ``IM_0001.dcm``, ... (created).
        patient_id: PatientID (and PatientName) written to the headers.
        uid_seed: values hashed into the Study/Series/Frame-of-reference/SOP UIDs (deterministic output).
        modality: DICOM Modality (``MR`` uses MR Image Storage; others use the same IOD layout).
        series_description: SeriesDescription (says the image is simulated).
        institution: InstitutionName (the simulated site).
        scanner: ManufacturerModelName (the simulated scanner).
        series_number: SeriesNumber.

    Returns:
        The written file paths in slice order.
    """
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume (X, Y, Z), got shape {vol.shape}")
    a = np.asarray(affine, dtype=np.float64)
    if np.linalg.det(a[:3, :3]) <= 0:
        raise ValueError("affine must be right-handed (positive determinant) for a slice stack along axis 2")
    lps = np.diag([-1.0, -1.0, 1.0])
    sp = np.linalg.norm(a[:3, :3], axis=0)
    col_dir = lps @ a[:3, 0] / sp[0]
    row_dir = lps @ a[:3, 1] / sp[1]
    lo, hi = float(np.floor(vol.min())), float(vol.max())
    slope = max((hi - lo) / 32000.0, 1e-4)
    stored = np.round((vol - lo) / slope).astype(np.int16)
    study_uid, series_uid, frame_uid = (dicom_uid(*uid_seed, k) for k in ("study", "series", "frame"))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    nx, ny, nz = vol.shape
    for k in range(nz):
        sop = dicom_uid(*uid_seed, "sop", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.PatientName = f"Demo^{patient_id}"
        ds.PatientIdentityRemoved = "YES"
        ds.Manufacturer = "monai_transfer demo (simulation)"
        ds.ManufacturerModelName = scanner
        ds.InstitutionName = institution
        ds.StudyDescription = "monai_transfer simulated demo study"
        ds.SeriesDescription = series_description
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in lps @ (a @ np.array([0.0, 0.0, k, 1.0]))[:3]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*col_dir, *row_dir)]
        ds.PixelSpacing = [f"{sp[1]:.6f}", f"{sp[0]:.6f}"]
        ds.SliceThickness = f"{sp[2]:.6f}"
        ds.SpacingBetweenSlices = f"{sp[2]:.6f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = f"{lo:.6f}"
        ds.RescaleSlope = f"{slope:.10g}"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype("<i2").tobytes()
        path = os.path.join(os.fspath(out_dir), f"IM_{k + 1:04d}.dcm")
        atomic_save(path, lambda p, ds=ds: pydicom.dcmwrite(p, ds, enforce_file_format=True))
        paths.append(path)
    return paths
