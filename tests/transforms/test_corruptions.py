"""Corruption suite: seeded reproducibility, severity monotone in PSNR, array/dict agreement, 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from monai_transfer.transforms import (
    CORRUPTIONS,
    SEVERITIES,
    Corrupt,
    Corruptd,
    CorruptDict,
    RandCorrupt,
    RandCorruptd,
)

SHAPES = [(48, 48), (24, 24, 24)]
STOCHASTIC = ("gaussian_noise", "bias_field", "kspace_spike", "motion_ghosting")  # gamma: only a direction drawn


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    tex = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.0)
    x = (np.exp(-(g**2).sum(0) * 3) + 0.3 * (np.abs(g[0]) < 0.3)) * (1 + 0.5 * tex)
    return (100.0 * x)[None].astype(np.float32)  # arbitrary intensity scale: corruptions use the robust range


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(y, dtype=np.float64) - x) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(float(np.ptp(x)) ** 2 / mse)


def test_table_has_five_severities() -> None:
    assert set(CORRUPTIONS) == set(SEVERITIES) and len(CORRUPTIONS) == 9
    assert all(len(v) == 5 for v in SEVERITIES.values())


@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_monotone_psnr(name: str, shape: tuple[int, ...]) -> None:
    x = _image(shape)
    psnr = [_psnr(x, Corrupt(name, s, seed=3)(x)) for s in range(1, 6)]
    assert all(np.isfinite(psnr)), psnr
    assert np.all(np.diff(psnr) < 0), f"{name}: PSNR not decreasing with severity: {np.round(psnr, 2)}"
    assert psnr[-1] < 40, f"{name}: severity 5 barely changes the image ({psnr[-1]:.1f} dB)"
    np.testing.assert_array_equal(Corrupt(name, 0)(x), x)


@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_reproducible_for_seed_and_types(name: str, shape: tuple[int, ...]) -> None:
    x = _image(shape)
    a = Corrupt(name, 3, seed=1)(x)
    b = Corrupt(name, 3, seed=1)(x)
    assert isinstance(a, np.ndarray) and a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    c = Corrupt(name, 3, seed=2)(x)
    if name in STOCHASTIC:
        assert not np.allclose(a, c), f"{name}: another seed gives the same output"
    if name == "gamma":  # gamma or 1 / gamma, drawn
        assert len({Corrupt(name, 3, seed=s)(x).tobytes() for s in range(8)}) == 2
    # torch and MetaTensor in, same values out; metadata kept
    mt = MetaTensor(torch.as_tensor(x), meta={"filename_or_obj": "x.nii.gz"})
    t = Corrupt(name, 3, seed=1)(mt)
    assert isinstance(t, MetaTensor) and t.meta["filename_or_obj"] == "x.nii.gz"
    np.testing.assert_allclose(t.numpy(), a, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_array_and_dict_agree(name: str) -> None:
    x = _image((32, 32))
    lab = (x > 50).astype(np.int64)
    d = Corruptd(keys=["image", "image2"], name=name, severity=4, seed=7)(
        {"image": x, "image2": x.copy(), "label": lab}
    )
    ref = Corrupt(name, 4, seed=7)(x)
    np.testing.assert_array_equal(d["image"], ref)
    np.testing.assert_array_equal(d["image2"], ref)
    np.testing.assert_array_equal(d["label"], lab)
    assert CorruptDict is Corruptd


def test_rand_corrupt_uses_own_random_state() -> None:
    x = _image((32, 32))
    state = np.random.get_state()
    t1 = RandCorrupt("gaussian_noise", 3, prob=1.0).set_random_state(5)
    t2 = RandCorrupt("gaussian_noise", 3, prob=1.0).set_random_state(5)
    np.testing.assert_array_equal(t1(x), t2(x))
    assert not np.array_equal(t1(x), RandCorrupt("gaussian_noise", 3, prob=1.0).set_random_state(6)(x))
    np.testing.assert_array_equal(RandCorrupt("blur", 3, prob=0.0)(x), x)
    # the global numpy RNG is untouched
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state()[1:2], state[1:2]))
    td = RandCorruptd(["image"], names=("blur", "contrast"), severity_range=(1, 5), prob=1.0).set_random_state(0)
    out = td({"image": x})
    assert out["image"].shape == x.shape and not np.array_equal(out["image"], x)


@pytest.mark.parametrize(
    "args,msg", [(("nope", 1), "unknown corruption"), (("blur", 6), "severity"), (("blur", 1.5), "severity")]
)
def test_errors(args: tuple, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        Corrupt(*args)
    with pytest.raises(ValueError, match="channel-first"):
        Corrupt("blur", 1)(np.zeros((8, 8), dtype=np.float32))
