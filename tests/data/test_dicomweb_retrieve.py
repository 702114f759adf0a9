"""WADO-RS retrieval into the series cache: a fake server for the fault paths, a real Orthanc for the rest.

The Orthanc starter here is private to this module (the shared fixture lives in ``tests/dicomweb_server.py`` on
another branch); it installs ``orthanc`` + ``orthanc-dicomweb`` with apt when missing, binds loopback only
(``RemoteAccessAllowed: false``) and always stops the server by its process.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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
    open_series,
    retrieve_series,
)

BASE = "http://pacs.invalid:8042/dicom-web"
#: real files of several syntaxes (uncompressed, implicit VR, multi-frame, JPEG, JPEG 2000), distinct SOPInstanceUIDs
REAL_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "emri_small.dcm",
    "SC_rgb_small_odd.dcm",
    "rtdose.dcm",
    "JPEG-lossy.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "US1_J2KR.dcm",
]


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_orthanc() -> str:
    exe = shutil.which("Orthanc")
    if exe is None:
        try:
            subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "orthanc", "orthanc-dicomweb"],
                check=True,
                capture_output=True,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"Orthanc is not installed and apt-get could not install it: {type(e).__name__}")
        exe = shutil.which("Orthanc")
    plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
    if exe is None or not plugin.is_file():
        pytest.skip("Orthanc or its DICOMweb plugin is missing")
    return exe


class _Orthanc:
    def __init__(self, tmp: Path) -> None:
        exe = _ensure_orthanc()
        self.port = _free_port()
        (tmp / "db").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": f"test-{uuid.uuid4().hex[:6]}",
            "StorageDirectory": str(tmp / "db"),
            "IndexDirectory": str(tmp / "db"),
            "HttpPort": self.port,
            "DicomPort": _free_port(),
            "RemoteAccessAllowed": False,  # Orthanc 1.10 has no bind address: this keeps it to loopback
            "AuthenticationEnabled": False,
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (tmp / "orthanc.json").write_text(json.dumps(config))
        self.log = open(tmp / "orthanc.log", "wb")
        self.proc = subprocess.Popen([exe, str(tmp / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.url}/dicom-web"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{self.url}/system", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start (see {tmp / 'orthanc.log'})")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def upload(self, path: Path) -> None:
        r = requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), timeout=30)
        r.raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def demo_dicom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The demo's DICOM series (2 simulated subjects, 32 slices each), by SeriesInstanceUID."""
    from monai_transfer.data import make_demo_data

    out = tmp_path_factory.mktemp("demo")
    make_demo_data(out, n_subjects=2, n_unlabeled=0, n_other_modality=0, size=32, dicom=True, overwrite=True)
    series: dict[str, list[Path]] = {}
    for f in sorted((out / "dicom").rglob("*.dcm")):
        series.setdefault(str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID), []).append(f)
    return series


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, demo_dicom) -> Iterator[_Orthanc]:
    server = _Orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        for files in demo_dicom.values():
            for f in files:
                server.upload(f)
        for name in REAL_FILES:
            server.upload(Path(pydicom.data.get_testdata_file(name)))
        yield server
    finally:
        server.stop()


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


class _CountingSession(requests.Session):
    """Counts instance requests; ``on_request(n)`` runs before the n-th one (to fail or stop the server)."""

    def __init__(self, on_request=None) -> None:
        super().__init__()
        self.instance_gets: list[str] = []
        self.on_request = on_request

    kill_stream_after: int | None = None  # bytes of a series-level stream after which the run is "killed"

    def get(self, url, **kw):
        if "/instances/" in url:
            self.instance_gets.append(url.rsplit("/", 1)[1])
            if self.on_request is not None:
                self.on_request(len(self.instance_gets))
        r = super().get(url, **kw)
        if url.rstrip("/").split("/")[-2] == "series" and self.kill_stream_after is not None:
            inner, limit = r.iter_content, self.kill_stream_after

            def iter_content(n, *a, **k):
                seen = 0
                for chunk in inner(n, *a, **k):
                    if seen + len(chunk) > limit:
                        raise KeyboardInterrupt  # a run killed mid-stream
                    seen += len(chunk)
                    yield chunk

            r.iter_content = iter_content
        return r


@pytest.mark.integration
@pytest.mark.slow
def test_retrieved_files_equal_the_uploaded_ones(orthanc: _Orthanc, demo_dicom, tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", 10**9)
    sources = {se: files for se, files in demo_dicom.items()}
    for name in REAL_FILES:
        f = Path(pydicom.data.get_testdata_file(name))
        sources.setdefault(_uids(f)[1], []).append(f)
    for files in sources.values():
        study, series, _ = _uids(files[0])
        with open_series(orthanc.base, study, series, cache) as folder:
            assert len(list(folder.glob("*.dcm"))) == len(files)
            for f in files:
                got = folder / f"{_uids(f)[2]}.dcm"
                assert got.read_bytes() == f.read_bytes()
                a, b = pydicom.dcmread(f), pydicom.dcmread(got)
                assert (a.StudyInstanceUID, a.SeriesInstanceUID) == (b.StudyInstanceUID, b.SeriesInstanceUID)
                if "PixelData" in a and a.file_meta.TransferSyntaxUID in (
                    "1.2.840.10008.1.2",
                    "1.2.840.10008.1.2.1",
                ):
                    np.testing.assert_array_equal(a.pixel_array, b.pixel_array)


@pytest.mark.integration
@pytest.mark.slow
def test_eviction_under_a_small_limit(orthanc: _Orthanc, demo_dicom, tmp_path: Path):
    (s1, f1), (s2, f2) = list(demo_dicom.items())[:2]
    one = sum(f.stat().st_size for f in f1)
    cache = SeriesCache(tmp_path / "c", max_bytes=int(one * 1.5))
    retrieve_series(orthanc.base, _uids(f1[0])[0], s1, cache)
    retrieve_series(orthanc.base, _uids(f2[0])[0], s2, cache)
    assert cache.contains(s2) and not cache.contains(s1) and cache.total_bytes() <= cache.max_bytes
    with open_series(orthanc.base, _uids(f1[0])[0], s1, cache) as pinned:
        retrieve_series(orthanc.base, _uids(f2[0])[0], s2, cache)  # s1 is pinned: never evicted while in use
        assert pinned.is_dir() and cache.contains(s1)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("killed_in", ["instances", "stream"])
def test_resume_after_an_interrupted_retrieve(orthanc: _Orthanc, demo_dicom, tmp_path: Path, killed_in: str):
    series, files = next(iter(demo_dicom.items()))
    study = _uids(files[0])[0]
    k = 10

    def die(n: int) -> None:
        if n > k:
            raise KeyboardInterrupt  # a run killed mid-retrieve (not retried, not caught)

    cache = SeriesCache(tmp_path / "c", 10**9)
    first = _CountingSession(die)
    if killed_in == "stream":  # killed after about k instances of the one-request stream
        first.kill_stream_after = int(sum(f.stat().st_size for f in files[:k]) + 1000)
    with pytest.raises(KeyboardInterrupt):
        retrieve_series(
            orthanc.base,
            study,
            series,
            cache,
            session=first,
            workers=1,
            chunk_size=4096,  # small reads, so the kill comes mid-stream
            strategy={"stream": "auto"}.get(killed_in, killed_in),
        )
    assert not cache.contains(series)
    done = {p.stem for p in (tmp_path / "c" / "partial" / series).glob("*.dcm")}
    assert 0 < len(done) <= k
    again = _CountingSession()
    folder = retrieve_series(orthanc.base, study, series, SeriesCache(tmp_path / "c", 10**9), session=again)
    assert len(again.instance_gets) == len(files) - len(done)  # the completed instances are not downloaded again
    assert not set(again.instance_gets) & done
    assert sorted(p.read_bytes() for p in folder.glob("*.dcm")) == sorted(f.read_bytes() for f in files)


@pytest.mark.integration
@pytest.mark.slow
def test_server_stopped_mid_retrieve_is_one_sentence(demo_dicom, tmp_path: Path):
    server = _Orthanc(tmp_path / "orthanc")
    try:
        series, files = next(iter(demo_dicom.items()))
        for f in files:
            server.upload(f)

        def stop_at(n: int) -> None:
            if n == 6:
                server.stop()

        cache = SeriesCache(tmp_path / "c", 10**9)
        session = _CountingSession(stop_at)
        with pytest.raises(RetrieveError) as e:
            retrieve_series(
                server.base,
                _uids(files[0])[0],
                series,
                cache,
                session=session,
                workers=1,
                retries=2,
                backoff=0.05,
                strategy="instances",  # the stop comes between two instance requests
            )
        msg = str(e.value)
        assert msg.startswith("could not retrieve instance ") and f"from {server.base} after 3 tries" in msg
        assert "5 of 32 instances are kept for the next retrieve" in msg and "\n" not in msg
        assert not cache.contains(series) and not cache.path(series).exists()
        assert cache.entries() == []
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_unknown_series_on_orthanc_is_named(orthanc: _Orthanc, demo_dicom, tmp_path: Path):
    study = _uids(next(iter(demo_dicom.values()))[0])[0]
    with pytest.raises(SeriesNotFoundError, match=r"series 1\.2\.3\.4 of study .* was not found on http://127"):
        retrieve_series(orthanc.base, study, "1.2.3.4", SeriesCache(tmp_path / "c", 10**9))


@pytest.mark.integration
@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_series_size(orthanc: _Orthanc, tmp_path: Path):
    """A 32 MB series (16 instances of 1024 x 1024 int16) retrieved with 256 KiB reads: Python's peak stays under 8 MB."""
    import tracemalloc

    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.Rows = ds.Columns = 1024
    ds.PixelData = np.random.default_rng(0).integers(0, 4000, (1024, 1024), dtype=np.int16).tobytes()
    for k in range(16):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
        orthanc.upload(tmp_path / "x.dcm")
    for strategy in ("auto", "instances"):
        cache = SeriesCache(tmp_path / strategy, 10**9)
        tracemalloc.start()
        try:
            folder = retrieve_series(
                orthanc.base, ds.StudyInstanceUID, ds.SeriesInstanceUID, cache, chunk_size=1 << 18, strategy=strategy
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert cache.manifest(ds.SeriesInstanceUID)["bytes"] > 16 * 2**21 and len(list(folder.glob("*.dcm"))) == 16
        assert peak < 8 * 2**20, f"{strategy}: peak {peak / 2**20:.1f} MB for a 32 MB series"
