"""DICOMweb servers (Orthanc, a hospital PACS) as a data source: credentials, a client, and a scan into the index.

``scan_server(url, index_dir, query=...)`` writes the same SQLite series index as a folder scan
(:func:`monai_transfer.data.dicom.scan`); each series records its origin (server URL and UIDs), never credentials.
"""

from __future__ import annotations

from .client import DicomwebAuthError, DicomwebClient, DicomwebError
from .credentials import Credentials, public_url, resolve_credentials
from .scan import EmptyQueryError, ServerScanStats, parse_query, scan_server

__all__ = [
    "scan_server",
    "ServerScanStats",
    "parse_query",
    "DicomwebClient",
    "DicomwebError",
    "DicomwebAuthError",
    "EmptyQueryError",
    "Credentials",
    "resolve_credentials",
    "public_url",
]
