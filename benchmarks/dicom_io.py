"""DICOM I/O benchmark: scan/rescan throughput of the series index, and series-to-tensor load time.

Usage: ``python benchmarks/dicom_io.py [--series 100] [--slices 20] [--repeats 3]``

Builds a tree of ``series x slices`` files (default 2,000) in a temp dir from a real CT slice (pydicom's
``CT_small.dcm``): every copy gets new Study/Series/SOP Instance UIDs and its own slice position, file names are
shuffled across nested folders. Prints files/s of a first scan and of a rescan of the unchanged tree, then the time to
load one series into a tensor with ``monai_transfer.data.load_series``, SimpleITK's ``ImageSeriesReader`` and MONAI's
``LoadImage(reader="ITKReader")`` (median of ``--repeats`` runs, after one warm-up each).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from monai_transfer.data import list_series, load_series, scan


def build_tree(root: Path, n_series: int, n_slices: int, source: str, seed: int = 0) -> list[Path]:
    """Write ``n_series`` series of ``n_slices`` copies of ``source`` with new UIDs; return the series folders."""
    rng = np.random.default_rng(seed)
    base = pydicom.dcmread(source)
    thick = float(base.get("SliceThickness") or 1.0) or 1.0
    normal = np.cross(*np.asarray(base.ImageOrientationPatient, dtype=float).reshape(2, 3))
    origin = np.asarray(base.ImagePositionPatient, dtype=float)
    folders = []
    for s in range(n_series):
        base.StudyInstanceUID = generate_uid()
        base.SeriesInstanceUID = generate_uid()
        folder = root / f"p{s % 17:02d}" / f"s{s:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder)
        for k, name in enumerate(rng.permutation(n_slices)):
            base.SOPInstanceUID = generate_uid()
            base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
            base.InstanceNumber = k + 1
            base.ImagePositionPatient = [f"{v:.4f}" for v in origin + k * thick * normal]
            base.save_as(folder / f"IM{name:05d}", enforce_file_format=True)
    return folders


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    """Run the benchmark and print the numbers."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=100)
    p.add_argument("--slices", type=int, default=20)
    p.add_argument("--load-slices", type=int, default=64, help="slices of the 512x512 CT series for the load test")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t = time.perf_counter()
        build_tree(tmp_path / "tree", args.series, args.slices, get_testdata_file("CT_small.dcm"))
        n = args.series * args.slices
        print(f"generated {n} files (128x128 CT) in {time.perf_counter() - t:.1f} s")
        first = scan(tmp_path / "tree", tmp_path / "idx")
        print(f"first scan : {first.seconds:7.2f} s  {n / first.seconds:9.0f} files/s  ({first.series} series)")
        second = scan(tmp_path / "tree", tmp_path / "idx")
        print(
            f"rescan     : {second.seconds:7.2f} s  {n / second.seconds:9.0f} files/s  "
            f"(headers read: {second.headers_read}; {100 * second.seconds / first.seconds:.1f}% of first scan)"
        )
        src = get_testdata_file("693_UNCR.dcm") or get_testdata_file("CT_small.dcm")
        (folder,) = build_tree(tmp_path / "load", 1, args.load_slices, src, seed=1)
        scan(tmp_path / "load", tmp_path / "idx_load")
        (rec,) = list_series(tmp_path / "idx_load")
        shape = (rec["dims"][0], rec["dims"][1], rec["dims"][2])
        print(f"load test series: {shape} from {Path(src).name}, median of {args.repeats}")
        ours = median_time(lambda: load_series([rec], rec["series_key"]), args.repeats)
        print(f"  monai_transfer.load_series     : {ours * 1000:8.1f} ms")
        try:
            import SimpleITK as sitk

            def sitk_load() -> object:
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
                return sitk.GetArrayFromImage(reader.Execute())

            print(f"  SimpleITK ImageSeriesReader    : {median_time(sitk_load, args.repeats) * 1000:8.1f} ms")
        except ImportError:
            print("  SimpleITK not installed")
        from monai.transforms import LoadImage

        loader = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=True)
        print(
            f"  MONAI LoadImage(ITKReader)     : {median_time(lambda: loader(str(folder)), args.repeats) * 1000:8.1f} ms"
        )


if __name__ == "__main__":
    main()
