"""Data: DICOM series discovery/validation/index/loading and NIfTI/NRRD/MHA reading with the same record."""

from __future__ import annotations

from .dicom import QuarantineError, ScanStats, list_series, load_series, scan, summary_report
from .readers import image_record, read_image

__all__ = [
    "scan",
    "load_series",
    "summary_report",
    "list_series",
    "ScanStats",
    "QuarantineError",
    "read_image",
    "image_record",
]
