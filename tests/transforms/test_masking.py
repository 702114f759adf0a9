"""RandPatchMask(d): exact masked count, grid shape, seeding; RandCutout(d): fraction limit, boxes, fills, keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_transfer.transforms import (
    RandCutout,
    RandCutoutd,
    RandCutoutDict,
    RandPatchMask,
    RandPatchMaskd,
    RandPatchMaskDict,
    patch_grid,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only contend on these tiny tensors
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    "shape,patch,ratio,grid",
    [
        ((32, 32), 4, 0.75, (8, 8)),
        ((32, 32), 8, 0.6, (4, 4)),
        ((32, 48), (8, 16), 0.5, (4, 3)),
        ((16, 16, 16), 4, 0.75, (4, 4, 4)),
        ((32, 32, 16), (8, 8, 4), 0.6, (4, 4, 4)),
        ((16, 16), 4, 0.0, (4, 4)),
        ((16, 16), 4, 1.0, (4, 4)),
        ((20, 20), 4, 0.3, (5, 5)),  # 7.5 -> 8 (half to even)
    ],
)
def test_exact_masked_count(shape, patch, ratio, grid):
    t = RandPatchMask(patch, ratio).set_random_state(0)
    n = int(np.prod(grid))
    for _ in range(5):
        m = t(torch.zeros((1, *shape)))
        assert m.shape == (1, *grid) and m.dtype == torch.float32
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert int(m.sum()) == round(ratio * n)


def test_masks_are_random_and_seeded():
    x = torch.zeros(1, 32, 32)
    a = RandPatchMask(4, 0.5).set_random_state(1)
    b = RandPatchMask(4, 0.5).set_random_state(1)
    c = RandPatchMask(4, 0.5).set_random_state(2)
    ma, mb, mc = a(x), b(x), c(x)
    assert torch.equal(ma, mb) and not torch.equal(ma, mc)
    assert not torch.equal(ma, a(x))  # the next call draws again
    # every patch is masked about half the time
    freq = torch.stack([a(x) for _ in range(200)]).mean(0)
    assert 0.35 < float(freq.min()) and float(freq.max()) < 0.65


def test_indivisible_size_raises():
    with pytest.raises(ValueError, match="not divisible"):
        RandPatchMask(5, 0.5)(torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match="not divisible"):
        patch_grid((96, 96, 90), 16)
    with pytest.raises(ValueError):
        RandPatchMask(4, 1.5)
    assert patch_grid((96, 96, 64), (16, 16, 8)) == (6, 6, 8)


def test_dict_writes_mask_and_keeps_the_image():
    img = MetaTensor(torch.rand(1, 16, 16, 16))
    before = (torch.get_rng_state(), np.random.get_state())
    out = Compose([RandPatchMaskd("image", patch_size=8, mask_ratio=0.75)]).set_random_state(0)({"image": img})
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), before[1]))
    assert out["image"] is img
    assert out["mask"].shape == (1, 2, 2, 2) and int(out["mask"].sum()) == 6
    again = Compose([RandPatchMaskd("image", patch_size=8, mask_ratio=0.75)]).set_random_state(0)({"image": img})
    assert torch.equal(out["mask"], again["mask"])
    custom = RandPatchMaskDict("image", patch_size=4, mask_ratio=0.5, mask_key="m")({"image": img})
    assert custom["m"].shape == (1, 4, 4, 4)


@pytest.mark.parametrize("shape", [(32, 32), (24, 24, 24)], ids=["2d", "3d"])
def test_cutout_fraction_limit_and_boxes(shape):
    img = torch.rand((1, *shape)) * 0.5 + 2.0  # outside [0, 1]: noise in [0, 1] is distinguishable
    t = RandCutoutd("image", output_keys="cut", mask_key="box", max_fraction=0.3).set_random_state(0)
    fracs = []
    for _ in range(20):
        out = t({"image": img})
        box = out["box"].bool()
        assert box.shape == (1, *shape)
        changed = out["cut"] != img
        assert torch.equal(changed, box)  # noise never equals the image here
        assert torch.equal(out["cut"][~box], img[~box])
        cut = out["cut"][box]
        assert cut.numel() == 0 or (float(cut.min()) >= 0 and float(cut.max()) <= 1)
        fracs.append(float(box.float().mean()))
        assert torch.equal(out["image"], img)  # the source stays
    assert max(fracs) <= 0.3 and max(fracs) > 0.1 and min(fracs) < max(fracs)


@pytest.mark.parametrize("fill,check", [(0.0, lambda v: bool((v == 0).all())), ("uniform", lambda v: v.std() > 0.2)])
def test_cutout_fill(fill, check):
    img = torch.full((1, 32, 32), 0.5)
    t = RandCutout(max_fraction=0.5, fill=fill).set_random_state(3)
    out = t(img)
    mask = t.box_mask(img.shape[1:]).bool()
    assert mask.any()
    assert check(out[mask])


def test_cutout_box_sizes_and_prob():
    t = RandCutout(max_fraction=0.5, max_block_size=0.25, min_block_size=0.1).set_random_state(0)
    t.randomize((40, 40))
    assert t._boxes
    for start, end in t._boxes:
        sides = np.subtract(end, start)
        assert (sides >= 4).all() and (sides <= 10).all()
    img = torch.rand(1, 16, 16)
    assert RandCutout(prob=0.0)(img) is img
    with pytest.raises(ValueError):
        RandCutout(fill="gaussian")
    with pytest.raises(ValueError):
        RandCutoutd(["a", "b"], output_keys="c")


def test_cutout_metatensor_multichannel_and_in_place_key():
    img = MetaTensor(torch.rand(2, 24, 24), meta={"filename_or_obj": "a"})
    out = RandCutoutDict("image").set_random_state(1)({"image": img})
    assert isinstance(out["image"], MetaTensor) and out["image"].meta["filename_or_obj"] == "a"
    diff = out["image"] != img
    assert diff.any() and torch.equal(diff[0], diff[1])  # the same boxes in every channel
    a = RandCutoutd("image").set_random_state(4)({"image": img})["image"]
    b = RandCutoutd("image").set_random_state(4)({"image": img})["image"]
    c = RandCutoutd("image").set_random_state(5)({"image": img})["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)
