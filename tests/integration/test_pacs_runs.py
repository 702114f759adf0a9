"""Runs on a DICOMweb server's series (issue 23): a real Orthanc is scanned into an index, its series exported through
the series cache to a datalist (volumes equal to the folder's own, no UID in a file name, labels joined by series UID
and split by patient), and a SimCLR pretraining and a fine-tuning run read that datalist as they read any other."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from dicomweb_server import upload

from monai_transfer.cli import main
from monai_transfer.data import list_series, load_series, scan
from monai_transfer.data.dicomweb import scan_server
from monai_transfer.data.dicomweb.export import ExportError, export_datalist

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server_index(orthanc, demo_dicom, tmp_path_factory):
    files = sorted(p for p in Path(demo_dicom).rglob("*.dcm"))
    upload(orthanc, files)
    root = tmp_path_factory.mktemp("pacs")
    scan_server(orthanc.dicomweb, root / "index", salt="s", progress=False)
    scan(demo_dicom, root / "folder_index", salt="s", progress=False)
    return root


def test_an_exported_server_series_equals_the_folders_own(server_index, tmp_path):
    out = export_datalist(server_index / "index", tmp_path / "data", cache_dir=tmp_path / "cache", progress=None)
    datalist = json.loads(out.read_text())
    images = [tmp_path / "data" / e["image"] for e in datalist["unlabeled"]]
    assert len(images) == 4 and all(p.is_file() for p in images)
    records = list_series(server_index / "index")
    assert not any(r["series_uid"] in json.dumps(datalist) for r in records)  # hashed names, no UID in the datalist
    import nibabel as nib

    folder = {r["series_uid"]: r for r in list_series(server_index / "folder_index")}
    for record, entry in zip(records, datalist["unlabeled"]):
        local = load_series(server_index / "folder_index", folder[record["series_uid"]]["series_key"])
        exported = nib.load(tmp_path / "data" / entry["image"])
        np.testing.assert_allclose(np.asarray(exported.dataobj), local[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(exported.affine, local.affine.numpy(), atol=1e-5)
    # a second export reuses every volume (nothing fetched or written again)
    stamps = [p.stat().st_mtime_ns for p in images]
    export_datalist(server_index / "index", tmp_path / "data", cache_dir=tmp_path / "cache")
    assert [p.stat().st_mtime_ns for p in images] == stamps


def test_pretraining_and_fine_tuning_read_a_servers_series(server_index, tmp_path, capsys):
    records = list_series(server_index / "index")
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["series_uid", "label"])
        for i, r in enumerate(records):
            w.writerow([r["series_uid"], "lesion" if i % 2 else "normal"])
    data = tmp_path / "data"
    argv = ["data", "export", str(server_index / "index"), "--out", str(data), "--labels", str(labels),
            "--split", "0.5", "0.25", "0.25", "--cache", str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    datalist = json.loads((data / "datalist.json").read_text())
    assert datalist["labels"] == {"0": "lesion", "1": "normal"}
    assert sum(len(datalist[s]) for s in ("training", "validation", "test")) == 4
    tiny = ["--backbone", "resnet10", "--backbone-arg", "widen_factor=0.25", "--quiet"]
    assert main(["pretrain", "--method", "simclr", "--spatial-dims", "3", "--data", str(data / "datalist.json"),
                 "--modality", "mr", "--roi-size", "16", "--epochs", "1", "--batch-size", "2",
                 "--out", str(tmp_path / "ssl"), *tiny]) == 0  # fmt: skip
    assert (tmp_path / "ssl" / "encoder.pt").is_file()
    assert main(["finetune", "--task", "classification", "--data", str(data / "datalist.json"), "--epochs", "1",
                 "--batch-size", "2", "--spatial-size", "16", "--pretrained", str(tmp_path / "ssl"), "--no-bundle",
                 "--out", str(tmp_path / "ft"), *tiny]) == 0  # fmt: skip
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert result["n_train"] == len(datalist["training"]) and result["load_report"]["ok"]


def test_labels_of_one_class_are_refused_by_name(server_index, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "series_uid,label\n" + "".join(f"{r['series_uid']},x\n" for r in list_series(server_index / "index"))
    )
    with pytest.raises(ExportError, match="fewer than two classes"):
        export_datalist(server_index / "index", tmp_path / "data", cache_dir=tmp_path / "cache", labels=labels)
    assert not (tmp_path / "data" / "datalist.json").exists()
