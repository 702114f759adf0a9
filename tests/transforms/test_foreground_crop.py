"""RandForegroundResizedCrop(d): output size, crops overlapping the foreground, fallbacks, seeding, metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_transfer.transforms import (
    RandForegroundResizedCrop,
    RandForegroundResizedCropd,
    RandForegroundResizedCropDict,
    foreground_mask,
)

CASES = [((32, 32), (16, 16)), ((24, 20, 16), (8, 8, 8))]


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only contend on these tiny tensors
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _corner_image(shape: tuple[int, ...], size: int = 3) -> torch.Tensor:
    x = torch.zeros((1, *shape))
    x[(slice(None), *[slice(0, size)] * len(shape))] = 1.0
    return x


def _rng_states() -> tuple[torch.Tensor, tuple]:
    return torch.get_rng_state(), np.random.get_state()


def _assert_rng_unchanged(before: tuple[torch.Tensor, tuple]) -> None:
    t, n = _rng_states()
    assert torch.equal(t, before[0])
    assert all(np.array_equal(a, b) for a, b in zip(n, before[1]))


@pytest.mark.parametrize("shape,size", CASES, ids=["2d", "3d"])
def test_output_size_and_metatensor(shape, size):
    img = MetaTensor(torch.rand((1, *shape)), meta={"filename_or_obj": "x.nii"})
    out = RandForegroundResizedCrop(size).set_random_state(0)(img)
    assert tuple(out.shape) == (1, *size)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "x.nii"
    assert len(out.applied_operations) == 2  # crop + resize, invertible through MONAI's record


@pytest.mark.parametrize("shape,size", CASES, ids=["2d", "3d"])
def test_crops_overlap_a_corner_foreground(shape, size):
    img = _corner_image(shape)
    t = RandForegroundResizedCrop(size, scale=(0.05, 0.15)).set_random_state(3)
    for _ in range(20):
        out = t(img)
        start, end = t._box
        # the box is small, yet always contains the corner block
        assert all(s < 3 for s in start), t._box
        assert float(out.max()) > 0
        frac = np.prod(np.subtract(end, start)) / np.prod(shape)
        assert frac < 0.3


def test_uniform_crops_would_miss_the_corner():
    # the same draws without foreground information (select everything): many crops miss the block
    img = _corner_image((32, 32))
    t = RandForegroundResizedCrop(
        (16, 16), scale=(0.05, 0.15), select_fn=lambda x: torch.ones_like(x, dtype=torch.bool)
    )
    t.set_random_state(3)
    misses = sum(float(t(img).max()) == 0 for _ in range(20))
    assert misses > 5


@pytest.mark.parametrize("shape,size", CASES, ids=["2d", "3d"])
def test_area_fraction_follows_scale(shape, size):
    img = torch.rand((1, *shape)) + 0.1
    t = RandForegroundResizedCrop(size, scale=(0.4, 0.5), ratio=(1.0, 1.0)).set_random_state(1)
    for _ in range(10):
        t(img)
        start, end = t._box
        frac = np.prod(np.subtract(end, start)) / np.prod(shape)
        assert 0.3 < frac < 0.62, frac  # rounding of each side


@pytest.mark.parametrize("shape,size", CASES, ids=["2d", "3d"])
def test_aspect_ratio_range(shape, size):
    img = torch.rand((1, *shape)) + 0.1
    t = RandForegroundResizedCrop(size, scale=(0.5, 0.5), ratio=(2.0, 2.0)).set_random_state(0)
    t(img)
    sides = np.subtract(t._box[1], t._box[0]) / np.asarray(shape)
    assert sides[1] / sides[0] == pytest.approx(2.0, rel=0.25)


def test_no_foreground_and_prob_zero_give_the_whole_image():
    img = torch.zeros((1, 32, 32))
    img[0, :, 16:] = 0.0
    t = RandForegroundResizedCrop((16, 16)).set_random_state(0)
    t(img)
    assert t._box is None
    ramp = torch.linspace(0, 1, 32).repeat(32, 1)[None]
    t0 = RandForegroundResizedCrop((16, 16), prob=0.0).set_random_state(0)
    out = t0(ramp)
    assert t0._box is None
    assert float(out[0, 0, 0]) < 0.05 and float(out[0, 0, -1]) > 0.95  # the whole ramp is still there


def test_threshold_and_select_fn():
    img = torch.zeros((1, 32, 32))
    img[0, 28:, 28:] = 0.5  # faint block
    img[0, :3, :3] = 1.0  # bright block
    t = RandForegroundResizedCrop((8, 8), scale=(0.05, 0.1), threshold=0.75).set_random_state(0)
    for _ in range(10):
        t(img)
        assert all(s < 3 for s in t._box[0])
    t2 = RandForegroundResizedCrop((8, 8), scale=(0.05, 0.1), select_fn=lambda x: (x > 0.2) & (x < 0.7))
    t2.set_random_state(0)
    for _ in range(10):
        t2(img)
        assert all(e > 28 for e in t2._box[1])
    assert foreground_mask(torch.full((1, 4, 4), 3.0)).sum() == 0


def test_invalid_arguments():
    with pytest.raises(ValueError):
        RandForegroundResizedCrop(8, scale=(0.0, 1.0))
    with pytest.raises(ValueError):
        RandForegroundResizedCrop(8, ratio=(2.0, 1.0))


@pytest.mark.parametrize("shape,size", CASES, ids=["2d", "3d"])
def test_dict_same_box_for_image_and_label(shape, size):
    img = torch.rand((1, *shape))
    lab = (img > 0.5).float()
    t = RandForegroundResizedCropd(["image", "label"], size, mode=["linear", "nearest"]).set_random_state(2)
    out = t({"image": img, "label": lab, "other": 5})
    assert out["other"] == 5
    assert tuple(out["image"].shape) == (1, *size) == tuple(out["label"].shape)
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
    t.set_random_state(2)
    again = t({"image": img, "label": lab})
    assert torch.equal(again["image"], out["image"])
    assert RandForegroundResizedCropDict is RandForegroundResizedCropd


def test_dict_source_key_places_the_crop():
    img = torch.rand((1, 32, 32))
    lab = _corner_image((32, 32))
    t = RandForegroundResizedCropd(["image", "label"], (8, 8), scale=(0.05, 0.1), source_key="label")
    t.set_random_state(0)
    for _ in range(10):
        assert float(t({"image": img, "label": lab})["label"].max()) > 0


def test_seeding_and_global_rng():
    img = torch.rand((1, 32, 32))
    before = _rng_states()
    a = Compose([RandForegroundResizedCropd("image", (16, 16))]).set_random_state(7)({"image": img})["image"]
    b = Compose([RandForegroundResizedCropd("image", (16, 16))]).set_random_state(7)({"image": img})["image"]
    c = Compose([RandForegroundResizedCropd("image", (16, 16))]).set_random_state(8)({"image": img})["image"]
    _assert_rng_unchanged(before)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
