"""Models Genesis corruptions: [0, 1] outputs, what each corruption changes, the composite's rates and target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_transfer.transforms import (
    RandInPaint,
    RandInPaintd,
    RandLocalPixelShuffle,
    RandLocalPixelShuffled,
    RandModelsGenesisd,
    RandModelsGenesisDict,
    RandNonlinearIntensity,
    RandNonlinearIntensityd,
    RandOutPaint,
    RandOutPaintd,
    bezier_lut,
)

SHAPES = [(32, 32), (20, 20, 20)]
IDS = ["2d", "3d"]


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only contend on these tiny tensors
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _image(shape: tuple[int, ...]) -> MetaTensor:
    g = torch.Generator().manual_seed(0)
    return MetaTensor(torch.rand((1, *shape), generator=g) * 0.8 + 0.1, meta={"filename_or_obj": "ct.nii"})


ARRAY_TRANSFORMS = [
    lambda: RandNonlinearIntensity(prob=1.0),
    lambda: RandLocalPixelShuffle(prob=1.0),
    lambda: RandInPaint(),
    lambda: RandOutPaint(),
]
NAMES = ["nonlinear", "shuffle", "inpaint", "outpaint"]


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("make", ARRAY_TRANSFORMS, ids=NAMES)
def test_range_shape_metadata_and_seeding(make, shape):
    img = _image(shape)
    before = (torch.get_rng_state(), np.random.get_state())
    a = make().set_random_state(0)(img)
    b = make().set_random_state(0)(img)
    c = make().set_random_state(1)(img)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state(), before[1]))
    assert a.shape == img.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert isinstance(a, MetaTensor) and a.meta["filename_or_obj"] == "ct.nii"
    assert not torch.equal(a, img)
    assert torch.equal(a, b) and not torch.equal(a, c)
    np.testing.assert_array_equal(_image(shape).numpy(), img.numpy())  # input untouched


@pytest.mark.parametrize("make", ARRAY_TRANSFORMS, ids=NAMES)
def test_numpy_in_numpy_out_and_clipping(make):
    x = np.linspace(-0.5, 1.5, 32 * 32, dtype=np.float32).reshape(1, 32, 32)
    y = make().set_random_state(2)(x)
    assert isinstance(y, np.ndarray) and y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_nonlinear_is_monotonic_both_ways():
    ramp = torch.linspace(0, 1, 257).reshape(1, 257, 1).repeat(1, 1, 2)
    t = RandNonlinearIntensity(prob=1.0).set_random_state(0)
    directions = set()
    for _ in range(20):
        d = torch.diff(t(ramp)[0, :, 0])
        inc, dec = bool((d >= -1e-6).all()), bool((d <= 1e-6).all())
        assert inc or dec
        directions.add("up" if inc else "down")
        assert float(d.abs().max()) > 0
    assert directions == {"up", "down"}


def test_bezier_end_points():
    xs, ys = bezier_lut(np.array([[0.0, 0.0], [0.2, 0.9], [0.7, 0.1], [1.0, 1.0]]), 50)
    assert {round(xs[0], 6), round(xs[-1], 6)} == {0.0, 1.0} and {round(ys[0], 6), round(ys[-1], 6)} == {0.0, 1.0}


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_local_shuffle_moves_voxels_only_locally(shape):
    n = int(np.prod(shape))
    idx = torch.arange(n, dtype=torch.float64).reshape(1, *shape)
    t = RandLocalPixelShuffle(prob=1.0).set_random_state(0)
    y = t(idx / (n - 1)).double() * (n - 1)
    src = np.unravel_index(np.rint(y.numpy().ravel()).astype(np.int64), shape)
    dst = np.unravel_index(np.arange(n), shape)
    disp = np.abs(np.stack(src) - np.stack(dst))
    max_block = np.maximum(2, np.asarray(shape) // 10)
    assert (disp.max(axis=1) <= max_block - 1).all()
    assert (disp.sum(0) > 0).mean() > 0.3  # most voxels moved


def test_local_shuffle_block_count_option():
    t = RandLocalPixelShuffle(prob=1.0, num_blocks=1, max_block_fraction=0.5).set_random_state(0)
    x = torch.rand(1, 16, 16)
    changed = (t(x) != x).sum()
    assert 0 < int(changed) <= 64  # one block of at most 8 x 8


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_inpaint_changes_inner_boxes_only(shape):
    img = _image(shape)
    t = RandInPaint().set_random_state(0)
    y = t(img)
    changed = (y != img)[0]
    assert changed.any()
    for ax in range(len(shape)):
        border = changed.movedim(ax, 0)
        assert not border[:3].any() and not border[-3:].any()  # the reference code's 3-voxel margin
    assert 1 <= len(t._boxes) <= 5
    for box in t._boxes:
        for sl, s in zip(box, shape):
            assert s // 6 <= sl.stop - sl.start <= s // 3


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_outpaint_keeps_inner_boxes_only(shape):
    img = _image(shape)
    t = RandOutPaint().set_random_state(0)
    y = t(img)
    kept = (y == img)[0]
    assert kept.any() and not kept.all()
    for ax in range(len(shape)):
        border = kept.movedim(ax, 0)
        assert not border[:3].any() and not border[-3:].any()
    for box in t._boxes:
        assert (y[(slice(None), *box)] == img[(slice(None), *box)]).all()


def test_dict_versions_apply_the_same_draws_to_every_key():
    a = _image((24, 24))
    for make in (
        lambda: RandNonlinearIntensityd(["a", "b"], prob=1.0),
        lambda: RandLocalPixelShuffled(["a", "b"], prob=1.0),
        lambda: RandInPaintd(["a", "b"]),
        lambda: RandOutPaintd(["a", "b"]),
    ):
        out = make().set_random_state(0)({"a": a, "b": a.clone()})
        assert torch.equal(out["a"], out["b"]) and not torch.equal(out["a"], a)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_models_genesis_target_unchanged_view_in_unit_range(shape):
    img = _image(shape)
    ref = img.clone()
    pipe = Compose([RandModelsGenesisd("image")]).set_random_state(0)
    outs = [pipe({"image": img}) for _ in range(4)]
    for out in outs:
        assert out["image"] is img and torch.equal(img, ref)
        v = out["image_v1"]
        assert v.shape == img.shape and isinstance(v, MetaTensor)
        assert float(v.min()) >= 0 and float(v.max()) <= 1
    assert sum(not torch.equal(o["image_v1"], img) for o in outs) >= 3
    again = Compose([RandModelsGenesisd("image")]).set_random_state(0)({"image": img})
    assert torch.equal(again["image_v1"], outs[0]["image_v1"])


def test_models_genesis_all_off_is_the_clipped_image():
    img = torch.linspace(-1, 2, 64).reshape(1, 8, 8)
    t = RandModelsGenesisDict("image", output_keys="x", nonlinear_prob=0, local_shuffle_prob=0, paint_prob=0)
    out = t({"image": img})
    assert torch.equal(torch.as_tensor(out["x"]), img.clamp(0, 1))
    assert torch.equal(out["image"], img)


def test_models_genesis_stage_rates():
    t = RandModelsGenesisd("image").set_random_state(0)
    n, counts = 1000, {"shuffle": 0, "nonlinear": 0, "paint": 0, "inpaint": 0}
    for _ in range(n):
        # decisions only: draw on a tiny grid so block drawing stays cheap
        t.randomize((4, 4))
        counts["shuffle"] += t.shuffle._do_transform
        counts["nonlinear"] += t.nonlinear._do_transform
        counts["paint"] += t._paint is not None
        counts["inpaint"] += t._paint is t.inpaint
    assert abs(counts["shuffle"] / n - 0.5) < 0.05
    assert abs(counts["nonlinear"] / n - 0.9) < 0.03
    assert abs(counts["paint"] / n - 0.9) < 0.03
    assert abs(counts["inpaint"] / counts["paint"] - 0.2) < 0.04


def test_models_genesis_output_keys_must_match():
    with pytest.raises(ValueError):
        RandModelsGenesisd(["a", "b"], output_keys="c")
