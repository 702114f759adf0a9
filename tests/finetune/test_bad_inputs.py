"""Bad input fails early with a message that names the problem."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.data import DatalistError
from monai_transfer.finetune import finetune
from monai_transfer.finetune.datalist_checks import check_num_classes
from monai_transfer.transforms.checks import CheckFinited, CheckLabelRanged

FAST = {"backbone": "resnet10", "epochs": 1, "batch_size": 4, "tensorboard": False}


def _edit(src, dst, edit):
    with open(src) as f:
        obj = json.load(f)
    base = str(src.rsplit("/", 1)[0])
    for rows in obj.values():
        if isinstance(rows, list):
            for r in rows:
                for k, v in r.items():
                    if isinstance(v, str) and v.startswith("./"):
                        r[k] = base + v[1:]
    edit(obj)
    dst.write_text(json.dumps(obj))
    return str(dst)


def test_unknown_strategy(demo, tmp_path):
    with pytest.raises(ValueError, match=r"unknown fine-tuning strategy 'warm-start'.*'linear-probe'"):
        finetune(strategy="warm-start", task="segmentation", datalist=demo["tissue_seg_2d"], out_dir=tmp_path, **FAST)


def test_wrong_num_classes_classification(demo, tmp_path):
    with pytest.raises(ValueError, match=r"num_classes=3 but the datalist declares 2 labels"):
        finetune(task="classification", num_classes=3, datalist=demo["lesion_cls_3d"], out_dir=tmp_path, **FAST)


def test_wrong_num_classes_segmentation(demo, tmp_path):
    with pytest.raises(ValueError, match=r"num_classes=2 but the datalist declares 4 labels"):
        finetune(task="segmentation", num_classes=2, datalist=demo["tissue_seg_2d"], out_dir=tmp_path, **FAST)


def test_label_outside_range_classification(demo, tmp_path):
    def edit(obj):
        obj["validation"][0]["label"] = 5

    dl = _edit(demo["lesion_cls_3d"], tmp_path / "bad.json", edit)
    with pytest.raises(ValueError, match=r"\[validation\]: label 5 of case sub-\d+_T1w\.nii\.gz is not one of the classes"):
        finetune(task="classification", num_classes=2, datalist=dl, out_dir=tmp_path / "o", **FAST)
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_label_outside_declared_labels_is_named_not_a_bigger_head(demo, tmp_path):
    # issue 12: labels {0, 1} declared and a case labelled 7 built an 8-class head and exited 0
    def edit(obj):
        obj["training"][2]["label"] = 7

    dl = _edit(demo["lesion_cls_3d"], tmp_path / "bad.json", edit)
    with pytest.raises(ValueError, match=r"\[training\]: label 7 of case .* is not one of the classes 0\.\.1 \(declared"):
        finetune(task="classification", datalist=dl, out_dir=tmp_path / "o", **FAST)
    assert not (tmp_path / "o").exists()


def test_label_outside_range_segmentation(demo, tmp_path):
    with open(demo["tissue_seg_2d"]) as f:
        first = json.load(f)["training"][0]
    src = demo["tissue_seg_2d"].rsplit("/", 1)[0] + first["label"][1:]
    img = nib.load(src)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0] = 7
    bad = tmp_path / "bad_seg.nii.gz"
    nib.save(nib.Nifti1Image(arr, img.affine), bad)

    def edit(obj):
        obj["training"][0]["label"] = str(bad)

    dl = _edit(demo["tissue_seg_2d"], tmp_path / "bad.json", edit)
    with pytest.raises(ValueError, match=r"label map .*bad_seg\.nii\.gz holds values \[.*7\] outside \[0, 4\)"):
        finetune(task="segmentation", datalist=dl, out_dir=tmp_path / "o", **FAST)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # a failed start leaves nothing


def test_nan_image(demo, tmp_path):
    with open(demo["tissue_seg_2d"]) as f:
        first = json.load(f)["training"][0]
    src = demo["tissue_seg_2d"].rsplit("/", 1)[0] + first["image"][1:]
    img = nib.load(src)
    arr = np.asarray(img.dataobj, dtype=np.float32).copy()
    arr[3, 4] = np.nan
    bad = tmp_path / "nan_img.nii.gz"
    nib.save(nib.Nifti1Image(arr, img.affine), bad)

    def edit(obj):
        obj["training"][0]["image"] = str(bad)

    dl = _edit(demo["tissue_seg_2d"], tmp_path / "bad.json", edit)
    with pytest.raises(ValueError, match=r"image .*nan_img\.nii\.gz contains NaN or infinite values \(1 NaN"):
        finetune(task="segmentation", datalist=dl, out_dir=tmp_path / "o", **FAST)


def test_missing_datalist_key_and_section(demo, tmp_path):
    def edit(obj):
        del obj["training"][1]["label"]

    dl = _edit(demo["lesion_cls_3d"], tmp_path / "bad.json", edit)
    with pytest.raises(DatalistError, match="label"):
        finetune(task="classification", datalist=dl, out_dir=tmp_path / "o", **FAST)
    with pytest.raises(DatalistError, match=r"no section 'valid'"):
        finetune(task="classification", datalist=demo["lesion_cls_3d"], val_section="valid", out_dir=tmp_path, **FAST)


def test_transform_checks_direct():
    import torch

    with pytest.raises(ValueError, match="outside \\[0, 2\\)"):
        CheckLabelRanged("label", num_classes=2)({"label": 2})
    assert CheckLabelRanged("label", num_classes=2)({"label": 1})["label"].tolist() == [1]
    with pytest.raises(ValueError, match="NaN"):
        CheckFinited("image")({"image": torch.tensor([1.0, float("nan")])})
    with pytest.raises(ValueError, match="at least two classes"):
        check_num_classes([{"label": 0}], "classification", None)
