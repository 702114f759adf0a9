"""DICOM series discovery, validation, indexing (SQLite) and loading into MONAI MetaTensors."""

from __future__ import annotations

from .discovery import HeaderError, read_header
from .geometry import affine_ras, slice_normal, sort_by_position
from .loader import DecoderUnavailableError, list_series, load_series
from .privacy import hash_identifier, load_or_create_salt
from .quarantine import QuarantineError
from .report import summary_report
from .scanner import ScanStats, scan

__all__ = [
    "scan",
    "ScanStats",
    "load_series",
    "list_series",
    "summary_report",
    "QuarantineError",
    "DecoderUnavailableError",
    "HeaderError",
    "read_header",
    "affine_ras",
    "slice_normal",
    "sort_by_position",
    "hash_identifier",
    "load_or_create_salt",
]
