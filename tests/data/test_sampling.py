"""Slice/patch sampling: determinism for a seed, array vs dictionary agreement, affines, cached datasets."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

from monai_transfer.data.sampling import (
    ExtractSlice,
    ExtractSliced,
    RandSlice,
    RandSliceD,
    RandSliced,
    make_dataset,
    patch_sampler,
)


def _vol(seed: int = 0) -> MetaTensor:
    rng = np.random.default_rng(seed)
    aff = torch.tensor([[2.0, 0, 0, -30], [0, 2.0, 0, -40], [0, 0, 3.0, 10], [0, 0, 0, 1]], dtype=torch.float64)
    return MetaTensor(torch.as_tensor(rng.random((1, 12, 10, 8), dtype=np.float32)), affine=aff)


def test_extract_slice_affine_and_dict_agree() -> None:
    v = _vol()
    s = ExtractSlice()(v)
    assert tuple(s.shape) == (1, 12, 10) and torch.equal(s.as_tensor(), v[..., 4].as_tensor())
    assert np.allclose(s.affine[:3, 3], [-30, -40, 10 + 4 * 3.0])
    s0 = ExtractSlice(axis=0, index=3)(v)
    assert tuple(s0.shape) == (1, 10, 8) and np.allclose(s0.affine[:3, 3], [-30 + 3 * 2.0, -40, 10])
    assert np.allclose(s0.affine[:3, 0], [0, 2, 0]) and np.allclose(s0.affine[:3, 1], [0, 0, 3])
    d = ExtractSliced(["image", "label"])({"image": v, "label": v > 0.5})
    assert torch.equal(d["image"].as_tensor(), s.as_tensor()) and d["slice_index"] == 4


@pytest.mark.parametrize("seed", [0, 7])
def test_rand_slice_deterministic_and_agrees(seed: int) -> None:
    v = _vol()
    a = RandSlice(margin=0.2)
    a.set_random_state(seed)
    idx_a = [a(v).meta["slice_index"] for _ in range(10)]
    a.set_random_state(seed)
    assert [a(v).meta["slice_index"] for _ in range(10)] == idx_a
    d = RandSliced(["image", "label"], margin=0.2)
    d.set_random_state(seed)
    idx_d = []
    for _ in range(10):
        out = d({"image": v, "label": (v > 0.5).float()})
        idx_d.append(out["slice_index"])
        assert torch.equal(out["label"].as_tensor(), (out["image"] > 0.5).float().as_tensor())  # same slice per key
    assert idx_d == idx_a
    assert all(1 <= i < 7 for i in idx_a)  # margin 0.2 of 8 slices
    assert RandSliceD is RandSliced


def test_rand_slice_seeds_differ_and_prob() -> None:
    v = _vol()
    draws = []
    for seed in (1, 2):
        t = RandSlice()
        t.set_random_state(seed)
        draws.append([t(v).meta["slice_index"] for _ in range(20)])
    assert draws[0] != draws[1]
    t = RandSlice(prob=0.0)
    assert {t(v).meta["slice_index"] for _ in range(5)} == {4}


def test_rand_sliced_foreground() -> None:
    v = _vol()
    lab = torch.zeros_like(v)
    lab[..., 6] = 1
    t = RandSliced(["image", "label"], label_key="label", pos_prob=1.0)
    t.set_random_state(0)
    assert {t({"image": v, "label": lab})["slice_index"] for _ in range(10)} == {6}


def test_patch_sampler_deterministic() -> None:
    v = _vol()
    lab = (v > 0.9).float()

    def run(seed: int, label: str | None) -> list[np.ndarray]:
        t = patch_sampler(["image", "label"], (6, 6, 4), num_samples=3, label_key=label)
        t.set_random_state(seed)
        out = t({"image": v.clone(), "label": lab.clone()})
        assert len(out) == 3 and tuple(out[0]["image"].shape) == (1, 6, 6, 4)
        return [o["image"].numpy() for o in out]

    for label in (None, "label"):
        a, b, c = run(0, label), run(0, label), run(5, label)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    small = patch_sampler("image", (16, 16, 16), num_samples=1)({"image": v})
    assert tuple(small[0]["image"].shape) == (1, 16, 16, 16)  # padded


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_make_dataset(tmp_path: Path, cache: str) -> None:
    rng = np.random.default_rng(0)
    data = []
    for i in range(3):
        p = tmp_path / f"v{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((8, 8, 6)).astype(np.float32), np.eye(4)), str(p))
        data.append({"image": str(p)})
    tf = Compose([LoadImaged("image", ensure_channel_first=True), RandSliced("image")])
    tf.set_random_state(3)
    ds = make_dataset(data, tf, cache=cache, cache_dir=tmp_path / "cache")
    assert len(ds) == 3 and tuple(ds[0]["image"].shape) == (1, 8, 8)
    if cache == "disk":
        assert any((tmp_path / "cache").iterdir())
    with pytest.raises(ValueError):
        make_dataset(data, tf, cache="disk")
    with pytest.raises(ValueError):
        make_dataset(data, tf, cache="gpu")
