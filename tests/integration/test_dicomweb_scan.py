"""Indexing a real Orthanc over DICOMweb (issue 23): the same index as a folder scan of the same files, incremental
re-scans, credentials that never land in a file, and faults (server down or stopped mid-scan, wrong credentials,
non-image series, an empty query result, mixed frames of reference) named in one sentence with the index unchanged.

One Orthanc per module (``orthanc`` fixture); the tests that change the server's content run last.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pydicom
import pytest
from dicomweb_server import free_port, orthanc_server, upload
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from monai_transfer.cli import main
from monai_transfer.data import list_series, scan
from monai_transfer.data.dicom.index import INDEX_FILE
from monai_transfer.data.dicomweb import DicomwebAuthError, DicomwebClient, DicomwebError, EmptyQueryError, scan_server
from monai_transfer.data.dicomweb.credentials import ENV_PASSWORD, ENV_TOKEN, ENV_USER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SALT = "test-salt"
REAL_FILES = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "JPEG2000.dcm", "test-SR.dcm")
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State Storage


def _presentation_state(path: Path) -> Path:
    """A PR object (no Rows/Columns, no pixels) referring to CT_small, in a series of its own."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = GSPS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "PR"
    ds.save_as(path, enforce_file_format=True)
    return path


def _copy_series(src: list[Path], out: Path, mixed_frames: bool = False) -> list[Path]:
    """A copy of a series under new series and instance UIDs; ``mixed_frames``: the second half in another frame of
    reference."""
    out.mkdir(parents=True)
    series, other_frame = generate_uid(), generate_uid()
    paths = []
    for i, p in enumerate(sorted(src)):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if mixed_frames and i >= len(src) // 2:
            ds.FrameOfReferenceUID = other_frame
        ds.save_as(out / p.name)
        paths.append(out / p.name)
    return paths


@pytest.fixture(scope="module")
def content(orthanc, demo_dicom: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Upload the demo series, pydicom's real files, a PR object and a series with mixed frames of reference; the
    same files in a folder for the folder scan."""
    work = tmp_path_factory.mktemp("content")
    subjects = sorted(d for d in demo_dicom.iterdir() if d.is_dir())
    files = sorted(demo_dicom.rglob("*.dcm"))
    files += [Path(get_testdata_file(n)) for n in REAL_FILES]
    files.append(_presentation_state(work / "pr.dcm"))
    files += _copy_series(list(subjects[0].glob("*.dcm")), work / "mixed", mixed_frames=True)
    status = upload(orthanc, files)
    assert set(status.values()) == {"Success"}, status
    folder = work / "folder"
    folder.mkdir()
    for i, p in enumerate(files):
        shutil.copyfile(p, folder / f"{i:04d}.dcm")
    return {"files": files, "folder": folder, "subjects": subjects, "work": work}


def _dump(index_dir: Path) -> list:
    conn = sqlite3.connect(index_dir / INDEX_FILE)
    try:
        return [
            conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table, columns in (
                ("files", "*"),
                ("series", "*"),
                ("quarantine", "level, target, kind, reason, 1"),
                ("remote_series", "*"),
                ("meta", "key, value, 1"),
            )
        ]
    finally:
        conn.close()


def _sop_of(target: str) -> str:
    """A quarantine target as a SOPInstanceUID (file path or instance URL), or the series key."""
    if target.startswith("http"):
        return target.rsplit("/", 1)[1]
    if Path(target).is_file():
        return str(pydicom.dcmread(target, stop_before_pixels=True).SOPInstanceUID)
    return target


def test_server_scan_equals_folder_scan(orthanc, content, tmp_path: Path):
    server = scan_server(orthanc.dicomweb, tmp_path / "server", salt=SALT)
    folder = scan(content["folder"], tmp_path / "folder", salt=SALT)
    assert server.series == folder.series == 9 and server.headers_read == len(content["files"])
    by_server = {r["series_key"]: r for r in list_series(tmp_path / "server")}
    by_folder = {r["series_key"]: r for r in list_series(tmp_path / "folder")}
    assert sorted(by_server) == sorted(by_folder)
    for key, rec in by_server.items():
        ref = by_folder[key]
        for field in set(rec) | set(ref):
            if field not in ("files", "origin", "transfer_syntaxes"):
                assert rec.get(field) == ref.get(field), (key, field)
        # each series records its origin; an instance's path is its WADO-RS URL
        assert rec["origin"] == {
            "url": orthanc.dicomweb,
            "study_uid": rec["study_uid"],
            "series_uid": rec["series_uid"],
        }
        assert all(f.startswith(f"{orthanc.dicomweb}/studies/{rec['study_uid']}/series/") for f in rec["files"])
        assert [f.rsplit("/", 1)[1] for f in rec["files"]] == [_sop_of(p) for p in ref["files"]]
    conn = sqlite3.connect(tmp_path / "server" / INDEX_FILE)
    assert {o for (o,) in conn.execute("SELECT DISTINCT origin FROM series")} == {orthanc.dicomweb}
    conn.close()

    def quarantine(index: Path) -> list:
        rows = list(csvrows(index / "quarantine.csv"))
        return sorted((r["level"], _sop_of(r["target"]), r["kind"], r["reason"]) for r in rows)

    q = quarantine(tmp_path / "server")
    assert q == quarantine(tmp_path / "folder")
    # non-image objects (SR, PR) quarantined with the reason; the mixed frames of reference series too
    reasons = {r for _, _, kind, r in q if kind == "non_image"}
    assert reasons == {
        "non-image object (Comprehensive SR Storage)",
        f"non-image object ({pydicom.uid.UID(GSPS).name})",
    }
    mixed = [r for level, _, kind, r in q if level == "series"]
    assert len(mixed) == 1 and "mixed frames of reference: 2 FrameOfReferenceUIDs" in mixed[0]


def csvrows(path: Path):
    import csv

    with open(path, newline="") as fh:
        yield from csv.DictReader(fh)


def test_query_filters_series_and_the_cli_scans_a_url(orthanc, content, tmp_path: Path, capsys):
    stats = scan_server(orthanc.dicomweb, tmp_path / "ct", query={"Modality": "CT"}, salt=SALT)
    assert stats.modalities == {"CT": 1} and stats.series_seen == 1
    assert (
        main(["data", "scan", orthanc.dicomweb + "/", "--index", str(tmp_path / "cli"), "--query", "Modality=MR"]) == 0
    )
    capsys.readouterr()
    rc = main(["data", "scan", orthanc.dicomweb, "--index", str(tmp_path / "cli"), "--query", "Modality=MR", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["modalities"] == {"MR": 6} and out["requests"] == 1 and out["root"] == orthanc.dicomweb
    # the folder form keeps working and refuses DICOMweb options
    assert main(["data", "scan", str(content["folder"]), "--index", str(tmp_path / "f"), "--quiet"]) == 0
    assert main(["data", "scan", str(content["folder"]), "--index", str(tmp_path / "g"), "--query", "Modality=CT"]) == 2


def test_a_folder_and_a_server_share_one_index(orthanc, content, tmp_path: Path):
    index = tmp_path / "index"
    scan_server(orthanc.dicomweb, index, query={"Modality": "CT"}, salt=SALT)
    only_ct = [r for r in list_series(index)]
    folder = tmp_path / "tree"
    shutil.copytree(content["subjects"][2], folder)
    assert scan(folder, index, salt=SALT).series == 2  # the folder's series and the server's CT series
    again = scan_server(orthanc.dicomweb, index, query={"Modality": "CT"}, salt=SALT)
    assert again.series_fetched == 0 and again.series == 2
    by_origin = {(r.get("origin") or {}).get("url"): r for r in list_series(index)}
    assert set(by_origin) == {None, orthanc.dicomweb}
    assert by_origin[orthanc.dicomweb] == only_ct[0]
    assert by_origin[None]["files"][0].startswith(str(folder.resolve()))


def test_faults_leave_the_index_unchanged(orthanc, content, tmp_path: Path, capsys):
    index = tmp_path / "index"
    scan_server(orthanc.dicomweb, index, salt=SALT)
    before = _dump(index)
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(DicomwebError, match=r"^cannot reach the DICOMweb server .* \(connection refused or dropped\)"):
        scan_server(dead, index, salt=SALT)
    with pytest.raises(EmptyQueryError, match="holds no series for the query .*XA.*; the index was left unchanged"):
        scan_server(orthanc.dicomweb, index, query={"Modality": "XA"}, salt=SALT)
    assert _dump(index) == before
    with pytest.raises(DicomwebError, match="cannot reach"):
        scan_server(dead, tmp_path / "new", salt=SALT)
    assert not (tmp_path / "new").exists()  # nothing written for a server that never answered
    assert main(["data", "scan", dead, "--index", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach the DICOMweb server")


def test_server_stopped_mid_scan(content, tmp_path: Path):
    subjects = content["subjects"]
    with orthanc_server(tmp_path / "orthanc") as server:
        upload(server, [p for s in subjects for p in s.glob("*.dcm")])
        index = tmp_path / "index"
        scan_server(server.dicomweb, index, salt=SALT)
        before = _dump(index)
        client = DicomwebClient(server.dicomweb)
        fetch = client.series_metadata

        def stop_after_first(study: str, series: str) -> list:
            out = fetch(study, series)
            server.stop()
            return out

        client.series_metadata = stop_after_first
        with pytest.raises(DicomwebError, match="cannot reach the DICOMweb server .* for the metadata of series"):
            scan_server(server.dicomweb, index, salt=SALT, full=True, client=client, workers=1)
        assert _dump(index) == before
    with orthanc_server(tmp_path / "orthanc2") as server:  # a first scan stopped mid-way writes no index
        upload(server, [p for s in subjects[:2] for p in s.glob("*.dcm")])
        client = DicomwebClient(server.dicomweb)
        fetch = client.series_metadata
        client.series_metadata = stop_after_first
        with pytest.raises(DicomwebError, match="cannot reach"):
            scan_server(server.dicomweb, tmp_path / "fresh", salt=SALT, client=client, workers=1)
        assert not (tmp_path / "fresh" / INDEX_FILE).exists()


def test_credentials_never_stored_and_wrong_ones_refused(orthanc_auth, content, tmp_path: Path, monkeypatch, caplog):
    upload(orthanc_auth, sorted(content["subjects"][0].glob("*.dcm")))
    for key in (ENV_TOKEN, ENV_USER, ENV_PASSWORD):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(DicomwebAuthError, match=r"refused no credentials \(HTTP 401\)"):
        scan_server(orthanc_auth.dicomweb, tmp_path / "none", salt=SALT)
    monkeypatch.setenv(ENV_USER, "reader")
    monkeypatch.setenv(ENV_PASSWORD, "wrong-pw")
    with pytest.raises(DicomwebAuthError, match=r"refused the credentials from .*_USER/.*_PASSWORD \(HTTP 401\)") as e:
        scan_server(orthanc_auth.dicomweb, tmp_path / "wrong", salt=SALT)
    assert "wrong-pw" not in str(e.value)
    assert not (tmp_path / "none").exists() and not (tmp_path / "wrong").exists()
    monkeypatch.setenv(ENV_PASSWORD, "s3cret-pw")
    caplog.set_level(logging.DEBUG)
    index = tmp_path / "index"
    stats = scan_server(orthanc_auth.dicomweb, index, salt=SALT)
    assert stats.series == 1
    # and from a netrc file
    monkeypatch.delenv(ENV_USER)
    monkeypatch.delenv(ENV_PASSWORD)
    rc = tmp_path / "netrc"
    rc.write_text("machine 127.0.0.1 login reader password s3cret-pw\n")
    rc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(rc))
    assert scan_server(orthanc_auth.dicomweb, tmp_path / "index2", salt=SALT).series == 1
    for folder in (index, tmp_path / "index2"):
        for f in folder.rglob("*"):
            data = f.read_bytes()
            assert b"s3cret-pw" not in data and b"reader" not in data, f
    assert "s3cret-pw" not in caplog.text


def test_rescan_is_incremental(orthanc, content, tmp_path: Path):
    """Runs last: it changes the server's content."""
    index = tmp_path / "index"
    first = scan_server(orthanc.dicomweb, index, salt=SALT)
    before = _dump(index)
    again = scan_server(orthanc.dicomweb, index, salt=SALT)
    assert (again.requests, again.headers_read, again.series_fetched) == (1, 0, 0)
    assert again.series_unchanged == first.series_seen and again.unchanged == first.files_seen
    assert _dump(index)[:4] == before[:4]
    print(f"first scan {first.seconds:.3f} s ({first.requests} requests), rescan {again.seconds:.3f} s")
    assert again.seconds < first.seconds

    # a new series: only it is fetched
    subjects = content["subjects"]
    added = _copy_series(list(subjects[1].glob("*.dcm")), tmp_path / "added")
    upload(orthanc, added)
    after_add = scan_server(orthanc.dicomweb, index, salt=SALT)
    assert (after_add.series_fetched, after_add.headers_read, after_add.series) == (1, len(added), first.series + 1)
    assert (after_add.added, after_add.changed, after_add.unchanged) == (len(added), 0, first.files_seen)
    # an instance deleted from a series: that series is fetched again and now misses a slice
    ds = pydicom.dcmread(sorted(added)[5], stop_before_pixels=True)
    (orthanc_id,) = [r["ID"] for r in json.loads(orthanc.request("/tools/lookup", ds.SOPInstanceUID.encode(), "POST"))]
    orthanc.request(f"/instances/{orthanc_id}", method="DELETE")
    after_delete = scan_server(orthanc.dicomweb, index, salt=SALT)
    assert (after_delete.series_fetched, after_delete.headers_read) == (1, len(added) - 1)
    assert (after_delete.added, after_delete.changed) == (0, len(added) - 1)
    (rec,) = [r for r in list_series(index) if r["series_uid"] == ds.SeriesInstanceUID]
    assert rec["status"] == "quarantined" and "missing slice" in " ".join(rec["issues"])
    # a series removed from the server leaves the index
    (series_id,) = [
        r["ID"] for r in json.loads(orthanc.request("/tools/lookup", ds.SeriesInstanceUID.encode(), "POST"))
    ]
    orthanc.request(f"/series/{series_id}", method="DELETE")
    after_remove = scan_server(orthanc.dicomweb, index, salt=SALT)
    assert (after_remove.series_removed, after_remove.removed, after_remove.series_fetched) == (1, len(added) - 1, 0)
    assert _dump(index)[:4] == before[:4]
