"""DICOM JSON instance metadata (WADO-RS ``/metadata``) to the header summary a folder scan stores per file.

The same :func:`monai_transfer.data.dicom.discovery.header_from_dataset` turns a data set into the summary, so a
server's instances are checked exactly as files are. DICOMweb metadata carries no transfer syntax (file meta
information is not part of it): the header says so until the instance is retrieved.
"""

from __future__ import annotations

import warnings
from typing import Any

from monai.utils import optional_import

from ..dicom.discovery import HeaderError, header_from_dataset

pydicom, _ = optional_import("pydicom")

__all__ = ["header_from_json", "json_value", "TRANSFER_SYNTAX_UNKNOWN"]

TRANSFER_SYNTAX_UNKNOWN = "unknown (not in DICOMweb metadata)"


def json_value(item: dict[str, Any], keyword: str) -> Any:
    """The first value of attribute ``keyword`` in a DICOM JSON data set, or ``None``."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def header_from_json(item: dict[str, Any], salt: bytes, origin_url: str) -> dict[str, Any]:
    """The header summary of one instance's DICOM JSON metadata.

    Args:
        item: one element of a WADO-RS metadata answer.
        salt: salt for the patient identifier hashes (PatientID, PatientName, PatientBirthDate).
        origin_url: the server's public URL (recorded in the header as ``origin``).

    Raises:
        HeaderError: unreadable metadata, a non-image object (SR, PR, ...), missing UIDs.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *_: None)
        except Exception as e:  # noqa: BLE001 - malformed DICOM JSON from a server
            raise HeaderError(f"unreadable DICOM JSON metadata: {type(e).__name__}: {e}") from None
        h = header_from_dataset(ds, salt, ts_name_missing=TRANSFER_SYNTAX_UNKNOWN)
    h["origin"] = origin_url
    return h
