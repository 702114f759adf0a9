"""The SQLite series index kept in ``index_dir``.

Tables: ``files`` (one row per file seen: size, mtime_ns, status, header summary as JSON; for a DICOMweb server an
instance's URL without credentials stands for the path, size and mtime_ns are 0), ``series`` (one row per stack, the
record as JSON plus searchable columns; ``origin`` is the DICOMweb server's URL, NULL for a folder),
``remote_series`` (one row per series indexed from a server: its fingerprint for incremental re-scans),
``quarantine`` (file- and series-level reasons) and ``meta``.

Schema version 2 added ``series.origin`` and ``remote_series``: ``connect(..., create=True)`` migrates a version 1
index in place (``ALTER TABLE``); opened for reading, a version 1 index reads as before.
Every scan writes inside one ``BEGIN IMMEDIATE ... COMMIT`` transaction, so a crash or an exception leaves the
previous index untouched (SQLite's rollback journal). Nothing else is written except ``salt.key`` and the
``quarantine.csv`` report (temp file + rename).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["INDEX_FILE", "SCHEMA_VERSION", "connect", "transaction", "read_series", "read_quarantine", "get_meta"]

INDEX_FILE = "dicom_index.sqlite"
SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL, kind TEXT, reason TEXT, header TEXT
);
CREATE TABLE IF NOT EXISTS series (
    series_key TEXT PRIMARY KEY, series_uid TEXT NOT NULL, modality TEXT, body_part TEXT,
    status TEXT NOT NULL, n_files INTEGER NOT NULL, record TEXT NOT NULL, origin TEXT
);
CREATE TABLE IF NOT EXISTS remote_series (
    origin TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, fingerprint TEXT NOT NULL,
    PRIMARY KEY (origin, series_uid)
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, level TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_modality ON series (modality);
"""


def index_path(index_dir: str | os.PathLike) -> Path:
    """Path of the SQLite file in ``index_dir``."""
    return Path(index_dir) / INDEX_FILE


def connect(index_dir: str | os.PathLike, create: bool = False) -> sqlite3.Connection:
    """Open (optionally create) the index database.

    Args:
        index_dir: the index folder.
        create: create the folder and schema when missing; otherwise a missing index raises ``FileNotFoundError``.
    """
    path = index_path(index_dir)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no DICOM index in {index_dir} (run scan first)")
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
    if create:
        with transaction(conn):
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(stmt)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(series)")}
            if "origin" not in columns:  # version 1 -> 2
                conn.execute("ALTER TABLE series ADD COLUMN origin TEXT")
            if get_meta(conn, "schema_version") != SCHEMA_VERSION:  # written only when it changes
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """One value of the ``meta`` table."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def read_series(conn: sqlite3.Connection, modality: str | None = None) -> list[dict[str, Any]]:
    """All series records (optionally of one modality), ordered by key."""
    if modality is None:
        rows = conn.execute("SELECT record FROM series ORDER BY series_key").fetchall()
    else:
        rows = conn.execute("SELECT record FROM series WHERE modality = ? ORDER BY series_key", (modality,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def read_quarantine(conn: sqlite3.Connection) -> list[dict[str, str]]:
    """All quarantine entries as dicts with ``level``, ``target``, ``kind``, ``reason``."""
    rows = conn.execute("SELECT level, target, kind, reason FROM quarantine ORDER BY level, target").fetchall()
    return [dict(zip(("level", "target", "kind", "reason"), r)) for r in rows]
