"""Find candidate files under a folder tree and read DICOM headers without pixel data.

File names and DICOMDIR are ignored for grouping: every regular file is a candidate, DICOMDIR files are recognised
and skipped (their records would only repeat what the headers say). Headers are read with
``stop_before_pixels=True``; for uncompressed transfer syntaxes a truncated pixel data element is detected from the
file size alone, so no pixel byte is read during a scan.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monai.utils import optional_import

from .privacy import hash_identifier

pydicom, _ = optional_import("pydicom")

__all__ = [
    "iter_files",
    "read_header",
    "header_from_dataset",
    "HeaderError",
    "DICOMDIR_SOP_CLASS",
    "UNCOMPRESSED_SYNTAXES",
]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
UNCOMPRESSED_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")


class HeaderError(Exception):
    """A file that cannot be indexed; ``reason`` says why in words fit for a report."""

    def __init__(self, reason: str, kind: str = "unreadable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def iter_files(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield ``(absolute_path, size, mtime_ns)`` of every regular file under ``root`` in a stable order.

    Args:
        root: the folder tree (symlinked folders are not followed).
        exclude: a folder to skip (the index folder, if it lies inside ``root``).
    """
    root = os.path.abspath(root)
    excl = os.path.abspath(exclude) if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        if excl is not None:
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != excl]
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            yield path, st.st_size, st.st_mtime_ns


def _floats(value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    try:
        items = value if hasattr(value, "__iter__") and not isinstance(value, str) else [value]
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return None


def _num(value: Any, cast: type = float) -> Any:
    try:
        return None if value is None or value == "" else cast(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first(seq_owner: Any, seq: str, item: str) -> Any:
    s = seq_owner.get(seq) if seq_owner is not None else None
    if not s:
        return None
    return s[0].get(item)


def _functional_groups(ds: Any, frames: int) -> dict[str, Any]:
    """Per-frame positions, orientation, spacing and rescale of an enhanced multi-frame object."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    out: dict[str, Any] = {}
    positions: list[list[float] | None] = []
    orientations: list[list[float] | None] = []
    rescale: list[list[float] | None] = []
    for i in range(min(frames, len(per_frame))):
        fr = per_frame[i]
        positions.append(_floats(_first(fr, "PlanePositionSequence", "ImagePositionPatient")))
        orientations.append(
            _floats(_first(fr, "PlaneOrientationSequence", "ImageOrientationPatient"))
            or _floats(_first(shared, "PlaneOrientationSequence", "ImageOrientationPatient"))
        )
        slope = _first(fr, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _first(fr, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None and inter is None:
            slope = _first(shared, "PixelValueTransformationSequence", "RescaleSlope")
            inter = _first(shared, "PixelValueTransformationSequence", "RescaleIntercept")
        rescale.append(None if slope is None and inter is None else [_num(slope) or 1.0, _num(inter) or 0.0])
    if per_frame and all(p is not None for p in positions):
        out["frame_positions"] = positions
    if orientations and orientations[0] is not None:
        out["orientation"] = orientations[0]
        out["frame_orientations_consistent"] = all(o == orientations[0] for o in orientations)
    elif shared is not None:
        out["orientation"] = _floats(_first(shared, "PlaneOrientationSequence", "ImageOrientationPatient"))
    spacing = _floats(_first(per_frame[0] if per_frame else None, "PixelMeasuresSequence", "PixelSpacing")) or _floats(
        _first(shared, "PixelMeasuresSequence", "PixelSpacing")
    )
    if spacing:
        out["pixel_spacing"] = spacing
    thick = _first(shared, "PixelMeasuresSequence", "SliceThickness")
    if thick is not None:
        out["slice_thickness"] = _num(thick)
    if any(r is not None for r in rescale):
        out["frame_rescale"] = [r or [1.0, 0.0] for r in rescale]
    return out


def _check_truncation(fp: Any, size: int, header: dict[str, Any]) -> None:
    """Raise :class:`HeaderError` if uncompressed pixel data is shorter than Rows x Columns x frames says."""
    ts = header.get("transfer_syntax_uid")
    if ts is not None and ts not in UNCOMPRESSED_SYNTAXES:
        return
    pos = fp.tell()
    tag = fp.read(4)
    if tag not in _PIXEL_TAGS:
        raise HeaderError("image object without pixel data element", kind="no_pixel_data")
    rows, cols = header.get("rows") or 0, header.get("columns") or 0
    bits = header.get("bits_allocated") or 16
    n = rows * cols * (header.get("frames") or 1) * (header.get("samples_per_pixel") or 1)
    if str(header.get("photometric") or "").startswith("YBR_FULL_422"):
        n = n * 2 // 3
    expected = (n + 7) // 8 if bits == 1 else n * (bits // 8)
    available = size - pos - 8
    if available < expected:
        raise HeaderError(f"truncated pixel data: {max(available, 0)} of {expected} bytes present", kind="truncated")


def read_header(path: str | os.PathLike, size: int, salt: bytes) -> dict[str, Any]:
    """Read one file's DICOM header (no pixel data) into a JSON-serialisable summary.

    Args:
        path: the file.
        size: its size in bytes (from the directory walk).
        salt: salt for the patient identifier hashes.

    Returns:
        A summary dict; ``kind`` is ``"image"`` or ``"dicomdir"``.

    Raises:
        HeaderError: the file is not DICOM, unreadable, truncated, or not an image object.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read_header(str(path), size, salt)


def _read_header(path: str, size: int, salt: bytes) -> dict[str, Any]:
    no_meta = False
    with open(path, "rb") as fp:
        try:
            if size >= 132:
                fp.seek(128)
                if fp.read(4) != b"DICM":
                    raise pydicom.errors.InvalidDicomError("no DICM prefix")
                fp.seek(0)
            else:
                raise pydicom.errors.InvalidDicomError("too short")
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            # DICOM without preamble/file meta (ACR-NEMA style): accept only if it really looks like an image object
            fp.seek(0)
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                ok = "SOPClassUID" in ds or "SOPInstanceUID" in ds
            except Exception:  # noqa: BLE001 - any parser failure means "not DICOM"
                ok = False
            if not ok:
                raise HeaderError("not a DICOM file (no DICM prefix, no parsable data set)", kind="not_dicom") from None
            no_meta = True
        except Exception as e:  # noqa: BLE001 - pydicom raises many types on malformed input
            raise HeaderError(f"unreadable DICOM header: {type(e).__name__}: {e}") from None
        try:
            meta = getattr(ds, "file_meta", None)
            sop_class = _text(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None))
            if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
                return {"kind": "dicomdir"}
            ts = _text(meta.get("TransferSyntaxUID")) if meta is not None else None
        except Exception as e:  # noqa: BLE001 - malformed values (bad VR etc.) surface lazily in pydicom
            raise HeaderError(f"malformed header value: {type(e).__name__}: {e}") from None
        h = header_from_dataset(
            ds, salt, transfer_syntax_uid=ts, no_meta=no_meta, sop_class_uid=sop_class, ts_name_missing=_NO_META_TS
        )
        if not no_meta:
            _check_truncation(fp, size, h)
    return h


_NO_META_TS = "Implicit VR Little Endian (no file meta)"


def header_from_dataset(
    ds: Any,
    salt: bytes,
    transfer_syntax_uid: str | None = None,
    no_meta: bool = False,
    sop_class_uid: str | None = None,
    ts_name_missing: str = _NO_META_TS,
) -> dict[str, Any]:
    """The header summary of one image object's data set (from a file or from DICOMweb metadata).

    Args:
        ds: a ``pydicom.Dataset`` without pixel data.
        salt: salt for the patient identifier hashes.
        transfer_syntax_uid: the object's transfer syntax, when known.
        no_meta: the file had no file meta information (recorded).
        sop_class_uid: the SOP class (default: the data set's SOPClassUID).
        ts_name_missing: what ``transfer_syntax`` says when ``transfer_syntax_uid`` is ``None``.

    Raises:
        HeaderError: not an image object (``non_image``), UIDs missing (``incomplete``) or malformed values.
    """
    try:
        sop_class = sop_class_uid or _text(ds.get("SOPClassUID"))
        ts = transfer_syntax_uid
        sop_class_name = pydicom.uid.UID(sop_class).name if sop_class else "unknown SOP class"
        if "Rows" not in ds or "Columns" not in ds:
            raise HeaderError(f"non-image object ({sop_class_name})", kind="non_image")
        for key in ("SeriesInstanceUID", "SOPInstanceUID"):
            if not _text(ds.get(key)):
                raise HeaderError(f"missing {key}", kind="incomplete")
        frames = _num(ds.get("NumberOfFrames"), int) or 1
        h: dict[str, Any] = {
            "kind": "image",
            "no_meta": no_meta,
            "sop_class_uid": sop_class,
            "sop_class": sop_class_name,
            "sop_uid": _text(ds.SOPInstanceUID),
            "series_uid": _text(ds.SeriesInstanceUID),
            "study_uid": _text(ds.get("StudyInstanceUID")),
            "frame_of_reference_uid": _text(ds.get("FrameOfReferenceUID")),
            "transfer_syntax_uid": ts,
            "transfer_syntax": pydicom.uid.UID(ts).name if ts else ts_name_missing,
            "modality": _text(ds.get("Modality")),
            "body_part": _text(ds.get("BodyPartExamined")),
            "study_description": _text(ds.get("StudyDescription")),
            "series_description": _text(ds.get("SeriesDescription")),
            "series_number": _num(ds.get("SeriesNumber"), int),
            "acquisition_number": _num(ds.get("AcquisitionNumber"), int),
            "temporal_position": _num(ds.get("TemporalPositionIdentifier"), int),
            "instance_number": _num(ds.get("InstanceNumber"), int),
            "rows": _num(ds.get("Rows"), int),
            "columns": _num(ds.get("Columns"), int),
            "frames": frames,
            "samples_per_pixel": _num(ds.get("SamplesPerPixel"), int) or 1,
            "bits_allocated": _num(ds.get("BitsAllocated"), int),
            "photometric": _text(ds.get("PhotometricInterpretation")),
            "orientation": _floats(ds.get("ImageOrientationPatient")),
            "position": _floats(ds.get("ImagePositionPatient")),
            "pixel_spacing": _floats(ds.get("PixelSpacing")) or _floats(ds.get("ImagerPixelSpacing")),
            "slice_thickness": _num(ds.get("SliceThickness")),
            "spacing_between_slices": _num(ds.get("SpacingBetweenSlices")),
        }
        for tag in ("PatientID", "PatientName", "PatientBirthDate"):
            h[f"{tag}_hash"] = hash_identifier(ds.get(tag), salt)
        if frames > 1 or "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
            h.update({k: v for k, v in _functional_groups(ds, frames).items() if v is not None})
        if h["orientation"] is not None and len(h["orientation"]) != 6:
            h["orientation"] = None
        if h["position"] is not None and len(h["position"]) != 3:
            h["position"] = None
    except HeaderError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed values (bad VR etc.) surface lazily in pydicom
        raise HeaderError(f"malformed header value: {type(e).__name__}: {e}") from None
    return h


def relpath_or_abs(path: str, root: str) -> str:
    """``path`` relative to ``root`` when inside it (for reports), else unchanged."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
