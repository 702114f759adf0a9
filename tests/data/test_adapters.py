"""Adapters on small fixtures in the exact published layouts: MedMNIST .npz, MSD dataset.json, folder + CSV."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import DataLoader
from monai.transforms import Compose, EnsureTyped, LoadImaged

from monai_transfer.data.adapters import MedMNISTDataset, load_csv_folder, load_medmnist, load_msd, msd_properties
from monai_transfer.data.adapters.medmnist import medmnist_url
from monai_transfer.data.datalist_format import DatalistError


def _npz(path: Path, shape: tuple[int, ...], n_labels: int, n_classes: int, sizes=(12, 4, 5), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        hi = 2 if n_labels > 1 else n_classes
        arrays[f"{split}_labels"] = rng.integers(0, hi, (n, n_labels)).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return path


def test_medmnist_2d_binary(tmp_path: Path) -> None:
    p = _npz(tmp_path / "pneumoniamnist.npz", (28, 28), 1, 2)
    train = load_medmnist(p, "train")
    assert len(train) == 12 and train[0]["image"].shape == (1, 28, 28) and train[0]["image"].dtype == np.uint8
    assert isinstance(train[0]["label"], int) and train[0]["task"] == "binary-class"
    assert len(load_medmnist(p, "validation")) == 4
    ds = MedMNISTDataset(p, "test", transform=EnsureTyped(keys="image", dtype=np.float32))
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert tuple(batch["image"].shape) == (5, 1, 28, 28)


def test_medmnist_rgb_multilabel_and_3d(tmp_path: Path) -> None:
    rgb = load_medmnist(_npz(tmp_path / "bloodmnist.npz", (28, 28, 3), 1, 8), "train")
    assert rgb[0]["image"].shape == (3, 28, 28)
    chest = load_medmnist(_npz(tmp_path / "chestmnist.npz", (28, 28), 14, 2), "train")
    assert chest[0]["label"].shape == (14,) and chest[0]["label"].dtype == np.float32
    vol = load_medmnist(_npz(tmp_path / "organmnist3d.npz", (28, 28, 28), 1, 11), "val")
    assert vol[0]["image"].shape == (1, 28, 28, 28)
    # an unnamed file: (N, D, H, W) with D != 3 is 3D from the shape
    anon = load_medmnist(_npz(tmp_path / "mine.npz", (16, 16, 16), 1, 3), "train")
    assert anon[0]["image"].shape == (1, 16, 16, 16)
    assert "organmnist3d_64.npz" in medmnist_url("organmnist3d", 64)


def test_medmnist_errors(tmp_path: Path) -> None:
    p = tmp_path / "pneumoniamnist.npz"
    np.savez(p, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match=r"labels must be \(N, 1\) or \(N, K\) with N = 3"):
        load_medmnist(p)
    with pytest.raises(KeyError, match="missing array 'val_images'.*train_images"):
        load_medmnist(p, "val")
    np.savez(p, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.full((3, 1), 5, np.uint8))
    with pytest.raises(ValueError, match="class 5 >= 2 classes"):
        load_medmnist(p)
    np.savez(p, train_images=np.zeros((3, 28, 28), np.float32), train_labels=np.zeros((3, 1), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        load_medmnist(p)
    q = tmp_path / "chestmnist.npz"
    np.savez(q, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.full((2, 14), 2, np.uint8))
    with pytest.raises(ValueError, match="0/1"):
        load_medmnist(q)
    with pytest.raises(ValueError, match="unknown split"):
        load_medmnist(q, "dev")


def _nii(path: Path, arr: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
    return str(path)


def _msd(root: Path, n: int = 3, num_training: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    training = []
    for i in range(n):
        _nii(root / "imagesTr" / f"spleen_{i}.nii.gz", rng.normal(size=(8, 8, 4)).astype(np.float32))
        _nii(root / "labelsTr" / f"spleen_{i}.nii.gz", (rng.random((8, 8, 4)) > 0.7).astype(np.uint8))
        training.append({"image": f"./imagesTr/spleen_{i}.nii.gz", "label": f"./labelsTr/spleen_{i}.nii.gz"})
    _nii(root / "imagesTs" / "spleen_9.nii.gz", np.zeros((8, 8, 4), np.float32))
    ds = {
        "name": "Spleen",
        "description": "Spleen Segmentation",
        "reference": "Memorial Sloan Kettering Cancer Center",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0 06/08/2018",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "spleen"},
        "numTraining": n if num_training is None else num_training,
        "numTest": 1,
        "training": training,
        "test": ["./imagesTs/spleen_9.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(ds, indent=4))
    return root


def test_msd(tmp_path: Path) -> None:
    root = _msd(tmp_path / "Task09_Spleen")
    train = load_msd(root)
    assert len(train) == 3 and train[0]["patient_id"] == "spleen_0" and train[0]["modality"] == "CT"
    assert Path(train[0]["label"]).is_file()
    test = load_msd(root / "dataset.json", "test")
    assert test[0]["image"].endswith("imagesTs/spleen_9.nii.gz") and "label" not in test[0]
    props = msd_properties(root)
    assert props["labels"] == {0: "background", 1: "spleen"} and props["num_classes"] == 2
    data = Compose([LoadImaged(keys=["image", "label"], ensure_channel_first=True)])(train[0])
    assert tuple(data["image"].shape) == (1, 8, 8, 4)


def test_msd_errors(tmp_path: Path) -> None:
    root = _msd(tmp_path / "Task", num_training=5)
    with pytest.warns(UserWarning, match="numTraining = 5"):
        load_msd(root)
    with pytest.raises(DatalistError, match="numTraining"):
        load_msd(root, strict=True)
    (root / "labelsTr" / "spleen_1.nii.gz").unlink()
    with pytest.raises(DatalistError, match=r"training\[1\] \(patient_id='spleen_1'\): label file not found"):
        with pytest.warns(UserWarning):
            load_msd(root, strict=False)
    obj = json.loads((root / "dataset.json").read_text())
    del obj["labels"]
    (root / "dataset.json").write_text(json.dumps(obj))
    with pytest.raises(DatalistError, match=r"missing MSD key\(s\) \['labels'\]"):
        load_msd(root)


def _csv_folder(root: Path, rows: list[str], header: str = "image,label,patient_id,site") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def test_csv_folder_formats_and_class_names(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "cxr"
    (root / "png").mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "png" / "a.png")
    _nii(root / "vol" / "b.nii.gz", np.zeros((4, 4, 4), np.float32))
    (root / "dicom" / "s1").mkdir(parents=True)
    (root / "dicom" / "s1" / "IM_0001.dcm").write_bytes(b"\0" * 132)
    _csv_folder(root, ["png/a.png,pneumonia,P1,A", "vol/b.nii.gz,normal,P2,B", "dicom/s1,normal,P2,B"])
    dl = load_csv_folder(root)
    assert [e["label"] for e in dl] == [1, 0, 0] and dl[0]["label_name"] == "pneumonia"
    assert [e["image_format"] for e in dl] == ["png", "nifti", "dicom_series"]
    assert dl[0]["patient_id"] == "P1" and dl[1]["site"] == "B"
    dl = load_csv_folder(root, classes=["pneumonia", "normal"])
    assert [e["label"] for e in dl] == [0, 1, 1]
    with pytest.raises(ValueError, match=r"labels.csv:2: unknown class 'pneumonia'"):
        load_csv_folder(root, classes=["normal", "covid"])


def test_csv_folder_label_kinds(tmp_path: Path) -> None:
    root = tmp_path / "f"
    root.mkdir()
    for n in "abc":
        (root / f"{n}.png").write_bytes(b"x")
    _csv_folder(root, ["a.png,0;1;0", "b.png,1;1;0", "c.png,0;0;0"], "image,label")
    assert load_csv_folder(root)[1]["label"] == [1, 1, 0]
    _csv_folder(root, ["a.png,2", "b.png,0", "c.png,1"], "image,label")
    assert [e["label"] for e in load_csv_folder(root)] == [2, 0, 1]
    _csv_folder(root, ["a.png,0.5", "b.png,2", "c.png,1.25"], "image,label")
    assert [e["label"] for e in load_csv_folder(root)] == [0.5, 2.0, 1.25]


@pytest.mark.parametrize(
    "header,rows,err,match",
    [
        ("image,diagnosis", ["a.png,1"], ValueError, r"missing column\(s\) \['label'\]; columns present"),
        ("image,label", ["a.png,1", "missing.png,0"], FileNotFoundError, r"labels.csv:3: image not found"),
        ("image,label", ["a.png,"], ValueError, r"labels.csv:2: empty label"),
        ("image,label", ["a.png,1", "a.png,0"], ValueError, r"labels.csv:3: image 'a.png' already listed on line 2"),
        ("image,label", ["a.png,1", "b.png,cat"], ValueError, r"mix types"),
        ("image,label", ["a.png,0;1", "b.png,0;1;1"], ValueError, r"different lengths"),
        ("image,label", ["notes.txt,1"], ValueError, r"unknown image format"),
    ],
)
def test_csv_folder_errors(tmp_path: Path, header: str, rows: list[str], err: type, match: str) -> None:
    root = _csv_folder(tmp_path / "f", rows, header)
    for n in ("a.png", "b.png", "notes.txt"):
        (root / n).write_bytes(b"x")
    with pytest.raises(err, match=match):
        load_csv_folder(root)
    if "already" not in match:
        assert load_csv_folder(root, label_col=None, check_files=False)  # an unlabeled listing still works
