"""Index schema version 2 (issue 23: ``series.origin``, ``remote_series``): a version 1 index stays readable and is
migrated in place by the next scan."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from monai_transfer.data import list_series, scan
from monai_transfer.data.dicom.index import INDEX_FILE, SCHEMA_VERSION, connect, get_meta

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL, kind TEXT, reason TEXT, header TEXT);
CREATE TABLE series (series_key TEXT PRIMARY KEY, series_uid TEXT NOT NULL, modality TEXT, body_part TEXT,
    status TEXT NOT NULL, n_files INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, level TEXT NOT NULL, target TEXT NOT NULL,
    kind TEXT NOT NULL, reason TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_version_1_index_reads_and_migrates(tmp_path: Path):
    index = tmp_path / "index"
    index.mkdir()
    conn = sqlite3.connect(index / INDEX_FILE)
    conn.executescript(_V1)
    record = {"series_key": "1.2.3", "series_uid": "1.2.3", "modality": "CT", "status": "ok", "files": []}
    conn.execute("INSERT INTO series VALUES ('1.2.3', '1.2.3', 'CT', NULL, 'ok', 0, ?)", (json.dumps(record),))
    conn.commit()
    conn.close()
    assert [r["series_key"] for r in list_series(index)] == ["1.2.3"]  # read as before, no migration needed
    (tmp_path / "empty_tree").mkdir()
    scan(tmp_path / "empty_tree", index, salt="s")  # a scan migrates, then writes
    conn = connect(index)
    assert get_meta(conn, "schema_version") == SCHEMA_VERSION == "2"
    assert "origin" in {r[1] for r in conn.execute("PRAGMA table_info(series)")}
    assert conn.execute("SELECT count(*) FROM remote_series").fetchone() == (0,)
    conn.close()
