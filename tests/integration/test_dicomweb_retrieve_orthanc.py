"""WADO-RS retrieval from a real Orthanc with the DICOMweb plugin (issue 23; ``tests/dicomweb_server.py`` starts it on a
free loopback port and always stops it): retrieved files equal the uploaded ones, eviction under a small limit,
resume after an interrupted retrieve without re-downloading what is complete, a server stopped mid-retrieve named in
one sentence with no half entry, an unknown series named, memory bounded whatever the series size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
import requests
from dicomweb_server import OrthancServer, orthanc_server, upload

from monai_transfer.data.dicomweb.cache import SeriesCache
from monai_transfer.data.dicomweb.retrieve import RetrieveError, SeriesNotFoundError, open_series, retrieve_series

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


@pytest.fixture(scope="module")
def demo_series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The demo's DICOM series (2 simulated subjects, 32 slices each), by SeriesInstanceUID."""
    from monai_transfer.data import make_demo_data

    out = tmp_path_factory.mktemp("demo")
    make_demo_data(out, n_subjects=2, n_unlabeled=0, n_other_modality=0, size=32, dicom=True, overwrite=True)
    series: dict[str, list[Path]] = {}
    for f in sorted((out / "dicom").rglob("*.dcm")):
        series.setdefault(str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID), []).append(f)
    return series


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, demo_series) -> Iterator[OrthancServer]:
    """An Orthanc holding the demo series and pydicom's real files; one per module, always stopped."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        upload(server, [f for files in demo_series.values() for f in files])
        upload(server, [Path(pydicom.data.get_testdata_file(name)) for name in REAL_FILES])
        yield server


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
def test_retrieved_files_equal_the_uploaded_ones(loaded: OrthancServer, demo_series, tmp_path: Path):
    cache = SeriesCache(tmp_path / "c", 10**9)
    sources = {se: files for se, files in demo_series.items()}
    for name in REAL_FILES:
        f = Path(pydicom.data.get_testdata_file(name))
        sources.setdefault(_uids(f)[1], []).append(f)
    for files in sources.values():
        study, series, _ = _uids(files[0])
        with open_series(loaded.dicomweb, study, series, cache) as folder:
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
def test_eviction_under_a_small_limit(loaded: OrthancServer, demo_series, tmp_path: Path):
    (s1, f1), (s2, f2) = list(demo_series.items())[:2]
    one = sum(f.stat().st_size for f in f1)
    cache = SeriesCache(tmp_path / "c", max_bytes=int(one * 1.5))
    retrieve_series(loaded.dicomweb, _uids(f1[0])[0], s1, cache)
    retrieve_series(loaded.dicomweb, _uids(f2[0])[0], s2, cache)
    assert cache.contains(s2) and not cache.contains(s1) and cache.total_bytes() <= cache.max_bytes
    with open_series(loaded.dicomweb, _uids(f1[0])[0], s1, cache) as pinned:
        retrieve_series(loaded.dicomweb, _uids(f2[0])[0], s2, cache)  # s1 is pinned: never evicted while in use
        assert pinned.is_dir() and cache.contains(s1)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("killed_in", ["instances", "stream"])
def test_resume_after_an_interrupted_retrieve(loaded: OrthancServer, demo_series, tmp_path: Path, killed_in: str):
    series, files = next(iter(demo_series.items()))
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
            loaded.dicomweb,
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
    folder = retrieve_series(loaded.dicomweb, study, series, SeriesCache(tmp_path / "c", 10**9), session=again)
    assert len(again.instance_gets) == len(files) - len(done)  # the completed instances are not downloaded again
    assert not set(again.instance_gets) & done
    assert sorted(p.read_bytes() for p in folder.glob("*.dcm")) == sorted(f.read_bytes() for f in files)


@pytest.mark.integration
@pytest.mark.slow
def test_server_stopped_mid_retrieve_is_one_sentence(demo_series, tmp_path: Path):
    with orthanc_server(tmp_path / "orthanc") as server:
        series, files = next(iter(demo_series.items()))
        upload(server, files)

        def stop_at(n: int) -> None:
            if n == 6:
                server.stop()

        cache = SeriesCache(tmp_path / "c", 10**9)
        session = _CountingSession(stop_at)
        with pytest.raises(RetrieveError) as e:
            retrieve_series(
                server.dicomweb,
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
        assert msg.startswith("could not retrieve instance ") and f"from {server.dicomweb} after 3 tries" in msg
        assert "5 of 32 instances are kept for the next retrieve" in msg and "\n" not in msg
        assert not cache.contains(series) and not cache.path(series).exists()
        assert cache.entries() == []


@pytest.mark.integration
@pytest.mark.slow
def test_unknown_series_on_orthanc_is_named(loaded: OrthancServer, demo_series, tmp_path: Path):
    study = _uids(next(iter(demo_series.values()))[0])[0]
    with pytest.raises(SeriesNotFoundError, match=r"series 1\.2\.3\.4 of study .* was not found on http://127"):
        retrieve_series(loaded.dicomweb, study, "1.2.3.4", SeriesCache(tmp_path / "c", 10**9))


@pytest.mark.integration
@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_series_size(loaded: OrthancServer, tmp_path: Path):
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
        upload(loaded, [tmp_path / "x.dcm"])
    for strategy in ("auto", "instances"):
        cache = SeriesCache(tmp_path / strategy, 10**9)
        tracemalloc.start()
        try:
            folder = retrieve_series(
                loaded.dicomweb, ds.StudyInstanceUID, ds.SeriesInstanceUID, cache, chunk_size=1 << 18, strategy=strategy
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert cache.manifest(ds.SeriesInstanceUID)["bytes"] > 16 * 2**21 and len(list(folder.glob("*.dcm"))) == 16
        assert peak < 8 * 2**20, f"{strategy}: peak {peak / 2**20:.1f} MB for a 32 MB series"
