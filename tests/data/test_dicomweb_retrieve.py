"""WADO-RS retrieval into the series cache against a fake server: multipart reads, the fault paths (retries, a cut
stream or instance, refused credentials, unknown series), resume. The same against a real Orthanc:
``tests/integration/test_dicomweb_retrieve_orthanc.py``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pydicom.data
import pytest
import requests

from monai_transfer.data.dicomweb.cache import SeriesCache
from monai_transfer.data.dicomweb.multipart_stream import TruncatedStreamError, iter_parts
from monai_transfer.data.dicomweb.retrieve import (
    RetrieveError,
    SeriesNotFoundError,
    loggable_url,
    retrieve_series,
)

BASE = "http://pacs.invalid:8042/dicom-web"
#: real files of several syntaxes (uncompressed, implicit VR, multi-frame, JPEG, JPEG 2000), distinct SOPInstanceUIDs
# --- multipart --------------------------------------------------------------------------------------------------


def _multipart(bodies: list[bytes], boundary: bytes = b"b0und", lengths: bool = True) -> bytes:
    out = b"preamble\r\n"
    for body in bodies:
        head = b"Content-Type: application/dicom\r\n"
        if lengths:
            head += b"Content-Length: %d\r\n" % len(body)
        out += b"--" + boundary + b"\r\n" + head + b"\r\n" + body + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_multipart_parts_come_out_whole_whatever_the_chunking(chunk: int):
    bodies = [b"\r\n--b0un" + bytes(range(256)) * 3, b"", b"x" * 1000 + b"\r\n--b0und"[:-1]]
    raw = _multipart(bodies)
    chunks = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]
    got = [(h, b"".join(body)) for h, body in iter_parts(chunks, b"b0und")]
    assert [b for _, b in got] == bodies
    assert got[0][0]["content-length"] == str(len(bodies[0]))


@pytest.mark.parametrize("cut", [5, 40, 200])
def test_multipart_cut_stream_raises(cut: int):
    raw = _multipart([b"y" * 300])[:-cut]
    with pytest.raises(TruncatedStreamError):
        for _, body in iter_parts([raw], b"b0und"):
            b"".join(body)


# --- a fake DICOMweb server (requests.Session look-alike) -------------------------------------------------------


class _Response:
    def __init__(self, status: int, body: bytes = b"", ctype: str = "", cut: int = 0) -> None:
        self.status_code, self._body, self.headers, self._cut = status, body, {"Content-Type": ctype}, cut

    def iter_content(self, n: int) -> Iterator[bytes]:
        body = self._body[: len(self._body) - self._cut] if self._cut else self._body
        for i in range(0, len(body), n):
            yield body[i : i + n]

    def json(self):
        return json.loads(self._body)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a) -> None:
        pass


class FakeServer:
    """Serves ``instances`` (sop -> bytes) of one series; ``faults`` maps a sop to a list of per-request faults."""

    def __init__(self, study: str, series: str, instances: dict[str, bytes]) -> None:
        self.study, self.series, self.instances = study, series, instances
        self.faults: dict[str, list] = {}
        self.gets: list[str] = []
        self.seen_headers: list[dict] = []
        self.fail_after: int | None = None  # connection errors from this many instance requests on
        self.series_gets = 0
        self.series_faults: list = []  # per series-level request: a status, "cut" (after 2.5 parts) or "short"

    def get(self, url: str, headers=None, params=None, auth=None, stream=False, timeout=None, verify=True):
        self.seen_headers.append(dict(headers or {}))
        path = url.split("/dicom-web/", 1)[1]
        parts = path.split("/")
        if parts[-1] == "instances":
            if parts[3] != self.series:
                return _Response(200, b"[]", "application/dicom+json")
            off, lim = int(params["offset"]), int(params["limit"])
            rows = [{"00080018": {"vr": "UI", "Value": [s]}} for s in self.instances][off : off + lim]
            return _Response(200, json.dumps(rows).encode(), "application/dicom+json")
        if len(parts) == 4:
            return self._series() if parts[3] == self.series else _Response(404, b"{}", "application/json")
        sop = parts[-1]
        self.gets.append(sop)
        if self.fail_after is not None and len(self.gets) > self.fail_after:
            raise requests.ConnectionError("connection refused")
        fault = self.faults.get(sop, [None]).pop(0) if self.faults.get(sop) else None
        if isinstance(fault, int):
            return _Response(fault, b"{}", "application/json")
        if sop not in self.instances:
            return _Response(404, b"{}", "application/json")
        ctype = 'multipart/related; type="application/dicom"; boundary=b0und'
        raw = _multipart([self.instances[sop]])
        if fault == "cut":  # the connection closes mid-body: no closing delimiter
            return _Response(200, raw, ctype, cut=len(raw) // 2)
        if fault == "short":  # a body shorter than its part's Content-Length, framing intact
            body = self.instances[sop]
            cut = body[:-64]
            raw = raw.replace(b"\r\n\r\n" + body, b"\r\n\r\n" + cut)
            return _Response(200, raw, ctype)
        return _Response(200, raw, ctype)

    def _series(self) -> _Response:
        self.series_gets += 1
        fault = self.series_faults.pop(0) if self.series_faults else None
        if isinstance(fault, int):
            return _Response(fault, b"{}", "application/json")
        bodies = list(self.instances.values())
        if fault == "short":  # the second part is shorter than its Content-Length says
            raw = _multipart(bodies)
            raw = raw.replace(bodies[1] + b"\r\n--b0und", bodies[1][:-64] + b"\r\n--b0und")
        else:
            raw = _multipart(bodies)
        ctype = 'multipart/related; type="application/dicom"; boundary=b0und'
        cut = len(raw) - raw.index(bodies[2]) - len(bodies[2]) // 2 if fault == "cut" else 0
        return _Response(200, raw, ctype, cut=cut)


def _series_files(tmp: Path, n: int) -> tuple[str, str, dict[str, bytes]]:
    """``n`` copies of a real CT slice turned into one series (new UIDs), as bytes by SOPInstanceUID."""
    src = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    out = {}
    for i in range(n):
        src.StudyInstanceUID, src.SeriesInstanceUID = study, series
        src.SOPInstanceUID = src.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        src.InstanceNumber = i + 1
        path = tmp / f"{i}.dcm"
        src.save_as(path, enforce_file_format=True)
        out[str(src.SOPInstanceUID)] = path.read_bytes()
    return study, series, out


@pytest.fixture()
def fake(tmp_path: Path) -> FakeServer:
    study, series, inst = _series_files(tmp_path, 6)
    return FakeServer(study, series, inst)


def _retrieve(fake: FakeServer, cache: SeriesCache, **kw) -> Path:
    kw = {"retries": 2, "backoff": 0.0, "workers": 3, **kw}
    return retrieve_series(BASE, fake.study, fake.series, cache, session=fake, **kw)


@pytest.mark.parametrize("strategy", ["auto", "instances"])
def test_retrieve_writes_the_server_bytes(fake: FakeServer, tmp_path: Path, strategy: str):
    cache = SeriesCache(tmp_path / "c", 10**8)
    p = _retrieve(fake, cache, chunk_size=1000, strategy=strategy)
    for sop, raw in fake.instances.items():
        assert (p / f"{sop}.dcm").read_bytes() == raw
    # auto: the whole series in one streamed request; instances: one request each
    assert (fake.series_gets, len(fake.gets)) == ((1, 0) if strategy == "auto" else (0, 6))
    assert _retrieve(fake, cache) == p and fake.series_gets + len(fake.gets) in (1, 6)  # cached: nothing fetched


@pytest.mark.parametrize("fault", ["cut", "short", 503])
def test_a_fault_mid_stream_keeps_the_whole_parts_and_fetches_the_rest(fake: FakeServer, tmp_path: Path, fault):
    fake.series_faults = [fault]
    p = _retrieve(fake, SeriesCache(tmp_path / "c", 10**8))
    assert len(fake.gets) == {"cut": 4, "short": 5, 503: 6}[fault]  # only what the stream did not deliver whole
    assert sorted(fake.gets) == sorted(list(fake.instances)[{"cut": 2, "short": 1, 503: 0}[fault] :])
    assert all((p / f"{s}.dcm").read_bytes() == raw for s, raw in fake.instances.items())


def test_transient_faults_are_retried(fake: FakeServer, tmp_path: Path):
    sops = list(fake.instances)
    fake.faults = {sops[0]: [503, 502], sops[1]: ["cut"], sops[2]: ["short"], sops[3]: [429]}
    p = _retrieve(fake, SeriesCache(tmp_path / "c", 10**8), strategy="instances")
    assert len(fake.gets) == 6 + 5
    assert all((p / f"{s}.dcm").read_bytes() == raw for s, raw in fake.instances.items())


def test_a_truncated_instance_that_stays_truncated_is_named(fake: FakeServer, tmp_path: Path):
    sop = list(fake.instances)[2]
    fake.faults = {sop: ["cut"] * 10}
    cache = SeriesCache(tmp_path / "c", 10**8)
    with pytest.raises(RetrieveError) as e:
        _retrieve(fake, cache, workers=1, strategy="instances")
    msg = str(e.value)
    assert f"instance {sop} of series {fake.series}" in msg and "after 3 tries (TruncatedStreamError)" in msg
    assert "instances are kept for the next retrieve" in msg and "\n" not in msg
    assert not cache.contains(fake.series)


@pytest.mark.parametrize("status, text", [(401, "refused the credentials (HTTP 401)"), (403, "denied access")])
def test_refused_credentials_are_one_sentence_and_never_shown(fake: FakeServer, tmp_path: Path, caplog, status, text):
    fake.series_faults = [status]
    secret = "Bearer s3cr3t-t0ken"
    with caplog.at_level(logging.DEBUG), pytest.raises(RetrieveError) as e:
        _retrieve(fake, SeriesCache(tmp_path / "c", 10**8), headers={"Authorization": secret}, workers=1)
    assert text in str(e.value) and "s3cr3t" not in str(e.value) and "s3cr3t" not in caplog.text
    assert fake.seen_headers[-1]["Authorization"] == secret  # sent to the server, and only there
    assert fake.series_gets == 1 and fake.gets == []  # not retried


def test_unknown_series_and_missing_instance_are_named(fake: FakeServer, tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", 10**8)
    with pytest.raises(SeriesNotFoundError, match=r"series 1\.2\.3 of study .* was not found on http://pacs"):
        retrieve_series(BASE, fake.study, "1.2.3", cache, session=fake)
    gone = list(fake.instances)[1]
    fake.faults = {gone: [404]}
    with pytest.raises(SeriesNotFoundError, match=f"instance {gone} of series .* was not found .*HTTP 404"):
        _retrieve(fake, cache, workers=1, strategy="instances")


def test_interrupted_retrieve_resumes_without_refetching(fake: FakeServer, tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", 10**8)
    fake.fail_after = 4
    with pytest.raises(RetrieveError, match="4 of 6 instances are kept"):
        _retrieve(fake, cache, workers=1, retries=0, strategy="instances")
    assert not cache.contains(fake.series)
    first = list(fake.gets[:4])
    fake.fail_after, fake.gets = None, []
    p = _retrieve(fake, SeriesCache(tmp_path / "c", 10**8))  # auto: resumes instance by instance, no stream
    assert len(fake.gets) == 2 and not set(first) & set(fake.gets) and fake.series_gets == 0
    assert all((p / f"{s}.dcm").read_bytes() == raw for s, raw in fake.instances.items())


def test_credentials_in_the_url_never_reach_messages():
    assert loggable_url("https://ann:pw@pacs.example.org:8443/dicom-web/") == "https://pacs.example.org:8443/dicom-web"


# --- a real Orthanc ---------------------------------------------------------------------------------------------
