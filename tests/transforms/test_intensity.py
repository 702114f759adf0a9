"""Intensity presets: known HU window values, percentiles, MONOCHROME1 inversion, array/dict agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from monai_transfer.data.radiograph import read_radiograph
from monai_transfer.transforms import (
    CT_WINDOWS,
    CTWindow,
    CTWindowd,
    CTWindowDict,
    MRPercentileNormalize,
    MRPercentileNormalized,
    RadiographNormalize,
    RadiographNormalized,
    intensity_preset,
)


@pytest.mark.parametrize(
    "preset,hu,expected",
    [
        ("ct_soft_tissue", [-160, 40, 240, -1000, 3000], [0.0, 0.5, 1.0, 0.0, 1.0]),
        ("ct_lung", [-1350, -600, 150], [0.0, 0.5, 1.0]),
        ("ct_bone", [-500, 400, 1300], [0.0, 0.5, 1.0]),
        ("ct_brain", [0, 40, 80], [0.0, 0.5, 1.0]),
    ],
)
def test_ct_window_known_values(preset: str, hu: list[float], expected: list[float]) -> None:
    x = torch.tensor(hu, dtype=torch.float32)[None]
    np.testing.assert_allclose(CTWindow(preset)(x)[0].numpy(), expected, atol=1e-6)
    d = CTWindowd("img", preset=preset)({"img": x})
    assert torch.equal(d["img"], CTWindow(preset)(x))
    assert CTWindowDict is CTWindowd


def test_ct_window_custom_and_meta() -> None:
    x = MetaTensor(torch.tensor([[-100.0, 0.0, 100.0]]), affine=torch.eye(4) * 2)
    y = CTWindow(level=0, width=200, out_min=-1, out_max=1)(x)
    assert isinstance(y, MetaTensor) and torch.equal(y.affine, x.affine)
    np.testing.assert_allclose(y.as_tensor().numpy(), [[-1, 0, 1]])
    with pytest.raises(ValueError, match="unknown CT window"):
        CTWindow("ct_nope")
    with pytest.raises(ValueError):
        CTWindow(level=0)
    assert set(CT_WINDOWS) >= {"ct_soft_tissue", "ct_lung", "ct_bone"}


def test_mr_percentile() -> None:
    x = torch.zeros(1, 10, 10, 10)
    x[0, 2:8, 2:8, 2:8] = torch.linspace(1, 100, 216).reshape(6, 6, 6)
    y = MRPercentileNormalize(lower=0, upper=100)(x)
    assert float(y.min()) == 0 and float(y.max()) == 1 and float(y[0, 0, 0, 0]) == 0
    np.testing.assert_allclose(float(y[0, 2, 2, 2]), 0.0, atol=1e-6)
    y2 = MRPercentileNormalize(lower=5, upper=95, out_min=-1)(x)
    assert float(y2.min()) == -1 and float(y2.max()) == 1
    d = MRPercentileNormalized("image", lower=5, upper=95, out_min=-1)({"image": x})
    assert torch.equal(d["image"], y2)


def test_radiograph_inversion() -> None:
    x = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10)
    m2 = RadiographNormalize(lower=0, upper=100)(x, photometric="MONOCHROME2")
    m1 = RadiographNormalize(lower=0, upper=100)(x, photometric="MONOCHROME1")
    assert torch.allclose(m1, 1 - m2)
    meta_img = MetaTensor(x, meta={"PhotometricInterpretation": "MONOCHROME1"})
    out = RadiographNormalize(lower=0, upper=100)(meta_img)
    assert torch.allclose(out.as_tensor(), 1 - m2) and out.meta["PhotometricInterpretation"] == "MONOCHROME2"
    d = RadiographNormalized("image", lower=0, upper=100)({"image": x, "photometric_interpretation": "MONOCHROME1"})
    assert torch.allclose(d["image"], m1)
    assert torch.allclose(RadiographNormalize(lower=0, upper=100, invert=True)(x), m1)


def test_intensity_preset_factory() -> None:
    assert isinstance(intensity_preset("ct_lung"), CTWindow)
    assert isinstance(intensity_preset("mr", keys="image"), MRPercentileNormalized)
    assert isinstance(intensity_preset("xr"), RadiographNormalize)
    with pytest.raises(ValueError, match="known"):
        intensity_preset("pet")


def _cr(path: Path, photometric: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = 4, 6
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, 100
    ds.WindowCenter, ds.WindowWidth = 2100, 2000
    ds.ImagerPixelSpacing = [0.2, 0.1]
    ds.PixelData = np.arange(24, dtype=np.uint16).reshape(4, 6).__mul__(150).astype("<u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_read_radiograph_voi_and_monochrome1(tmp_path: Path) -> None:
    img = read_radiograph(_cr(tmp_path / "m1.dcm", "MONOCHROME1"))
    assert tuple(img.shape) == (1, 6, 4) and img.meta["PhotometricInterpretation"] == "MONOCHROME1"
    raw = np.arange(24).reshape(4, 6).T * 150 * 2 + 100  # modality LUT, (X, Y)
    # linear VOI window (centre 2100, width 2000) -> pydicom's output range: the 12-bit range after the modality LUT
    assert float(img.min()) == 100.0 and float(img.max()) == 100.0 + 2 * 4095
    assert float((img == img.max()).sum()) < 24 and float((img == img.min()).sum()) < 24
    assert np.all(np.diff(img[0].numpy().T.ravel()) >= 0)  # monotone in the raw values
    assert raw.max() > 3100
    no_voi = read_radiograph(tmp_path / "m1.dcm", apply_voi=False)
    np.testing.assert_allclose(no_voi[0].numpy(), raw)
    assert np.allclose(np.diag(img.affine.numpy())[:2], [0.1, 0.2])
    norm = RadiographNormalize(lower=0, upper=100)(img)
    assert float(norm[0, 0, 0]) == 1.0  # MONOCHROME1: the lowest value is brightest after inversion
