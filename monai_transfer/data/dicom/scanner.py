"""``scan``: walk a DICOM tree and update the SQLite index incrementally."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from monai.utils import optional_import

from .discovery import HeaderError, iter_files, read_header
from .index import connect, get_meta, read_quarantine, transaction
from .privacy import load_or_create_salt
from .quarantine import QuarantineError, write_report
from .validation import STATUS_QUARANTINED, build_series

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["scan", "ScanStats"]


@dataclass
class ScanStats:
    """What one scan did. ``headers_read`` counts files whose header was parsed; pixel data is never read."""

    root: str
    files_seen: int = 0
    headers_read: int = 0
    unchanged: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    series: int = 0
    quarantined_files: int = 0
    quarantined_series: int = 0
    seconds: float = 0.0
    modalities: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON or a CLI table)."""
        return asdict(self)


def _is_inside(path: str, root: str) -> bool:
    """``path`` lies under ``root`` (an instance URL of a DICOMweb server in the same index never does)."""
    return os.path.isabs(path) and os.path.commonpath([path, root]) == root


def scan(
    root: str | os.PathLike,
    index_dir: str | os.PathLike,
    strict: bool = False,
    salt: str | bytes | None = None,
    progress: bool = False,
) -> ScanStats:
    """Index every DICOM series under ``root`` into ``index_dir`` (incremental, read-only on ``root``).

    Files whose size and mtime_ns match the index are not opened again; changed and new files have their header
    read (``stop_before_pixels=True``), removed files leave the index. Series are then rebuilt from the stored
    headers: grouped by SeriesInstanceUID, split into stacks, sorted along the slice normal and checked.

    Args:
        root: folder tree of DICOM files (any names, nested, with or without DICOMDIR).
        index_dir: folder for the index (created; must not lie inside ``root``).
        strict: raise :class:`QuarantineError` naming the first file or series that would be quarantined.
        salt: salt for patient identifier hashes; default: the one stored in ``index_dir`` (created once).
        progress: show a tqdm progress bar (on stderr); otherwise nothing is printed.

    Returns:
        A :class:`ScanStats` summary.

    Raises:
        ValueError: ``root`` is not a folder or ``index_dir`` lies inside it.
        QuarantineError: with ``strict=True``, on the first bad file or series (the index is left unchanged).
    """
    import time

    t0 = time.perf_counter()
    root = os.path.realpath(root)
    index_dir = os.path.realpath(index_dir)
    if not os.path.isdir(root):
        raise ValueError(f"not a folder: {root}")
    if _is_inside(index_dir, root):
        raise ValueError(f"index_dir {index_dir} lies inside the source tree {root}; the source tree is read-only")
    salt_bytes = load_or_create_salt(index_dir, salt)
    fingerprint = hashlib.sha256(b"monai_transfer-salt-check" + salt_bytes).hexdigest()[:16]
    stats = ScanStats(root=root)
    conn = connect(index_dir, create=True)
    try:
        # a changed salt changes every patient hash: then every header is read again
        salt_changed = get_meta(conn, "salt_fingerprint") not in (None, fingerprint)
        known = {
            p: (s, m)
            for p, s, m in conn.execute("SELECT path, size, mtime_ns FROM files").fetchall()
            if _is_inside(p, root)
        }
        updates = _read_changed(root, known, salt_changed, salt_bytes, strict, progress, stats)
        removed = list(known)  # what is left of ``known``: files no longer under ``root``
        stats.removed = len(removed)
        with transaction(conn):
            records = _store(conn, removed, updates, strict)
            for key, value in (("salt_fingerprint", fingerprint), ("last_root", root)):
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        q = read_quarantine(conn)
    finally:
        conn.close()
    write_report(index_dir, q)
    stats.series = len(records)
    stats.quarantined_files = sum(1 for e in q if e["level"] == "file")
    stats.quarantined_series = sum(1 for e in q if e["level"] == "series")
    for r in records:
        stats.modalities[r["modality"] or "?"] = stats.modalities.get(r["modality"] or "?", 0) + 1
    stats.seconds = time.perf_counter() - t0
    return stats


_FileRow = tuple[str, int, int, str, str | None, str | None, str | None]  # one row of the index's files table


def _read_changed(
    root: str,
    known: dict[str, tuple[int, int]],
    salt_changed: bool,
    salt_bytes: bytes,
    strict: bool,
    progress: bool,
    stats: ScanStats,
) -> list[_FileRow]:
    """The ``files`` rows of new and changed files under ``root`` (their headers read), counted in ``stats``.

    Pops every file seen from ``known``: what remains was removed from the tree.
    """
    listing = list(iter_files(root))
    stats.files_seen = len(listing)
    updates: list[_FileRow] = []
    bar = tqdm(listing, desc="scan", unit="file", disable=not progress) if has_tqdm else listing
    for path, size, mtime in bar:
        old = known.pop(path, None)
        if old == (size, mtime) and not salt_changed:
            stats.unchanged += 1
            continue
        if old is None:
            stats.added += 1
        else:
            stats.changed += 1
        stats.headers_read += 1
        updates.append(_file_row(path, size, mtime, salt_bytes, strict))
    return updates


def _file_row(path: str, size: int, mtime: int, salt_bytes: bytes, strict: bool) -> _FileRow:
    """One file's ``files`` row: its header, or why it is quarantined (raised at once with ``strict``)."""
    try:
        h = read_header(path, size, salt_bytes)
        status = "dicomdir" if h["kind"] == "dicomdir" else "ok"
        return (path, size, mtime, status, h["kind"], None, json.dumps(h))
    except HeaderError as e:
        if strict:
            raise QuarantineError(path, e.reason) from None
        return (path, size, mtime, "quarantined", e.kind, e.reason, None)
    except OSError as e:
        if strict:
            raise QuarantineError(path, f"cannot read file: {e.strerror}") from None
        return (path, size, mtime, "quarantined", "io_error", f"cannot read file: {e.strerror}", None)


def _store(conn: Any, removed: list[str], updates: list[_FileRow], strict: bool) -> list[dict[str, Any]]:
    """Inside the caller's transaction: update the files, rebuild every series from the stored headers and the
    quarantine table; return the series records. With ``strict`` the first problem raises (and rolls back)."""
    conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in removed])
    conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", updates)
    headers = {p: json.loads(h) for p, h in conn.execute("SELECT path, header FROM files WHERE status='ok'")}
    records, file_issues = build_series(headers)
    if strict:
        for path, _, reason in file_issues:
            raise QuarantineError(path, reason)
        for rec in records:
            if rec["status"] == STATUS_QUARANTINED:
                raise QuarantineError(rec["series_key"], "; ".join(rec["issues"]))
    origins = dict(conn.execute("SELECT series_uid, origin FROM remote_series").fetchall())
    for r in records:
        if r["series_uid"] in origins and r["files"] and not os.path.isabs(r["files"][0]):
            r["origin"] = {"url": origins[r["series_uid"]], "study_uid": r["study_uid"], "series_uid": r["series_uid"]}
    conn.execute("DELETE FROM series")
    conn.executemany(
        "INSERT INTO series (series_key, series_uid, modality, body_part, status, n_files, record, origin)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r["series_key"],
                r["series_uid"],
                r["modality"],
                r["body_part"],
                r["status"],
                r["n_files"],
                json.dumps(r),
                r.get("origin", {}).get("url"),
            )
            for r in records
        ],
    )
    _store_quarantine(conn, records, file_issues)
    return records


def _store_quarantine(conn: Any, records: list[dict[str, Any]], file_issues: list[tuple[str, str, str]]) -> None:
    """Rewrite the quarantine table: unreadable files, files the series checks rejected, inconsistent series."""
    conn.execute("DELETE FROM quarantine")
    rows = [
        ("file", p, k, r) for p, k, r in conn.execute("SELECT path, kind, reason FROM files WHERE status='quarantined'")
    ]
    rows += [("file", p, k, r) for p, k, r in file_issues]
    rows += [
        ("series", r["series_key"], "inconsistent_series", "; ".join(r["issues"]))
        for r in records
        if r["status"] == STATUS_QUARANTINED
    ]
    conn.executemany("INSERT INTO quarantine (level, target, kind, reason) VALUES (?, ?, ?, ?)", rows)
