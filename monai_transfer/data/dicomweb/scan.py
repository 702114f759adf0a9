"""``scan_server``: index the series of a DICOMweb server (QIDO-RS + WADO-RS metadata) into the folder scan's index.

The index is the one :func:`monai_transfer.data.dicom.scan` writes (``dicom_index.sqlite``): each instance is a row
of ``files`` whose path is its WADO-RS URL (never with credentials), each series is built and checked by the same
``build_series`` (geometry, stacks, missing slices, duplicates, mixed frames of reference) and quarantined with the
same reasons; ``series.origin`` and the record's ``origin`` (``url``, ``study_uid``, ``series_uid``) say where it
lives. ``remote_series`` keeps one fingerprint per series (its QIDO-RS ``NumberOfSeriesRelatedInstances``): a re-scan
sends one QIDO-RS query and fetches metadata only for new or changed series; series gone from the answer leave the
index. Every server request happens before the index is opened for writing (only ``salt.key`` may be created
first), and the write is one transaction, so a failure (server down or stopped mid-scan, wrong credentials, an empty answer) leaves the previous index as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monai.utils import optional_import

from ..dicom.discovery import HeaderError
from ..dicom.index import INDEX_FILE, connect, get_meta, read_quarantine, read_series, transaction
from ..dicom.privacy import load_or_create_salt
from ..dicom.quarantine import QuarantineError, write_report
from ..dicom.scanner import ScanStats, _store
from .client import DicomwebClient, DicomwebError
from .credentials import Credentials
from .headers import header_from_json, json_value

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["scan_server", "ServerScanStats", "EmptyQueryError", "parse_query"]


class EmptyQueryError(DicomwebError):
    """The server's answer to the query holds no series (the index is left unchanged)."""


@dataclass
class ServerScanStats(ScanStats):
    """What one server scan did; instance counts in the :class:`ScanStats` fields, series counts here."""

    series_seen: int = 0
    series_fetched: int = 0
    series_unchanged: int = 0
    series_removed: int = 0
    requests: int = 0


def parse_query(items: list[str] | None) -> dict[str, str]:
    """``["Modality=CT", "StudyDate=20240101-"]`` to a QIDO-RS filter dict.

    Raises:
        ValueError: an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--query takes KEY=VALUE (a DICOM keyword or tag), got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _fingerprint(item: dict[str, Any]) -> str:
    return str(json_value(item, "NumberOfSeriesRelatedInstances"))


def scan_server(
    url: str,
    index_dir: str | os.PathLike,
    query: Mapping[str, str] | None = None,
    strict: bool = False,
    salt: str | bytes | None = None,
    credentials: Credentials | None = None,
    verify: bool | str = True,
    full: bool = False,
    progress: bool = False,
    client: DicomwebClient | None = None,
    workers: int = 4,
) -> ServerScanStats:
    """Index the series a DICOMweb server answers to ``query`` into ``index_dir`` (incremental).

    Args:
        url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (no credentials in it).
        index_dir: the index folder (the same index a folder scan writes; created).
        query: QIDO-RS filters for ``/series`` (``{"Modality": "CT"}``); the index then holds this server's series
            that match it (series of the server that no longer match leave the index).
        strict: raise :class:`QuarantineError` on the first quarantined instance or series (index unchanged).
        salt: salt for patient identifier hashes; default: the one stored in ``index_dir``.
        credentials: explicit credentials; default: environment variables or netrc (see ``credentials.py``).
        verify: TLS verification for https (``True`` or a CA bundle path).
        full: fetch every series' metadata again, even when its fingerprint is unchanged.
        progress: show a tqdm progress bar over the series whose metadata is fetched.
        client: a ready :class:`DicomwebClient` (then ``url``, ``credentials`` and ``verify`` come from it).
        workers: series whose metadata is fetched concurrently.

    Returns:
        A :class:`ServerScanStats`.

    Raises:
        DicomwebError: the server cannot be reached or fails mid-scan (one sentence; the index is unchanged).
        DicomwebAuthError: wrong or missing credentials (HTTP 401/403).
        EmptyQueryError: the query matched no series.
        QuarantineError: with ``strict=True``.
    """
    t0 = time.perf_counter()
    client = client or DicomwebClient(url, credentials=credentials, verify=verify)
    origin = client.url
    index_dir = os.path.realpath(index_dir)
    stats = ServerScanStats(root=origin)
    found = client.search_series(query)  # the server is asked before anything is written
    if not found:
        where = f" for the query {dict(query)}" if query else ""
        raise EmptyQueryError(f"the DICOMweb server {origin} holds no series{where}; the index was left unchanged")
    salt_bytes = load_or_create_salt(index_dir, salt)
    salt_fp = hashlib.sha256(b"monai_transfer-salt-check" + salt_bytes).hexdigest()[:16]
    known, stored_salt_fp = _known(index_dir, origin)
    to_fetch, keep = _plan(found, known, full or stored_salt_fp not in (None, salt_fp), stats)
    fetched = _fetch(client, to_fetch, salt_bytes, strict, progress, workers, stats)  # all requests end here
    gone = [uid for uid in known if uid not in keep and uid not in fetched]
    stats.series_removed = len(gone)
    for uid, (rows, _, _) in fetched.items():
        if uid in known:
            stats.changed += len(rows)
        else:
            stats.added += len(rows)
    conn = connect(index_dir, create=True)
    try:
        gone_paths = _paths_of(conn, origin, [(known[uid][0], uid) for uid in gone])
        stats.removed = len(gone_paths)
        removed_paths = gone_paths + _paths_of(conn, origin, [(known[uid][0], uid) for uid in fetched if uid in known])
        updates = [row for rows, _, _ in fetched.values() for row in rows]
        if not fetched and not gone and get_meta(conn, "salt_fingerprint") == salt_fp:
            records = read_series(conn)  # nothing changed: the index stays as it is, not even rewritten
        else:
            records = _write(conn, origin, gone, fetched, removed_paths, updates, strict, salt_fp)
        q = read_quarantine(conn)
    finally:
        conn.close()
    write_report(index_dir, q)
    stats.requests = client.requests
    stats.series = len(records)
    stats.quarantined_files = sum(1 for e in q if e["level"] == "file")
    stats.quarantined_series = sum(1 for e in q if e["level"] == "series")
    for r in records:
        stats.modalities[r["modality"] or "?"] = stats.modalities.get(r["modality"] or "?", 0) + 1
    stats.seconds = time.perf_counter() - t0
    return stats


_FileRow = tuple[str, int, int, str, str | None, str | None, str | None]


def _plan(
    found: list[dict[str, Any]], known: dict[str, tuple[str, str]], refetch_all: bool, stats: ServerScanStats
) -> tuple[list[tuple[str, str, str]], set[str]]:
    """Split the QIDO-RS answer into series to fetch ``(study, series, fingerprint)`` and series kept as indexed."""
    to_fetch: list[tuple[str, str, str]] = []
    keep: set[str] = set()
    seen: set[str] = set()
    for item in found:
        study, uid, fp = json_value(item, "StudyInstanceUID"), json_value(item, "SeriesInstanceUID"), _fingerprint(item)
        if not study or not uid or uid in seen:
            continue
        seen.add(uid)
        count = json_value(item, "NumberOfSeriesRelatedInstances")
        stats.series_seen += 1
        stats.files_seen += int(count) if isinstance(count, (int, float)) else 0
        if not refetch_all and uid in known and known[uid] == (study, fp):
            keep.add(uid)
            stats.series_unchanged += 1
            stats.unchanged += int(count) if isinstance(count, (int, float)) else 0
        else:
            to_fetch.append((study, uid, fp))
    return to_fetch, keep


def _fetch(
    client: DicomwebClient,
    to_fetch: list[tuple[str, str, str]],
    salt: bytes,
    strict: bool,
    progress: bool,
    workers: int,
    stats: ServerScanStats,
) -> dict[str, tuple[list[_FileRow], str, str]]:
    """WADO-RS metadata of each series to fetch, as ``files`` rows: ``{series_uid: (rows, study_uid, fingerprint)}``."""
    from concurrent.futures import ThreadPoolExecutor

    def one(job: tuple[str, str, str]) -> tuple[str, list[_FileRow]]:
        study, uid, _ = job
        return uid, [
            _row(client, study, uid, i, item, salt, strict) for i, item in enumerate(client.series_metadata(study, uid))
        ]

    out: dict[str, tuple[list[_FileRow], str, str]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(one, to_fetch)
        if progress and has_tqdm:
            results = tqdm(results, total=len(to_fetch), desc="scan", unit="series")
        for (study, _, fp), (uid, rows) in zip(to_fetch, results):
            out[uid] = (rows, study, fp)
            stats.series_fetched += 1
            stats.headers_read += len(rows)
    return out


def _row(
    client: DicomwebClient, study: str, uid: str, i: int, item: dict[str, Any], salt: bytes, strict: bool
) -> _FileRow:
    """One instance's ``files`` row: its header, or why it is quarantined (raised at once with ``strict``)."""
    sop = json_value(item, "SOPInstanceUID") or f"(instance {i + 1} without SOPInstanceUID)"
    path = client.instance_url(study, uid, str(sop))
    try:
        h = header_from_json(item, salt, client.url)
        return (path, 0, 0, "ok", h["kind"], None, json.dumps(h))
    except HeaderError as e:
        if strict:
            raise QuarantineError(path, e.reason) from None
        return (path, 0, 0, "quarantined", e.kind, e.reason, None)


def _paths_of(conn: Any, origin: str, series: list[tuple[str, str]]) -> list[str]:
    """The ``files`` paths of the given ``(study_uid, series_uid)`` of ``origin``."""
    out: list[str] = []
    for study, uid in series:
        prefix = f"{origin}/studies/{study}/series/{uid}/instances/"
        out += [
            p for (p,) in conn.execute("SELECT path FROM files WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))
        ]
    return out


def _write(
    conn: Any,
    origin: str,
    gone: list[str],
    fetched: dict[str, tuple[list[_FileRow], str, str]],
    removed_paths: list[str],
    updates: list[_FileRow],
    strict: bool,
    salt_fp: str,
) -> list[dict[str, Any]]:
    """One transaction: the fingerprints, the instances' rows, every series rebuilt and checked, the quarantine."""
    with transaction(conn):
        conn.executemany("DELETE FROM remote_series WHERE origin = ? AND series_uid = ?", [(origin, u) for u in gone])
        conn.executemany(
            "INSERT OR REPLACE INTO remote_series VALUES (?, ?, ?, ?)",
            [(origin, study, uid, fp) for uid, (_, study, fp) in fetched.items()],
        )
        records = _store(conn, removed_paths, updates, strict)
        for key, value in (("salt_fingerprint", salt_fp), ("last_origin", origin)):
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    return records


def _known(index_dir: str, origin: str) -> tuple[dict[str, tuple[str, str]], str | None]:
    """``{series_uid: (study_uid, fingerprint)}`` of ``origin`` in the index (if any) and its salt fingerprint."""
    if not os.path.exists(os.path.join(index_dir, INDEX_FILE)):
        return {}, None
    conn = connect(index_dir)
    try:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = (
            conn.execute("SELECT study_uid, series_uid, fingerprint FROM remote_series WHERE origin = ?", (origin,))
            if "remote_series" in tables
            else []
        )
        return {uid: (study, fp) for study, uid, fp in rows}, get_meta(conn, "salt_fingerprint")
    finally:
        conn.close()
