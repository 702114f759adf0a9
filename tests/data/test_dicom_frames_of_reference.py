"""A stack whose slices lie in different frames of reference (FrameOfReferenceUID) is quarantined (issue 23): its
slice positions are not comparable, so the geometry built from them means nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from dicom_factory import write_series
from pydicom.uid import generate_uid

from monai_transfer.data import list_series, scan
from monai_transfer.data.dicom.index import connect, read_quarantine


def test_mixed_frames_of_reference_quarantined(tmp_path: Path) -> None:
    vol = np.arange(8 * 8 * 6, dtype=np.float64).reshape(8, 8, 6)
    info = write_series(vol, tmp_path / "src" / "a")
    write_series(vol, tmp_path / "src" / "b")  # one frame of reference: fine
    other = generate_uid()
    for item in info[3:]:
        ds = pydicom.dcmread(item["path"])
        ds.FrameOfReferenceUID = other
        ds.save_as(item["path"])
    scan(tmp_path / "src", tmp_path / "index", salt="s")
    by_status = {r["series_uid"]: r for r in list_series(tmp_path / "index")}
    bad = by_status[pydicom.dcmread(info[0]["path"]).SeriesInstanceUID]
    assert bad["status"] == "quarantined"
    assert bad["issues"] == [
        "mixed frames of reference: 2 FrameOfReferenceUIDs in one stack (slice positions are not comparable)"
    ]
    assert sorted(r["status"] for r in by_status.values()) == ["ok", "quarantined"]
    conn = connect(tmp_path / "index")
    assert [(q["level"], q["kind"]) for q in read_quarantine(conn)] == [("series", "inconsistent_series")]
    conn.close()
