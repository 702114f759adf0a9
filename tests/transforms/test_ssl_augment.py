"""ssl_augmentations: every preset builds and yields roi-sized views; modality rules; overrides; seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resize,
)

from monai_transfer.transforms import SSL_AUGMENT_PRESETS, RandForegroundResizedCropd, ssl_augmentations

INTENSITY = (RandScaleIntensityd, RandShiftIntensityd, RandAdjustContrastd, RandGaussianNoised, RandGaussianSmoothd)
ALLOWED = (RandForegroundResizedCropd, RandFlipd, RandRotate90d, RandAffined, *INTENSITY)
CASES = [
    (m, s, sd)
    for m, strengths in SSL_AUGMENT_PRESETS.items()
    for s in strengths
    for sd in ((2,) if m == "xr" else (2, 3))
]


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: intra-op threads only contend on these tiny tensors
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _image(sd: int) -> MetaTensor:
    shape = (40, 36) if sd == 2 else (24, 24, 20)
    g = torch.Generator().manual_seed(1)
    x = torch.zeros((1, *shape))
    inner = tuple(slice(4, s - 4) for s in shape)
    x[(slice(None), *inner)] = 0.2 + 0.6 * torch.rand(x[(slice(None), *inner)].shape, generator=g)
    return MetaTensor(x, meta={"filename_or_obj": "img"})


@pytest.mark.parametrize("modality,strength,sd", CASES)
def test_every_preset_makes_roi_views(modality, strength, sd):
    roi = (32, 32) if sd == 2 else (16, 16, 16)
    pipe = ssl_augmentations(sd, roi, modality, strength).set_random_state(0)
    assert all(isinstance(t, ALLOWED) for t in pipe.transforms)
    img = _image(sd)
    outs = [pipe({"image": img})["image"] for _ in range(2)]
    for o in outs:
        assert tuple(o.shape) == (1, *roi) and o.dtype == torch.float32
        assert isinstance(o, MetaTensor) and o.meta["filename_or_obj"] == "img"
    assert not torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("modality", sorted(SSL_AUGMENT_PRESETS))
def test_weak_has_no_intensity_changes(modality):
    pipe = ssl_augmentations(2, 32, modality, "weak")
    assert not any(isinstance(t, INTENSITY) for t in pipe.transforms)
    assert any(isinstance(t, INTENSITY) for t in ssl_augmentations(2, 32, modality, "strong").transforms)


def test_radiographs_flip_left_right_only_and_do_not_turn():
    for strength in ("strong", "weak"):
        pipe = ssl_augmentations(2, 32, "xr", strength)
        flips = [t for t in pipe.transforms if isinstance(t, RandFlipd)]
        assert [t.flipper.spatial_axis for t in flips] == [0]
        assert not any(isinstance(t, RandRotate90d) for t in pipe.transforms)
    ct_flips = [t for t in ssl_augmentations(3, 16, "ct").transforms if isinstance(t, RandFlipd)]
    assert sorted(t.flipper.spatial_axis for t in ct_flips) == [0, 1, 2]
    with pytest.raises(ValueError, match="2-D"):
        ssl_augmentations(3, 16, "xr")
    assert ssl_augmentations(2, 32, "radiograph").transforms  # alias


def test_ct_intensity_milder_than_mr():
    ct, mr = SSL_AUGMENT_PRESETS["ct"]["strong"], SSL_AUGMENT_PRESETS["mr"]["strong"]
    assert ct["scale_intensity"] < mr["scale_intensity"] and ct["shift_intensity"] < mr["shift_intensity"]
    assert mr["gamma"][0] < ct["gamma"][0] <= 1 <= ct["gamma"][1] < mr["gamma"][1]
    # measured: CT views keep intensities closer to the source than MR views
    img = _image(2)

    def spread(mod: str) -> float:
        # geometry off: only the intensity transforms act
        geometry_off = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_prob=0.0, rot90_prob=0.0, affine_prob=0.0)
        pipe = ssl_augmentations(2, (40, 36), mod, "strong", blur_prob=0.0, **geometry_off).set_random_state(0)
        return float(np.std([float(pipe({"image": img})["image"].mean()) for _ in range(30)]))

    assert spread("ct") < spread("mr")


def test_overrides_reach_the_transforms():
    img = _image(2)
    off = dict(
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_prob=0.0,
        rot90_prob=0.0,
        affine_prob=0.0,
        scale_intensity_prob=0.0,
        shift_intensity_prob=0.0,
        gamma_prob=0.0,
        noise_prob=0.0,
        blur_prob=0.0,
    )
    pipe = ssl_augmentations(2, (20, 18), "mr", "strong", **off)
    assert len(pipe.transforms) == 1
    out = pipe({"image": img})["image"]
    expected = Resize((20, 18), mode="bilinear", align_corners=False)(img)
    assert torch.allclose(out.as_tensor(), expected.as_tensor())
    with pytest.raises(ValueError, match="unknown augmentation parameters"):
        ssl_augmentations(2, 32, "ct", colour_jitter=0.8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="modality"):
        ssl_augmentations(2, 32, "pet")
    with pytest.raises(ValueError, match="strength"):
        ssl_augmentations(2, 32, "ct", "medium")
    with pytest.raises(ValueError, match="spatial_dims"):
        ssl_augmentations(1, 32)
    with pytest.raises(ValueError, match="square"):
        ssl_augmentations(3, (16, 8, 16), "ct")
    assert ssl_augmentations(3, (16, 8, 16), "ct", rot90_prob=0.0).transforms


@pytest.mark.parametrize("sd", [2, 3])
def test_seeded_and_global_rng_untouched(sd):
    img = _image(sd)
    roi = 16
    before = (torch.get_rng_state(), np.random.get_state())
    a = ssl_augmentations(sd, roi, "ct").set_random_state(3)({"image": img})["image"]
    b = ssl_augmentations(sd, roi, "ct").set_random_state(3)({"image": img})["image"]
    c = ssl_augmentations(sd, roi, "ct").set_random_state(4)({"image": img})["image"]
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state(), before[1]))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_keys_are_augmented_together():
    img = _image(2)
    pipe = ssl_augmentations(2, 24, "ct", "weak", keys=("a", "b")).set_random_state(0)
    out = pipe({"a": img, "b": img.clone()})
    assert torch.equal(out["a"], out["b"])
