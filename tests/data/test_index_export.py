"""``data export`` of a folder index: every valid series as a volume and a datalist entry, and a series that changed
since the last export (re-scanned) written again, never served from the earlier volume."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from monai_transfer.data import list_series, load_series, make_demo_data, scan
from monai_transfer.data.dicomweb.export import export_datalist


def test_a_changed_series_is_exported_again(tmp_path):
    demo = make_demo_data(tmp_path / "demo", n_subjects=2, n_sites=1, size=16, dicom=True, n_unlabeled=0,
                          n_other_modality=0, progress=False)  # fmt: skip
    root = Path(demo["dicom_root"])
    scan(root, tmp_path / "idx", progress=False)
    out = export_datalist(tmp_path / "idx", tmp_path / "data", cache_dir=tmp_path / "cache")
    first = json.loads(out.read_text())["unlabeled"]
    assert len(first) == 2 and all((tmp_path / "data" / e["image"]).is_file() for e in first)
    record = list_series(tmp_path / "idx")[0]
    assert record["series_uid"] not in out.read_text()  # volumes are named by a hash, not by UIDs
    # one slice of the first series changes on disk; after a re-scan its volume is new and holds the new values
    ds = pydicom.dcmread(record["files"][0])
    ds.PixelData = (ds.pixel_array + 7).astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(record["files"][0])
    scan(root, tmp_path / "idx", progress=False)
    second = json.loads(export_datalist(tmp_path / "idx", tmp_path / "data", cache_dir=tmp_path / "cache").read_text())
    changed = [a["image"] != b["image"] for a, b in zip(first, second["unlabeled"])]
    assert changed.count(True) == 1
    fresh = nib.load(tmp_path / "data" / second["unlabeled"][changed.index(True)]["image"])
    expected = load_series(tmp_path / "idx", list_series(tmp_path / "idx")[changed.index(True)]["series_key"])
    np.testing.assert_allclose(np.asarray(fresh.dataobj), expected[0].numpy(), atol=1e-4)
