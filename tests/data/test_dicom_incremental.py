"""Incremental rescans: unchanged files are not opened; touched, modified, added and removed files are followed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_series

from monai_transfer.data import list_series, scan
from monai_transfer.data.dicom.index import INDEX_FILE


@pytest.fixture()
def tree(tmp_path: Path, nifti_volume: tuple[Path, np.ndarray]) -> dict:
    _, vol = nifti_volume
    root = tmp_path / "src"
    info = write_series(vol[:, :, :8], root / "s1", description="one")
    shutil.copyfile(pydicom.data.get_testdata_file("CT_small.dcm"), root / "ct")
    (root / "notes.txt").write_text("not dicom")
    return {"root": root, "info": info, "vol": vol, "index": tmp_path / "idx"}


def test_rescan_unchanged_reads_nothing(tree: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    first = scan(tree["root"], tree["index"])
    assert first.headers_read == 10 and first.series == 2 and first.quarantined_files == 1
    calls = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: calls.append(a) or real(*a, **k))
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    second = scan(tree["root"], tree["index"])
    assert second.headers_read == 0 and second.unchanged == 10 and calls == []
    assert not any(p.startswith(str(tree["root"])) for p in opened)
    assert second.series == first.series


def test_touch_modify_add_remove(tree: dict) -> None:
    scan(tree["root"], tree["index"])
    info = tree["info"]
    st = os.stat(info[0]["path"])
    os.utime(info[0]["path"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch
    ds = pydicom.dcmread(info[1]["path"])
    ds.SeriesDescription = "renamed"
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(info[1]["path"])  # modify: the slice moves to a new series -> series "one" has a gap
    Path(info[7]["path"]).unlink()  # remove
    write_series(tree["vol"][:, :, :4], tree["root"] / "s2", description="two")  # add
    stats = scan(tree["root"], tree["index"])
    assert (stats.changed, stats.added, stats.removed, stats.headers_read) == (2, 4, 1, 6)
    by = {r["series_description"]: r for r in list_series(tree["index"])}
    assert set(by) >= {"one", "renamed", "two"}
    assert by["one"]["n_files"] == 6 and by["one"]["status"] == "quarantined"  # slice 1 left: a gap
    assert by["two"]["frames"] == 4 and by["renamed"]["frames"] == 1
    assert info[7]["path"] not in by["one"]["files"]


def test_failed_scan_leaves_index_unchanged(tree: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    scan(tree["root"], tree["index"])
    before = (tree["index"] / INDEX_FILE).read_bytes()
    before_series = list_series(tree["index"])
    write_series(tree["vol"][:, :, :2], tree["root"] / "s3", description="three")
    import monai_transfer.data.dicom.scanner as scanner

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("crash while building series")

    monkeypatch.setattr(scanner, "build_series", boom)
    with pytest.raises(RuntimeError):
        scan(tree["root"], tree["index"])
    assert list_series(tree["index"]) == before_series
    assert (tree["index"] / INDEX_FILE).read_bytes() == before
