"""Helpers for the data tests: a real volume as NIfTI, written back as DICOM slices with our own headers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def real_volume_nifti(path: Path, shape: tuple[int, int, int] = (48, 56, 24)) -> Path:
    """Write a real-anatomy NIfTI (nilearn MNI152 crop; pydicom's enhanced MR frames as a fallback)."""
    try:
        from nilearn.datasets import load_mni152_template

        vol = np.asarray(load_mni152_template(resolution=2).dataobj, dtype=np.float32)
        cx, cy, cz = (s // 2 for s in vol.shape)
        x, y, z = shape
        vol = vol[cx - x // 2 : cx - x // 2 + x, cy - y // 2 : cy - y // 2 + y, cz - z // 2 : cz - z // 2 + z]
        vol = np.round(vol / max(float(vol.max()), 1e-6) * 1000).astype(np.int16)
    except ImportError:
        from pydicom.data import get_testdata_file

        ds = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
        vol = np.transpose(ds.pixel_array.astype(np.int16), (2, 1, 0))
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 1.0, 1.0])), str(path))
    return path


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from three angles (radians)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_series(
    volume: np.ndarray,
    out_dir: Path,
    *,
    spacing: Sequence[float] = (0.9, 1.1, 2.5),
    rot: np.ndarray | None = None,
    origin: Sequence[float] = (-30.0, -40.0, 12.5),
    series_uid: str | None = None,
    names: Sequence[str] | None = None,
    slope: float = 2.0,
    intercept: float = -1024.0,
    instance_numbers: Sequence[int] | None = None,
    patient_id: str = "PAT-0001",
    description: str = "synthetic from NIfTI",
) -> list[dict]:
    """Write ``volume`` (X, Y, Z) as one DICOM file per slice; return per-slice info (path, sop_uid, position).

    Stored values are ``(volume - intercept) / slope`` so that the rescaled values equal ``volume``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rot = np.eye(3) if rot is None else rot
    dx, dy, dz = spacing
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    stored = np.round((volume.astype(np.float64) - intercept) / slope).astype(np.int16)
    info = []
    nz = volume.shape[2]
    for k in range(nz):
        pos = np.asarray(origin) + k * dz * rot[:, 2]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.BodyPartExamined = "BRAIN"
        ds.PatientID = patient_id
        ds.PatientName = "Doe^Jane"
        ds.PatientBirthDate = "19700101"
        ds.StudyDescription = "test study"
        ds.SeriesDescription = description
        ds.SeriesNumber = 7
        ds.InstanceNumber = int(instance_numbers[k]) if instance_numbers is not None else k + 1
        ds.ImageOrientationPatient = [f"{v:.10f}" for v in np.concatenate([rot[:, 0], rot[:, 1]])]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.PixelSpacing = [f"{dy:g}", f"{dx:g}"]
        ds.SliceThickness = f"{dz:g}"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        name = names[k] if names is not None else f"slice_{k:03d}.dcm"
        path = out_dir / name
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        info.append({"path": str(path), "sop_uid": sop, "position": pos, "k": k})
    return info


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """``{relative path: (size, sha256)}`` of every file under ``root``."""
    import hashlib

    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out
