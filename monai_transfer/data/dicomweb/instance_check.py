"""Check a downloaded DICOM instance file: its header parses and its pixel data element is whole.

A server that stops mid-instance, or stores a truncated file, sends fewer bytes than the pixel data element declares.
The file's elements are stepped over by their declared lengths (values unread, items and delimiters of encapsulated
pixel data included), so a cut file is found without reading its pixel bytes, and the SOPInstanceUID is picked up on
the way (a walk takes about a third of the time of a pydicom header parse). Files it cannot walk (big endian, deflated, no
``DICM`` prefix) are parsed by pydicom and only what follows the header is walked.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import pydicom

__all__ = ["TruncatedInstanceError", "check_instance"]

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR", b"SV", b"UV"}
_SHORT_VRS = {v.encode() for v in "AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split()}


class TruncatedInstanceError(IOError):
    """A downloaded instance is not a whole DICOM file."""


def check_instance(path: str | os.PathLike, expected_size: int | None = None) -> str:
    """Return the SOPInstanceUID of the DICOM file at ``path``; raise :class:`TruncatedInstanceError` if it is cut.

    Args:
        path: the file.
        expected_size: the size the server announced (a part's Content-Length), checked when given.
    """
    path = Path(path)
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise TruncatedInstanceError(f"{size} of {expected_size} announced bytes arrived")
    with open(path, "rb") as fp:
        fp.seek(128)
        if fp.read(4) == b"DICM":
            # fast path: one walk over the whole file by element lengths, picking up two values on the way
            found: dict[tuple[int, int], bytes] = {}
            try:
                _walk(fp, 132, size, None, found)
            except _Fallback:
                pass
            else:
                sop = found.get(_SOP_TAG, b"").rstrip(b"\x00 ").decode("ascii", "replace")
                if not sop:
                    raise TruncatedInstanceError("the file has no SOPInstanceUID")
                return sop
    return _check_with_pydicom(path, size)


def _check_with_pydicom(path: Path, size: int) -> str:
    # deflated and big-endian syntaxes: pydicom parses the header, the walk (little endian) checks what follows
    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types on cut or malformed input
            raise TruncatedInstanceError(f"the header does not parse ({type(e).__name__})") from None
        if "SOPInstanceUID" not in ds:
            raise TruncatedInstanceError("the file has no SOPInstanceUID")
        if ds.file_meta.get("TransferSyntaxUID") != _BIG_ENDIAN:  # retired big-endian files: the parse is the check
            _walk(fp, fp.tell(), size, None)
    return str(ds.SOPInstanceUID)


_ITEM, _ITEM_END, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
_UNDEFINED = 0xFFFFFFFF
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_NOT_WALKABLE = {b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99"}  # big endian, deflated
_TS_TAG, _SOP_TAG = (0x0002, 0x0010), (0x0008, 0x0018)


class _Fallback(Exception):
    """The data set is not little-endian uncompressed: the fast walk cannot read it."""


def _walk(
    fp: BinaryIO, pos: int, size: int, stop: tuple[int, int] | None, found: dict[tuple[int, int], bytes] | None = None
) -> int:
    """Step over the elements from ``pos`` by their declared lengths (values unread); raise if one runs past the end.

    With ``stop`` (a sequence or item delimiter), return the position after it; without, the walk must end exactly at
    the end of the file. VRs are read per element, since some files announce explicit VR and hold implicit. With
    ``found`` (top level only), the values of the transfer syntax and SOPInstanceUID are stored in it.
    """
    while pos < size:
        fp.seek(pos)
        head = fp.read(12)
        if len(head) < 8:
            raise TruncatedInstanceError("an element header is cut")
        tag = struct.unpack("<HH", head[:4])
        if tag == stop:
            return pos + 8
        if found is not None and tag[0] != 2 and found.get(_TS_TAG, b"").rstrip(b"\x00 ") in _NOT_WALKABLE:
            raise _Fallback
        if tag[0] == 0xFFFE:  # items and delimiters carry no VR
            length, start = struct.unpack("<I", head[4:8])[0], pos + 8
            if tag != _ITEM:
                pos = start
                continue
        elif head[4:6] in _LONG_VRS:
            if len(head) < 12:
                raise TruncatedInstanceError("an element header is cut")
            length, start = struct.unpack("<I", head[8:12])[0], pos + 12
        elif head[4:6] in _SHORT_VRS:
            length, start = struct.unpack("<H", head[6:8])[0], pos + 8
        else:  # implicit VR
            length, start = struct.unpack("<I", head[4:8])[0], pos + 8
        if length == _UNDEFINED:
            pos = _walk(fp, start, size, _ITEM_END if tag == _ITEM else _SEQ_END)
        elif start + length > size:
            raise TruncatedInstanceError(
                f"element ({tag[0]:04X},{tag[1]:04X}) has {size - start} of its {length} bytes"
            )
        else:
            if found is not None and tag in (_TS_TAG, _SOP_TAG):
                fp.seek(start)
                found[tag] = fp.read(min(length, 256))
            pos = start + length
    if stop is not None:
        raise TruncatedInstanceError("an undefined-length sequence (e.g. compressed pixel data) has no delimiter")
    return pos
