"""Load an indexed series into a ``monai.data.MetaTensor`` (RAS affine, channel-first, rescale applied).

Axis order: ``(C, X, Y, Z)`` with X = column index, Y = row index, Z = slice index ascending along the slice normal,
the order of ``LoadImage(reader="ITKReader", ensure_channel_first=True)`` on the same series. The affine is RAS, as
MONAI's readers give (``meta["space"] == "RAS"``). Enhanced multi-frame objects are ordered by their per-frame
PlanePositionSequence and rescaled by their per-frame (or shared) PixelValueTransformationSequence.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import optional_import

from .discovery import UNCOMPRESSED_SYNTAXES
from .index import connect, read_series

pydicom, _ = optional_import("pydicom")

__all__ = ["load_series", "list_series", "DecoderUnavailableError"]


class DecoderUnavailableError(RuntimeError):
    """No installed pixel data decoder handles the file's transfer syntax."""


def list_series(
    index_dir: str | os.PathLike, modality: str | None = None, include_quarantined: bool = True
) -> list[dict[str, Any]]:
    """Series records stored in the index.

    Args:
        index_dir: the index folder written by ``scan``.
        modality: keep only this modality (e.g. ``"CT"``).
        include_quarantined: keep series whose status is ``"quarantined"``.
    """
    conn = connect(index_dir)
    try:
        recs = read_series(conn, modality)
    finally:
        conn.close()
    return [r for r in recs if include_quarantined or r["status"] != "quarantined"]


def _decode(path: str, ds: Any) -> np.ndarray:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and str(ts) not in UNCOMPRESSED_SYNTAXES:
        name = f"{pydicom.uid.UID(ts).name} ({ts})"
        try:
            from pydicom.pixels.decoders.base import get_decoder

            decoder = get_decoder(ts)
            available = decoder.is_available
        except (NotImplementedError, ValueError, ImportError):
            available = False
        if not available:
            raise DecoderUnavailableError(
                f"{path}: no pixel data decoder installed for transfer syntax {name}; "
                "install pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls or gdcm"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as e:  # noqa: BLE001 - decoders raise assorted types on corrupt streams
        tsname = pydicom.uid.UID(ts).name if ts is not None else "unknown transfer syntax"
        raise RuntimeError(f"{path}: cannot decode pixel data ({tsname}): {type(e).__name__}: {e}") from e


def _rescale(arr: np.ndarray, slope: Any, inter: Any) -> np.ndarray:
    s = 1.0 if slope in (None, "") else float(slope)
    b = 0.0 if inter in (None, "") else float(inter)
    return arr.astype(np.float64) * s + b


def _read(path: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            return pydicom.dcmread(path, force=True)


def _first(owner: Any, seq: str, item: str) -> Any:
    s = owner.get(seq) if owner is not None else None
    return s[0].get(item) if s else None


def _load_multiframe(rec: dict[str, Any]) -> np.ndarray:
    path = rec["files"][0]
    ds = _read(path)
    arr = _decode(path, ds)
    spp = rec.get("samples_per_pixel") or 1
    if arr.ndim == (3 if spp == 1 else 4) and arr.shape[0] != rec["frames"]:
        raise RuntimeError(f"{path}: decoded {arr.shape[0]} frames, header says {rec['frames']}")
    if arr.ndim == (2 if spp == 1 else 3):
        arr = arr[None]
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    out = np.empty(arr.shape, dtype=np.float64)
    for i in range(arr.shape[0]):
        fr = per_frame[i] if i < len(per_frame) else None
        slope = _first(fr, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _first(fr, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None and inter is None:
            slope = _first(shared, "PixelValueTransformationSequence", "RescaleSlope")
            inter = _first(shared, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None and inter is None:
            slope, inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        out[i] = _rescale(arr[i], slope, inter)
    if rec.get("frame_order"):
        out = out[np.asarray(rec["frame_order"])]
    return out


def _load_slices(rec: dict[str, Any]) -> np.ndarray:
    slices = []
    for path in rec["files"]:
        ds = _read(path)
        a = _decode(path, ds)
        slices.append(_rescale(a, ds.get("RescaleSlope"), ds.get("RescaleIntercept")))
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise RuntimeError(f"series {rec['series_key']}: slices of different shapes {sorted(shapes)}")
    return np.stack(slices, axis=0)


def _find(records: Sequence[dict[str, Any]], series_key: str) -> dict[str, Any]:
    for r in records:
        if r["series_key"] == series_key:
            return r
    matches = [r for r in records if r["series_uid"] == series_key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        keys = ", ".join(r["series_key"] for r in matches)
        raise KeyError(f"SeriesInstanceUID {series_key} holds several stacks; pick one of: {keys}")
    raise KeyError(f"series {series_key} not in the index")


def load_series(
    source: str | os.PathLike | Sequence[dict[str, Any]],
    series_key: str,
    dtype: np.dtype | type = np.float32,
    ensure_channel_first: bool = True,
    allow_inconsistent: bool = False,
) -> MetaTensor:
    """Load one series as a ``MetaTensor``.

    Args:
        source: the index folder written by ``scan``, or records from ``list_series``.
        series_key: a ``series_key`` (or a SeriesInstanceUID holding a single stack).
        dtype: output dtype (``LoadImage`` default: float32). Values are rescaled (slope/intercept) first.
        ensure_channel_first: ``(C, X, Y, Z)`` when true, else ``(X, Y, Z)`` for one-sample images.
        allow_inconsistent: load quarantined series (gaps, duplicates) anyway, slices in sorted order.

    Returns:
        A MetaTensor with ``affine`` (RAS), ``meta["series_record"]`` and MONAI's usual keys.

    Raises:
        KeyError: unknown key. ValueError: quarantined series without ``allow_inconsistent``.
        DecoderUnavailableError: no decoder for the transfer syntax (the message names it).
    """
    records = list_series(source) if isinstance(source, (str, os.PathLike)) else list(source)
    rec = _find(records, series_key)
    if rec["status"] == "quarantined" and not allow_inconsistent:
        raise ValueError(f"series {rec['series_key']} is quarantined: {'; '.join(rec['issues'])}")
    arr = _load_multiframe(rec) if rec.get("multi_frame") else _load_slices(rec)
    spp = rec.get("samples_per_pixel") or 1
    # (Z, Y, X[, C]) -> (C, X, Y, Z)
    arr = arr[..., None] if spp == 1 else arr
    arr = np.transpose(arr, (3, 2, 1, 0))
    if not ensure_channel_first and spp == 1:
        arr = arr[0]
    affine = torch.as_tensor(np.asarray(rec["affine"], dtype=np.float64))
    meta = {
        "original_affine": affine.clone(),
        "spatial_shape": np.asarray(rec["dims"]),
        "original_channel_dim": 0 if ensure_channel_first or spp > 1 else "no_channel",
        "space": "RAS",
        "filename_or_obj": rec["series_key"],
        "pixdim": np.asarray([1.0, *rec["spacing"], 1.0, 1.0, 1.0, 1.0]),
        "series_record": {k: v for k, v in rec.items() if k != "files"},
    }
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(arr.astype(dtype))), affine=affine, meta=meta)
