"""Series written from a NIfTI volume with shuffled names, a missing slice, a duplicate instance, a second series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import rotation, tree_digest, write_series

from monai_transfer.data import QuarantineError, list_series, load_series, scan, summary_report
from monai_transfer.data.dicom.index import connect, read_quarantine


@pytest.fixture(scope="module")
def messy_tree(tmp_path_factory: pytest.TempPathFactory, nifti_volume: tuple[Path, np.ndarray]) -> dict:
    _, vol = nifti_volume
    vol = vol[:, :, :16]
    root = tmp_path_factory.mktemp("messy")
    rng = np.random.default_rng(1)
    # series A: shuffled names across nested folders, slice 9 never written, slice 4 copied under another name
    names_a = [f"x{v:04d}" for v in rng.permutation(16)]
    info_a = write_series(vol, root / "tmpA", rot=rotation(0.1, 0.2, -0.3), names=names_a, description="A")
    for i, item in enumerate(info_a):
        dest = root / ("d1" if i % 2 else "d2/d3") / Path(item["path"]).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(item["path"], dest)
        item["path"] = str(dest)
    shutil.rmtree(root / "tmpA")
    missing = info_a[9]
    Path(missing["path"]).unlink()
    dup = root / "d1" / "copy_of_slice4"
    shutil.copyfile(info_a[4]["path"], dup)
    # series B: clean, names in the same folders, instance numbers reversed (must not drive the order)
    names_b = [f"y{v:04d}" for v in rng.permutation(16)]
    info_b = write_series(
        vol[::-1],
        root / "d1",
        names=names_b,
        instance_numbers=list(range(16, 0, -1)),
        description="B",
        slope=1.0,
        intercept=0.0,
    )
    # series C: one UID, two orientations (a localiser in two planes) -> split into two stacks
    uid_c = "1.2.826.0.1.3680043.8.498.4242"
    write_series(vol[:, :, :3], root / "c", series_uid=uid_c, names=["c0", "c1", "c2"], description="C")
    write_series(
        vol[:, :, :3],
        root / "c",
        series_uid=uid_c,
        names=["c3", "c4", "c5"],
        rot=rotation(1.5707963, 0, 0),
        description="C",
    )
    # series D: duplicate slice position with a different SOPInstanceUID
    info_d = write_series(vol[:, :, :5], root / "dd", names=[f"d{i}" for i in range(5)], description="D")
    sid_d = __import__("pydicom").dcmread(info_d[0]["path"]).SeriesInstanceUID
    write_series(vol[:, :, :1], root / "dd", series_uid=sid_d, names=["d_again"], description="D")
    return {"root": root, "a": info_a, "b": info_b, "dup": dup, "missing": missing, "vol": vol}


@pytest.fixture(scope="module")
def scanned(messy_tree: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    before = tree_digest(messy_tree["root"])
    index = tmp_path_factory.mktemp("index")
    stats = scan(messy_tree["root"], index)
    return {"index": index, "stats": stats, "before": before, **messy_tree}


def _by_desc(index: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in list_series(index):
        out.setdefault(r["series_description"], []).append(r)
    return out


def test_groups_and_flags_exactly(scanned: dict) -> None:
    series = _by_desc(scanned["index"])
    assert sorted(series) == ["A", "B", "C", "D"]
    (a,) = series["A"]
    assert a["status"] == "quarantined"
    assert any("missing slice" in i and "about 1 slice" in i for i in a["issues"]), a["issues"]
    assert any("duplicate SOPInstanceUID" in i for i in a["issues"])
    (b,) = series["B"]
    assert b["status"] == "ok" and b["issues"] == []
    assert b["dims"] == [48, 56, 16]
    assert len(series["C"]) == 2 and all(r["series_key"].endswith(("#1", "#2")) for r in series["C"])
    assert all("2 stacks" in r["issues"][0] and "different orientations" in r["issues"][0] for r in series["C"])
    (d,) = series["D"]
    assert d["status"] == "quarantined" and any("duplicate slice position" in i for i in d["issues"])
    conn = connect(scanned["index"])
    q = read_quarantine(conn)
    conn.close()
    files = {(e["target"], e["kind"]) for e in q if e["level"] == "file"}
    assert files == {(str(scanned["dup"]), "duplicate_instance")} or files == {
        (scanned["a"][4]["path"], "duplicate_instance")
    }
    assert {e["target"] for e in q if e["level"] == "series"} == {a["series_key"], d["series_key"]}


def test_sorted_by_position_not_name_or_instance(scanned: dict) -> None:
    (b,) = _by_desc(scanned["index"])["B"]
    expected = [i["path"] for i in sorted(scanned["b"], key=lambda i: i["k"])]
    assert b["files"] == expected
    img = load_series(scanned["index"], b["series_key"])
    np.testing.assert_allclose(img[0].numpy(), scanned["vol"][::-1].astype(np.float32))


def test_quarantined_series_needs_opt_in(scanned: dict) -> None:
    (a,) = _by_desc(scanned["index"])["A"]
    with pytest.raises(ValueError, match="missing slice"):
        load_series(scanned["index"], a["series_key"])
    img = load_series(scanned["index"], a["series_key"], allow_inconsistent=True)
    assert img.shape == (1, 48, 56, 15)


def test_source_tree_untouched(scanned: dict) -> None:
    assert tree_digest(scanned["root"]) == scanned["before"]


def test_index_inside_source_rejected(messy_tree: dict) -> None:
    with pytest.raises(ValueError, match="inside the source tree"):
        scan(messy_tree["root"], messy_tree["root"] / "index")
    assert not (messy_tree["root"] / "index").exists()


def test_strict_raises_naming_series(messy_tree: dict, tmp_path: Path) -> None:
    with pytest.raises(QuarantineError) as err:
        scan(messy_tree["root"], tmp_path / "idx", strict=True)
    assert "duplicate" in str(err.value) or "missing slice" in str(err.value)


def test_report(scanned: dict) -> None:
    text = summary_report(scanned["index"])
    assert "MR" in text and "quarantined series: 2" in text and "duplicate_instance: 1" in text
    assert "PAT-0001" not in text and "Doe" not in text
    assert (scanned["index"] / "quarantine.csv").read_text().count("\n") == 4
