"""Real files from pydicom and pydicom-data: transfer syntaxes, malformed files, multi-frame, DICOMDIR, privacy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import tree_digest
from pydicom.data import get_testdata_file

from monai_transfer.data import QuarantineError, list_series, load_series, scan
from monai_transfer.data.dicom import DecoderUnavailableError, hash_identifier, load_or_create_salt
from monai_transfer.data.dicom.index import INDEX_FILE, connect, read_quarantine

SYNTAXES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]


def _one(tmp_path: Path, name: str, sub: str = "src") -> tuple[Path, dict]:
    root = tmp_path / sub
    root.mkdir()
    shutil.copyfile(get_testdata_file(name), root / "file")
    scan(root, tmp_path / "idx")
    (rec,) = list_series(tmp_path / "idx")
    return tmp_path / "idx", rec


@pytest.mark.parametrize("name", SYNTAXES)
def test_transfer_syntaxes_decode_identically(name: str, tmp_path: Path) -> None:
    index, rec = _one(tmp_path, name)
    ref = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    img = load_series(index, rec["series_key"])
    assert img.shape == (1, 64, 64, 1)
    expected = ref.pixel_array.astype(np.float64) * float(ref.get("RescaleSlope", 1)) + float(
        ref.get("RescaleIntercept", 0)
    )
    np.testing.assert_allclose(img[0, :, :, 0].numpy(), expected.T)
    assert rec["transfer_syntaxes"] == [pydicom.dcmread(get_testdata_file(name)).file_meta.TransferSyntaxUID.name]


def test_ct_rescale_and_affine(tmp_path: Path) -> None:
    index, rec = _one(tmp_path, "CT_small.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    img = load_series(index, rec["series_key"])
    np.testing.assert_allclose(
        img[0, :, :, 0].numpy(), (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).T
    )
    ipp = [float(v) for v in ds.ImagePositionPatient]
    np.testing.assert_allclose(img.affine[:3, 3].numpy(), [-ipp[0], -ipp[1], ipp[2]], atol=1e-6)
    assert rec["modality"] == "CT" and rec["dims"] == [128, 128, 1]


def test_enhanced_ct_per_frame_positions(tmp_path: Path) -> None:
    index, rec = _one(tmp_path, "eCT_Supplemental.dcm")
    assert rec["multi_frame"] and rec["frames"] == 2 and rec["sop_class"] == "Enhanced CT Image Storage"
    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    img = load_series(index, rec["series_key"])
    assert img.shape == (1, 512, 512, 2)
    # IOP (-1,0,0, 0,1,0): normal = (0, 0, -1), so the frame at z = -149 comes first (ascending along the normal)
    frames = ds.PerFrameFunctionalGroupsSequence
    pos = [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in frames]
    assert rec["frame_order"] == [1, 0] and pos[1][2] > pos[0][2]
    for k, f in enumerate(rec["frame_order"]):
        np.testing.assert_allclose(img[0, :, :, k].numpy(), ds.pixel_array[f].T.astype(np.float64) - 1024.0)
    np.testing.assert_allclose(img.affine[:3, 3].numpy(), [-pos[1][0], -pos[1][1], pos[1][2]], atol=1e-4)
    assert img.affine[2, 2] == pytest.approx(-10.0)


def test_enhanced_mr_without_geometry(tmp_path: Path) -> None:
    index, rec = _one(tmp_path, "emri_small_jpeg_2k_lossless.dcm")
    img = load_series(index, rec["series_key"])
    ref = pydicom.dcmread(get_testdata_file("emri_small.dcm")).pixel_array
    assert img.shape == (1, 64, 64, 10) and rec["status"] == "warning"
    np.testing.assert_allclose(img[0].numpy(), np.transpose(ref, (2, 1, 0)))


def test_missing_decoder_names_transfer_syntax(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile: no pydicom decoder
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    root = tmp_path / "src"
    root.mkdir()
    ds.save_as(root / "mpeg", enforce_file_format=True)
    scan(root, tmp_path / "idx")
    (rec,) = list_series(tmp_path / "idx")
    with pytest.raises(DecoderUnavailableError, match="MPEG2"):
        load_series(tmp_path / "idx", rec["series_key"])


@pytest.fixture(scope="module")
def pydicom_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """All of pydicom's test files (incl. DICOMDIR studies), scanned once."""
    src = Path(get_testdata_file("CT_small.dcm")).parent
    root = tmp_path_factory.mktemp("pyd") / "tree"
    shutil.copytree(src, root)
    for extra in ("emri_small.dcm", "693_UNCR.dcm", "693_J2KR.dcm", "RG3_J2KI.dcm"):
        p = get_testdata_file(extra)
        if p and not (root / extra).exists():
            shutil.copyfile(p, root / extra)
    digest = tree_digest(root)
    index = tmp_path_factory.mktemp("pydidx")
    stats = scan(root, index)
    conn = connect(index)
    q = {Path(e["target"]).name: e for e in read_quarantine(conn) if e["level"] == "file"}
    conn.close()
    return {"root": root, "index": index, "stats": stats, "quarantine": q, "digest": digest}


def test_bad_files_quarantined_with_reason(pydicom_tree: dict) -> None:
    q = pydicom_tree["quarantine"]
    assert q["MR_truncated.dcm"]["kind"] == "truncated" and "truncated pixel data" in q["MR_truncated.dcm"]["reason"]
    assert q["no_meta.dcm"]["kind"] == "not_dicom"
    assert q["README.txt"]["kind"] == "not_dicom"
    assert q["rtplan_truncated.dcm"]["kind"] == "non_image"
    assert "RT Structure Set" in q["rtstruct.dcm"]["reason"]
    assert all(e["reason"] for e in q.values())
    assert pydicom_tree["stats"].series > 20


def test_source_untouched_and_no_new_files(pydicom_tree: dict) -> None:
    assert tree_digest(pydicom_tree["root"]) == pydicom_tree["digest"]


def test_dicomdir_study_grouped_by_headers(pydicom_tree: dict) -> None:
    recs = list_series(pydicom_tree["index"])
    study = [r for r in recs if any("dicomdirtests/77654033/CT2" in f for f in r["files"])]
    assert len(study) == 1 and study[0]["modality"] == "CT" and study[0]["n_files"] == 4
    conn = connect(pydicom_tree["index"])
    n_dirs = conn.execute("SELECT COUNT(*) FROM files WHERE status='dicomdir'").fetchone()[0]
    conn.close()
    assert n_dirs >= 5  # DICOMDIR files are recognised, not quarantined
    img = load_series(pydicom_tree["index"], study[0]["series_key"], allow_inconsistent=True)
    assert img.shape[-1] == 4


def test_real_ct_jpeg2000_matches_uncompressed(pydicom_tree: dict) -> None:
    recs = [
        r
        for r in list_series(pydicom_tree["index"])
        if any(f.endswith(("693_UNCR.dcm", "693_J2KR.dcm")) for f in r["files"])
    ]
    if not recs:
        pytest.skip("pydicom-data is not installed")
    (rec,) = recs
    # 693_J2KI (lossy, own SOPInstanceUID) repeats the position of 693_J2KR / 693_UNCR (same SOPInstanceUID)
    assert rec["status"] == "quarantined" and any("duplicate slice position" in i for i in rec["issues"])
    img = load_series(pydicom_tree["index"], rec["series_key"], allow_inconsistent=True)
    ref = pydicom.dcmread(pydicom_tree["root"] / "693_UNCR.dcm")
    expected = (ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)).T
    k = [Path(f).name for f in rec["files"]].index("693_J2KR.dcm")
    np.testing.assert_allclose(img[0, :, :, k].numpy(), expected)


def test_strict_names_file_and_reason(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), root / "a")
    shutil.copyfile(get_testdata_file("MR_truncated.dcm"), root / "b")
    with pytest.raises(QuarantineError, match="truncated pixel data") as err:
        scan(root, tmp_path / "idx", strict=True)
    assert err.value.target == str(root / "b")
    scan(root, tmp_path / "idx2")  # non-strict: one bad file does not stop the scan
    assert len(list_series(tmp_path / "idx2")) == 1


def test_patient_identifiers_only_hashed(tmp_path: Path) -> None:
    index, rec = _one(tmp_path, "CT_small.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    salt = load_or_create_salt(index)
    assert rec["patient_id_hash"] == hash_identifier(ds.PatientID, salt)
    assert rec["patient_name_hash"] == hash_identifier(ds.PatientName, salt)
    blob = (index / INDEX_FILE).read_bytes() + (index / "quarantine.csv").read_bytes()
    for value in (str(ds.PatientID), str(ds.PatientName), str(ds.PatientBirthDate)):
        if value:
            assert value.encode() not in blob
    assert load_or_create_salt(index) == salt  # created once
    assert oct(os.stat(index / "salt.key").st_mode & 0o777) == "0o600"
    # a user salt re-hashes (headers are re-read because the fingerprint changed)
    stats = scan(tmp_path / "src", index, salt="my-project-salt")
    assert stats.headers_read == 1
    (rec2,) = list_series(index)
    assert rec2["patient_id_hash"] == hash_identifier(ds.PatientID, b"my-project-salt") != rec["patient_id_hash"]
