"""NIfTI / MHA through MONAI readers with the same record keys as a DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from monai.transforms import LoadImage

from monai_transfer.data import list_series, read_image, scan


def test_nifti_and_mha_records(nifti_volume: tuple[Path, np.ndarray], oblique_series: dict, tmp_path: Path) -> None:
    path, vol = nifti_volume
    img = read_image(path)
    ref = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    np.testing.assert_allclose(img.numpy(), ref.numpy())
    np.testing.assert_allclose(np.asarray(img.affine), np.asarray(ref.affine))
    rec = img.meta["series_record"]
    assert rec["dims"] == list(vol.shape) and rec["spacing"] == [1.0, 1.0, 1.0]
    scan(oblique_series["root"], tmp_path / "idx")
    (dicom_rec,) = list_series(tmp_path / "idx")
    assert set(rec) == set(dicom_rec)
    mha = tmp_path / "v.mha"
    sitk.WriteImage(sitk.ReadImage(str(path)), str(mha))
    img2 = read_image(mha)
    np.testing.assert_allclose(img2.numpy(), img.numpy())
    np.testing.assert_allclose(np.asarray(img2.affine), np.asarray(img.affine), atol=1e-5)
