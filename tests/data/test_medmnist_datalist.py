"""A MedMNIST ``.npz`` wherever a datalist path is accepted: conversion to NIfTI + datalist JSON in the cache,
idempotence, bad files, and ``finetune --data x.npz`` end to end. Fixtures are tiny files in the published layout."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.data import DatalistError, datalist_path, load_datalist, medmnist_datalist
from monai_transfer.data.adapters import medmnist as mm
from monai_transfer.data.datalist import load_datalist_file

COUNTS = {"train": 12, "val": 4, "test": 4}


def _write_npz(path: Path, image_shape: tuple[int, ...], seed: int = 0, multilabel: int = 0) -> dict[str, np.ndarray]:
    """The published layout: uint8 images (N, ...) and uint8 labels (N, 1) (or (N, K) 0/1), both classes per split."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in COUNTS.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)
        if multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (n, multilabel)).astype(np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MONAI_TRANSFER_CACHE", str(tmp_path / "cache"))
    mm._CONVERTED.clear()
    yield tmp_path / "cache"
    mm._CONVERTED.clear()


@pytest.fixture
def npz2d(tmp_path):
    path = tmp_path / "data" / "pneumoniamnist.npz"
    path.parent.mkdir()
    return path, _write_npz(path, (28, 28))


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "name,shape,dims",
    [("pneumoniamnist.npz", (28, 28), 2), ("organmnist3d.npz", (28, 28, 28), 3), ("mine.npz", (28, 28, 3), 2)],
)
def test_conversion(tmp_path, cache, name, shape, dims):
    npz = tmp_path / "data" / name
    npz.parent.mkdir()
    arrays = _write_npz(npz, shape, seed=len(shape))
    out = medmnist_datalist(npz)
    folder = Path(out).parent
    sha = mm._sha256(str(npz))
    assert folder == cache.resolve() / "medmnist" / sha[:16] and (folder / ".ready").is_file()
    assert os.listdir(npz.parent) == [name], "nothing written beside the data"
    props = load_datalist_file(npz)
    assert props["tensorImageSize"] == f"{dims}D" and props["source"]["sha256"] == sha
    if name == "pneumoniamnist.npz":
        assert props["labels"] == {"0": "normal", "1": "pneumonia"}
    elif name == "mine.npz":
        assert props["labels"] == {"0": "0", "1": "1"}
    for split, section in (("train", "training"), ("val", "validation"), ("test", "test")):
        rows = load_datalist(npz, section, required_keys=("image", "label"))
        assert len(rows) == COUNTS[split]
        for i, row in enumerate(rows):
            assert row["id"] == f"{split}_{i:04d}" and row["label"] == int(arrays[f"{split}_labels"][i, 0])
            files = row["image"] if isinstance(row["image"], list) else [row["image"]]
            back = np.stack([np.asarray(nib.load(f).dataobj) for f in files], -1)
            expected = arrays[f"{split}_images"][i]
            assert back.dtype == np.uint8 and np.array_equal(back.reshape(expected.shape), expected)
            assert np.array_equal(nib.load(files[0]).affine, np.eye(4))


def test_channels_as_monai_loads_them(tmp_path, cache):
    """RGB -> (3, H, W); grey 2D -> (1, H, W); 3D -> (1, D, H, W), through the loaders every pipeline uses."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    load = lambda row: EnsureChannelFirstd("image")(LoadImaged("image", image_only=True)(row))["image"]  # noqa: E731
    for name, shape, want in [("a.npz", (28, 28, 3), (3, 28, 28)), ("b.npz", (28, 28), (1, 28, 28)),
                              ("c.npz", (8, 10, 12), (1, 8, 10, 12))]:  # fmt: skip
        arrays = _write_npz(tmp_path / name, shape)
        img = load(load_datalist(tmp_path / name, "training")[1])
        assert tuple(img.shape) == want
        expected = arrays["train_images"][1]
        expected = np.moveaxis(expected, -1, 0) if len(shape) == 3 and shape[-1] == 3 else expected[None]
        assert np.array_equal(np.asarray(img), expected.astype(np.float32))


def test_multilabel(tmp_path, cache):
    npz = tmp_path / "chestmnist.npz"
    arrays = _write_npz(npz, (28, 28), multilabel=14)
    props = load_datalist_file(npz)
    assert props["task"] == "multi-label" and len(props["labels"]) == 14 and props["labels"]["0"] == "atelectasis"
    rows = load_datalist(npz, "test")
    assert rows[2]["label"] == arrays["test_labels"][2].tolist()


def test_idempotent(npz2d, cache):
    npz, _ = npz2d
    out = medmnist_datalist(npz)
    folder = Path(out).parent
    before = {p: p.stat().st_mtime_ns for p in _files_under(folder)}
    assert len(before) == 12 + 4 + 4 + 2
    mm._CONVERTED.clear()  # the next call finds the folder on disk, not in this process's memo
    assert medmnist_datalist(npz) == out == datalist_path(npz)
    assert {p: p.stat().st_mtime_ns for p in _files_under(folder)} == before
    assert [p.name for p in folder.parent.iterdir()] == [folder.name], "no temporary folders left"
    # a half-written folder (no ready marker) is never used: it is replaced
    mm._CONVERTED.clear()
    (folder / ".ready").unlink()
    (folder / "datalist.json").write_text("{half")
    again = medmnist_datalist(npz)
    assert load_datalist_file(again)["numTraining"] == 12 and (folder / ".ready").is_file()


def test_same_content_same_cache_and_cache_dir(tmp_path, cache, npz2d):
    npz, _ = npz2d
    copy = tmp_path / "copy.npz"
    copy.write_bytes(npz.read_bytes())
    assert Path(medmnist_datalist(copy)).parent == Path(medmnist_datalist(npz)).parent
    other = Path(medmnist_datalist(npz, cache_dir=tmp_path / "elsewhere"))
    assert other.parent.parent == (tmp_path / "elsewhere" / "medmnist").resolve()


def test_bad_npz(tmp_path, cache):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2))
    with pytest.raises(DatalistError, match=r"bad\.npz.*missing arrays.*arrays present: \['x_train', 'y_train'\]"):
        load_datalist_file(bad)
    notzip = tmp_path / "junk.npz"
    notzip.write_bytes(b"\x80\x81 not a zip")
    with pytest.raises(DatalistError, match=r"junk\.npz: not a MedMNIST \.npz"):
        load_datalist(notzip, "training")
    floats = tmp_path / "floats.npz"
    arrays = {
        f"{s}_{k}": np.zeros((2, 28, 28) if k == "images" else (2, 1)) for s in COUNTS for k in ("images", "labels")
    }
    np.savez(floats, **arrays)
    with pytest.raises(DatalistError, match=r"floats\.npz.*uint8.*arrays present"):
        medmnist_datalist(floats)
    assert not (cache / "medmnist").exists() or not any((cache / "medmnist").iterdir()), "nothing cached"
    with pytest.raises(FileNotFoundError):
        load_datalist_file(tmp_path / "missing.npz")


def test_binary_json_named_otherwise(tmp_path):
    f = tmp_path / "data.json"
    f.write_bytes(b"PK\x03\x04\x80\x80\x80")
    with pytest.raises(DatalistError, match="not a datalist JSON file"):
        load_datalist_file(f)


def test_finetune_cli_on_npz(tmp_path, cache, npz2d):
    from monai_transfer.cli import main

    npz, _ = npz2d
    before = sorted(os.listdir(npz.parent))
    rc = main(["finetune", "--backbone", "resnet10", "--task", "classification", "--spatial-dims", "2",
               "--data", str(npz), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4",
               "--backbone-arg", "widen_factor=0.25"])  # fmt: skip
    assert rc == 0
    assert sorted(os.listdir(npz.parent)) == before, "the data folder is read only"
    assert any((tmp_path / "run").iterdir())
