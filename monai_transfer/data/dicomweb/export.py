"""An index's series as a datalist every command reads: each series fetched (through the cache, for a server's) and
written once as a NIfTI volume, labels joined from a CSV keyed by study or series UID, patient-level splits.

``pretrain``, ``finetune``, ``rank`` and a study read datalists; this turns an index built from a DICOMweb server (or
a folder, or both) into one, so that a server is a data source for every command::

    monai-transfer data scan http://127.0.0.1:8042/dicom-web --index idx --query Modality=CT
    monai-transfer data export idx --out ct_data --labels labels.csv      # -> ct_data/datalist.json
    monai-transfer pretrain --data ct_data/datalist.json ...               # the "unlabeled" section: every series

Volumes are named by a hash of what they are made of (the series record, and a folder's file sizes and times; no UID
or patient identifier in a file name); entries carry the hashed patient id, so splits and intervals keep a patient's
series together. An export is resumable: a volume already written for the same record is kept, a series that changed
since (a re-scan) gets a new volume, a new one is written to a temporary file and renamed, and the datalist is
written last.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.data.dicom.loader import list_series, load_series
from monai_transfer.data.splits import patient_split
from monai_transfer.utils.atomic import atomic_write, atomic_write_json

__all__ = ["export_datalist", "read_uid_labels", "ExportError"]

logger = logging.getLogger(__name__)

#: the datalist sections of an export with labels (``patient_split`` names and fractions)
SECTIONS = ("training", "validation", "test")


class ExportError(ValueError):
    """The index or the labels cannot make a datalist (named in one sentence)."""


def read_uid_labels(path: str | os.PathLike) -> dict[str, str]:
    """``{uid: label}`` from a CSV with a ``label`` column and a ``series_uid`` or ``study_uid`` column."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    columns = set(rows[0]) if rows else set()
    key = "series_uid" if "series_uid" in columns else "study_uid" if "study_uid" in columns else None
    if key is None or "label" not in columns:
        raise ExportError(
            f"{path}: needs a 'label' column and a 'series_uid' or 'study_uid' column, has {sorted(columns)}"
        )
    return {row[key].strip(): row["label"].strip() for row in rows if row.get(key) and row.get("label")}


def _volume_name(record: Mapping[str, Any]) -> str:
    """A name that changes with what the volume is made of: the series record (instances, geometry, status) and, for
    a folder's series, each file's size and modification time, so a re-export after a changed scan never reuses a
    stale volume. No UID or patient identifier appears in it."""
    parts = [json.dumps(record, sort_keys=True, default=str)]
    if not record.get("origin"):
        parts += [f"{os.stat(f).st_size}:{os.stat(f).st_mtime_ns}" for f in record["files"]]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] + ".nii.gz"


def _write_volume(image: Any, target: Path) -> None:
    import nibabel as nib
    import numpy as np

    array = np.asarray(image[0] if image.shape[0] == 1 else np.moveaxis(np.asarray(image), 0, -1))
    with atomic_write(target) as tmp:  # a killed export leaves no half volume
        nib.save(nib.Nifti1Image(array.astype(np.float32), np.asarray(image.affine, dtype=np.float64)), str(tmp))


def _load(record: Mapping[str, Any], cache: Any, clients: dict[str, Any]) -> Any:
    """The series as a ``MetaTensor``: a folder's files as they are, a server's through the cache."""
    origin = record.get("origin")
    if not origin:
        return load_series([dict(record)], record["series_key"])
    from monai_transfer.data.dicomweb.client import DicomwebClient
    from monai_transfer.data.dicomweb.retrieve import open_series

    url = origin["url"]
    if url not in clients:
        clients[url] = DicomwebClient(url)  # credentials from the environment or netrc, never from the index
    with open_series(url, origin["study_uid"], origin["series_uid"], cache, session=clients[url].session) as folder:
        files = [str(Path(folder) / f"{f.rstrip('/').rsplit('/', 1)[-1]}.dcm") for f in record["files"]]
        return load_series([{**record, "files": files}], record["series_key"])


def export_datalist(
    index_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    cache_bytes: int = 50 * 2**30,
    labels: str | os.PathLike | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    modality: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``out_dir/datalist.json`` (and ``out_dir/images/*.nii.gz``) from the index's valid series.

    Args:
        index_dir: an index written by ``scan`` (a folder, a DICOMweb server or both).
        out_dir: where the volumes and the datalist go.
        cache_dir, cache_bytes: the series cache of a server's series
            (:class:`~monai_transfer.data.dicomweb.cache.SeriesCache`; default ``~/.cache/monai_transfer/dicomweb``).
        labels: a CSV of ``series_uid`` (or ``study_uid``) and ``label``: its series become ``training``,
            ``validation`` and ``test`` (split by patient, stratified by label, at ``fractions``, ``seed``).
        modality: only this modality's series.
        progress: called with (done, total) after each series.

    Returns:
        The datalist file: an ``unlabeled`` section of every series, and with ``labels`` the three labelled sections
        and the class names (``labels`` property, sorted).
    """
    from monai_transfer.data.dicomweb.cache import SeriesCache

    records = list_series(index_dir, modality, include_quarantined=False)
    if not records:
        raise ExportError(f"{index_dir}: no valid series{f' of modality {modality}' if modality else ''} to export")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cache_root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "monai_transfer" / "dicomweb"
    cache, clients = None, {}
    entries = []
    for i, record in enumerate(records):
        target = out / "images" / _volume_name(record)
        if not target.is_file():
            if record.get("origin") and cache is None:
                cache = SeriesCache(cache_root, max_bytes=int(cache_bytes))
            _write_volume(_load(record, cache, clients), target)
        entries.append({"image": f"images/{target.name}", "patient_id": record.get("patient_id_hash") or target.name,
                        "series_uid": record["series_uid"], "study_uid": record.get("study_uid")})  # fmt: skip
        if progress is not None:
            progress(i + 1, len(records))
    datalist: dict[str, Any] = {"unlabeled": [{"image": e["image"], "patient_id": e["patient_id"]} for e in entries]}
    if labels is not None:
        datalist.update(_labelled_sections(entries, read_uid_labels(labels), labels, fractions, seed))
    path = out / "datalist.json"
    atomic_write_json(path, datalist, indent=1)
    return path


def _labelled_sections(
    entries: list[dict[str, Any]], by_uid: Mapping[str, str], source: Any, fractions: Sequence[float], seed: int
) -> dict[str, Any]:
    """``training``/``validation``/``test`` of the series the CSV labels, split by patient and stratified."""
    names = sorted(set(by_uid.values()))
    index = {name: i for i, name in enumerate(names)}
    labelled = []
    for e in entries:
        label = by_uid.get(e["series_uid"], by_uid.get(e.get("study_uid") or ""))
        if label is not None:
            labelled.append({"image": e["image"], "label": index[label], "patient_id": e["patient_id"]})
    if len({e["label"] for e in labelled}) < 2:
        raise ExportError(f"{source}: the labelled series of the index hold fewer than two classes ({len(labelled)} "
                          "labelled); check the CSV's UIDs against 'monai-transfer data report'")  # fmt: skip
    per_class = {c: len({e["patient_id"] for e in labelled if e["label"] == c}) for c in range(len(names))}
    # stratified where every class has a patient for each section; a smaller cohort is split as a whole
    stratify = "label" if min(per_class.values()) >= len(SECTIONS) else None
    splits = patient_split(labelled, fractions, SECTIONS, seed=seed, stratify_key=stratify)
    empty = [name for name in SECTIONS if not splits[name]]
    if empty:
        raise ExportError(f"{source}: {len(labelled)} labelled series of {sum(per_class.values())} patients leave "
                          f"{', '.join(empty)} empty at fractions {list(fractions)}; label more series or change --split")  # fmt: skip
    return {**splits, "labels": {str(i): name for i, name in enumerate(names)}}
