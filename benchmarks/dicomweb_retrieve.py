"""WADO-RS retrieval benchmark: ``retrieve_series`` into the series cache vs a plain ``dicomweb-client`` loop.

Usage: ``python benchmarks/dicomweb_retrieve.py [--series 3] [--slices 64] [--size 512] [--repeats 3]``

Starts a real Orthanc with the DICOMweb plugin on a free loopback port (``RemoteAccessAllowed: false``), uploads
``series x slices`` instances made from a real CT slice (pydicom's ``CT_small.dcm``, its pixels resized to
``size x size`` int16, new UIDs per copy), then retrieves every series with:

* ``dicomweb-client``: ``DICOMwebClient.retrieve_series`` (the whole series parsed into pydicom datasets in memory),
  then ``save_as`` one file per instance: the plain loop a user would write;
* ``retrieve_series`` (this package) into an empty :class:`SeriesCache` each time: the default (the series in one
  streamed request), and instance by instance (``strategy="instances"``, the path a resumed series takes) with 1 and
  4 workers.

Prints instances/s and MB/s (median of ``--repeats`` timed runs after one warm-up) and the peak Python memory of one
series' retrieval (``tracemalloc``, in a separate untimed run). The server is stopped by its process at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from monai_transfer.data.dicomweb.cache import SeriesCache
from monai_transfer.data.dicomweb.retrieve import retrieve_series

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(tmp: Path) -> tuple[subprocess.Popen, str]:
    """Start Orthanc on loopback; return its process and HTTP root."""
    exe = shutil.which("Orthanc")
    if exe is None or not Path(PLUGIN).is_file():
        raise SystemExit("Orthanc is missing: apt-get install -y orthanc orthanc-dicomweb")
    port = _free_port()
    config = {
        "StorageDirectory": str(tmp / "db"),
        "IndexDirectory": str(tmp / "db"),
        "HttpPort": port,
        "DicomPort": _free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (tmp / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([exe, str(tmp / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/system", timeout=2).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit("Orthanc did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def upload_series(url: str, n_series: int, n_slices: int, size: int) -> tuple[list[tuple[str, str]], int]:
    """Upload ``n_series`` series of ``n_slices`` instances; return their (study, series) UIDs and bytes per series."""
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    src = base.pixel_array.astype(np.int16)
    idx = (np.arange(size) * src.shape[0] // size)[:, None], (np.arange(size) * src.shape[1] // size)[None, :]
    base.PixelData = np.ascontiguousarray(src[idx]).tobytes()
    base.Rows = base.Columns = size
    out, nbytes = [], 0
    session = requests.Session()
    for _ in range(n_series):
        base.StudyInstanceUID, base.SeriesInstanceUID = generate_uid(), generate_uid()
        nbytes = 0
        for k in range(n_slices):
            base.SOPInstanceUID = base.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            base.InstanceNumber = k + 1
            with tempfile.SpooledTemporaryFile() as fh:
                base.save_as(fh, enforce_file_format=True)
                fh.seek(0)
                data = fh.read()
            nbytes += len(data)
            session.post(f"{url}/instances", data=data, timeout=60).raise_for_status()
        out.append((str(base.StudyInstanceUID), str(base.SeriesInstanceUID)))
    return out, nbytes


def client_loop(base: str, study: str, series: str, out: Path) -> None:
    """The plain loop: dicomweb-client's retrieve_series, then one file per instance."""
    from dicomweb_client.api import DICOMwebClient

    out.mkdir(parents=True, exist_ok=True)
    for ds in DICOMwebClient(base).retrieve_series(study, series):
        ds.save_as(out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)


def ours(base: str, study: str, series: str, out: Path, workers: int, strategy: str) -> None:
    retrieve_series(base, study, series, SeriesCache(out, max_bytes=1 << 40), workers=workers, strategy=strategy)


def timed(fn: Callable[[Path], None], work: Path, repeats: int) -> float:
    """Median seconds of ``fn(fresh_folder)`` over ``repeats`` runs after one warm-up."""
    times = []
    for i in range(repeats + 1):
        folder = work / f"run{i}"
        t = time.perf_counter()
        fn(folder)
        if i:
            times.append(time.perf_counter() - t)
        shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(times)


def peak_mb(fn: Callable[[Path], None], work: Path) -> float:
    tracemalloc.start()
    try:
        fn(work / "mem")
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
        shutil.rmtree(work / "mem", ignore_errors=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=3)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        proc, url = start_orthanc(tmp)
        try:
            base = f"{url}/dicom-web"
            uids, series_bytes = upload_series(url, args.series, args.slices, args.size)
            n, mb = args.series * args.slices, args.series * series_bytes / 1e6
            variants = {
                "retrieve_series (one streamed request)": (4, "auto"),
                "retrieve_series, per instance, 1 worker": (1, "instances"),
                "retrieve_series, per instance, 4 workers": (4, "instances"),
            }

            def each(fn: Callable[[str, str, Path], None]) -> Callable[[Path], None]:
                return lambda d: [fn(st, se, d / se) for st, se in uids]

            methods: dict[str, tuple[Callable[[Path], None], Callable[[Path], None]]] = {
                "dicomweb-client loop": (
                    each(lambda st, se, d: client_loop(base, st, se, d)),
                    lambda d: client_loop(base, *uids[0], d),
                )
            }
            for name, (w, strategy) in variants.items():
                methods[name] = (
                    each(lambda st, se, d, w=w, k=strategy: ours(base, st, se, d, w, k)),
                    lambda d, w=w, k=strategy: ours(base, *uids[0], d, w, k),
                )
            print(
                f"Orthanc {requests.get(f'{url}/system', timeout=5).json().get('Version')} on loopback; "
                f"{args.series} series x {args.slices} instances ({args.size}x{args.size} int16, "
                f"{series_bytes / 1e6:.1f} MB per series); {os.cpu_count()} CPUs ({cpu_name()}); "
                f"median of {args.repeats} runs"
            )
            print("| method | s | instances/s | MB/s | peak Python memory, one series (MB) |")
            print("|---|---:|---:|---:|---:|")
            for name, (fn, one) in methods.items():
                t = timed(fn, tmp / "out", args.repeats)
                peak = peak_mb(one, tmp / "out")
                print(f"| {name} | {t:.2f} | {n / t:.0f} | {mb / t:.1f} | {peak:.1f} |")
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
