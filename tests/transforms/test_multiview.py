"""RandMultiView(d): view keys and shapes, independent and reproducible draws, view groups, metadata, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandSpatialCropSamplesd

from monai_transfer.transforms import (
    RandMultiView,
    RandMultiViewd,
    RandMultiViewDict,
    RandRotate90Classd,
    ssl_augmentations,
)

CASES = [((40, 36), (32, 32), (16, 16)), ((24, 24, 20), (16, 16, 16), (8, 8, 8))]


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only contend on these tiny tensors
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _image(shape: tuple[int, ...], seed: int = 0) -> MetaTensor:
    g = torch.Generator().manual_seed(seed)
    return MetaTensor(torch.rand((1, *shape), generator=g), meta={"filename_or_obj": "case.nii.gz"})


def _views(sd: int, roi: tuple[int, ...]) -> Compose:
    return ssl_augmentations(sd, roi, "mr", "strong")


@pytest.mark.parametrize("shape,roi,_", CASES, ids=["2d", "3d"])
def test_two_views_keys_shapes_and_independence(shape, roi, _):
    img = _image(shape)
    out = RandMultiViewd("image", _views(len(shape), roi), num_views=2).set_random_state(0)({"image": img, "id": 3})
    assert set(out) == {"image", "id", "image_v1", "image_v2"}
    assert out["image"] is img and out["id"] == 3
    for k in ("image_v1", "image_v2"):
        assert tuple(out[k].shape) == (1, *roi)
        assert isinstance(out[k], MetaTensor) and out[k].meta["filename_or_obj"] == "case.nii.gz"
    assert not torch.allclose(out["image_v1"], out["image_v2"])


def test_source_is_not_modified_in_place():
    img = _image((32, 32))
    ref = img.clone()

    def zero_in_place(d):
        d["image"].mul_(0)  # a careless view transform
        return d

    out = RandMultiViewd("image", zero_in_place, num_views=2)({"image": img})
    assert torch.equal(img, ref) and len(img.applied_operations) == 0
    assert float(out["image_v1"].abs().sum()) == 0


@pytest.mark.parametrize("shape,roi,_", CASES, ids=["2d", "3d"])
def test_outer_compose_seed_determines_every_view(shape, roi, _):
    img = _image(shape)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()

    def run(seed: int) -> dict:
        pipe = Compose([RandMultiViewd("image", _views(len(shape), roi), num_views=3)]).set_random_state(seed)
        return pipe({"image": img})

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), np_state))
    for k in ("image_v1", "image_v2", "image_v3"):
        assert torch.equal(a[k], b[k])
        assert not torch.equal(a[k], c[k])
    assert not torch.equal(a["image_v2"], a["image_v3"])


def test_successive_calls_differ():
    img = _image((40, 36))
    t = RandMultiViewd("image", _views(2, (32, 32)), num_views=2).set_random_state(0)
    first, second = t({"image": img}), t({"image": img})
    assert not torch.equal(first["image_v1"], second["image_v1"])


@pytest.mark.parametrize("shape,roi,local", CASES, ids=["2d", "3d"])
def test_local_views_numbered_after_the_global_ones(shape, roi, local):
    sd = len(shape)
    t = RandMultiViewd(
        "image", _views(sd, roi), num_views=2, local_transform=_views(sd, local), num_local_views=3, keep_source=False
    )
    out = t.set_random_state(0)({"image": _image(shape)})
    assert set(out) == {f"image_v{i}" for i in range(1, 6)}
    assert [tuple(out[f"image_v{i}"].shape[1:]) for i in range(1, 6)] == [roi] * 2 + [local] * 3
    assert t.output_keys() == [f"image_v{i}" for i in range(1, 6)]


def test_groups_and_output_format():
    a, b = _views(2, (16, 16)), _views(2, (8, 8))
    t = RandMultiViewd("image", groups=[(1, a), (2, b)], output_format="{key}/view{index}").set_random_state(0)
    out = t({"image": _image((32, 32))})
    assert [tuple(out[f"image/view{i}"].shape) for i in (1, 2, 3)] == [(1, 16, 16), (1, 8, 8), (1, 8, 8)]
    assert RandMultiViewDict is RandMultiViewd


def test_view_keys_carry_extra_outputs():
    pipe = Compose([RandRotate90Classd("image", label_key="rot")])
    t = RandMultiViewd("image", pipe, num_views=4, view_keys=("image", "rot")).set_random_state(5)
    img = _image((16, 16))
    out = t({"image": img})
    for i in range(1, 5):
        k = int(out[f"rot_v{i}"])
        assert torch.equal(out[f"image_v{i}"].as_tensor(), torch.rot90(img.as_tensor(), k, (1, 2)))
    assert len({int(out[f"rot_v{i}"]) for i in range(1, 5)}) > 1  # each view draws its own k
    assert "rot" not in out


def test_multiple_keys_each_get_views():
    t = RandMultiViewd(["ct", "pet"], lambda d: d, num_views=2)
    out = t({"ct": torch.zeros(1, 4, 4), "pet": torch.ones(1, 4, 4)})
    assert {"ct_v1", "ct_v2", "pet_v1", "pet_v2"} <= set(out)
    assert float(out["pet_v2"].sum()) == 16


def test_array_version_returns_the_views():
    img = _image((40, 36))
    t = RandMultiView(lambda x: x + 0, num_views=1, local_transform=lambda x: x[:, :8, :8], num_local_views=2)
    views = t(img)
    assert [tuple(v.shape) for v in views] == [(1, 40, 36), (1, 8, 8), (1, 8, 8)]
    from monai.transforms import RandGaussianNoise

    noisy = RandMultiView(RandGaussianNoise(prob=1.0, std=0.1), num_views=2).set_random_state(0)
    v1, v2 = noisy(img)
    assert not torch.equal(v1, v2)
    noisy.set_random_state(0)
    w1, w2 = noisy(img)
    assert torch.equal(v1, w1) and torch.equal(v2, w2)


def test_errors():
    with pytest.raises(ValueError):
        RandMultiViewd("image")
    with pytest.raises(ValueError):
        RandMultiViewd("image", lambda d: d, output_format="{key}_{i}")
    with pytest.raises(ValueError):
        RandMultiViewd("image", lambda d: d, num_local_views=2)
    with pytest.raises(ValueError):
        RandMultiViewd("image", lambda d: d, groups=[(1, lambda d: d)])
    multi = RandSpatialCropSamplesd("image", (8, 8), num_samples=2, random_size=False)
    with pytest.raises(TypeError, match="one dictionary"):
        RandMultiViewd("image", multi)({"image": torch.rand(1, 16, 16)})
    with pytest.raises(KeyError):
        RandMultiViewd("image", lambda d: {"other": 1})({"image": torch.rand(1, 16, 16)})
