"""Datalists: atomic round trip, relative paths, validation errors naming the entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monai_transfer.data.datalist import load_datalist
from monai_transfer.data.datalist_format import DatalistError, unlabeled_datalist, validate_datalist, write_datalist


def _touch(p: Path) -> str:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return str(p)


def test_round_trip_relative_paths(tmp_path: Path) -> None:
    img = _touch(tmp_path / "images" / "a.nii.gz")
    lab = _touch(tmp_path / "labels" / "a.nii.gz")
    path = write_datalist(
        tmp_path / "dl.json",
        {"training": [{"image": img, "label": lab, "patient_id": "P1", "site": "A"}], "test": [{"image": img}]},
        properties={"name": "toy", "labels": {"0": "background", "1": "organ"}},
    )
    raw = json.loads(Path(path).read_text())
    assert raw["training"][0]["image"] == "./images/a.nii.gz" and raw["numTraining"] == 1
    assert raw["name"] == "toy"
    loaded = load_datalist(path, "training", required_keys=("image", "label"))
    assert loaded[0]["image"] == img and loaded[0]["label"] == lab and loaded[0]["site"] == "A"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_classification_labels_and_string_entries(tmp_path: Path) -> None:
    img = _touch(tmp_path / "x.png")
    (tmp_path / "dl.json").write_text(
        json.dumps({"training": [{"image": "x.png", "label": [0, 1]}], "test": ["x.png"]})
    )
    assert load_datalist(tmp_path / "dl.json")[0]["label"] == [0, 1]
    assert load_datalist(tmp_path / "dl.json", "test") == [{"image": img}]


def test_missing_file_names_entry(tmp_path: Path) -> None:
    _touch(tmp_path / "a.nii.gz")
    (tmp_path / "dl.json").write_text(
        json.dumps({"training": [{"image": "a.nii.gz"}, {"image": "b.nii.gz", "patient_id": "P7"}]})
    )
    with pytest.raises(DatalistError, match=r"training\[1\] \(patient_id='P7'\): image file not found: .*b.nii.gz"):
        load_datalist(tmp_path / "dl.json")
    assert len(load_datalist(tmp_path / "dl.json", check_files=False)) == 2
    with pytest.raises(DatalistError, match="no section 'validation'"):
        load_datalist(tmp_path / "dl.json", "validation")


def test_validate_keys() -> None:
    with pytest.raises(DatalistError, match=r"\[0\].*missing key\(s\) \['label'\]"):
        validate_datalist([{"image": "a"}], required_keys=("image", "label"), check_files=False)
    with pytest.raises(DatalistError, match="expected a dict"):
        validate_datalist(["a"], check_files=False)
    with pytest.raises(DatalistError, match="empty"):
        validate_datalist([{"image": ""}], check_files=False)


def test_write_refuses_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatalistError, match="not found"):
        write_datalist(tmp_path / "dl.json", {"training": [{"image": str(tmp_path / "nope.nii")}]})
    assert not (tmp_path / "dl.json").exists()


def test_unlabeled_pool(tmp_path: Path) -> None:
    img = _touch(tmp_path / "u" / "a.nii.gz")
    pool = unlabeled_datalist([{"image": img, "label": 1, "site": "B"}, img])
    assert pool == [{"image": img, "site": "B"}, {"image": img}]
    write_datalist(tmp_path / "pool.json", {"unlabeled": pool})
    assert load_datalist(tmp_path / "pool.json", "unlabeled")[0]["image"] == img
