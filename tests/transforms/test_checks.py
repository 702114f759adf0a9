"""``check_image_files`` / ``image_problem``: the load-time checks of every run, applied to a list of cases up front
(issue 21: a bad test image was found only after training; ``infer`` found a bad image inside the engine)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.transforms.checks import check_image_files, image_problem


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.random((8, 8, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "good.nii.gz"))
    raw = (tmp_path / "good.nii.gz").read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    bad = arr.copy()
    bad[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    nib.save(nib.Nifti1Image(arr[:, :, 0], np.eye(4)), str(tmp_path / "flat.nii.gz"))
    return tmp_path


@pytest.mark.parametrize(
    "name, said", [("truncated", "cannot be read"), ("nan", "NaN or infinite"), ("flat", "2 spatial axes")]
)
def test_a_bad_file_is_named_in_one_sentence(files, name, said):
    rows = [{"image": str(files / "good.nii.gz")}, {"image": str(files / f"{name}.nii.gz"), "label": 1}]
    problem = image_problem(rows[1], spatial_dims=3)
    assert problem and f"{name}.nii.gz" in problem and said in problem and "\n" not in problem
    with pytest.raises(ValueError, match=rf"^data.json \[test\]: .*{name}\.nii\.gz.*{said}"):
        check_image_files(rows, spatial_dims=3, where="data.json [test]")


def test_good_files_pass_and_non_file_values_are_skipped(files):
    rows = [{"image": str(files / "good.nii.gz"), "label": 1}, {"image": str(files / "good.nii.gz")}]
    assert check_image_files(rows, ("image", "label"), spatial_dims=3) == 2
    assert image_problem({"label": 0}) is None
