"""View recipes: every registered method gets exactly its documented batch keys and shapes, reproducibly, and
make_pretrain_transforms loads, normalises, slices and collates them."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor

from monai_transfer.ssl.methods import BUILTIN_METHODS
from monai_transfer.ssl.views import VIEW_RECIPES, make_pretrain_transforms, make_views, view_keys

METHODS = [s.name for s in BUILTIN_METHODS]
JOINT = ("simclr", "moco_v2", "moco_v3", "byol", "simsiam", "barlow_twins", "vicreg")
ROI = {2: (64, 64), 3: (32, 32, 32)}
SOURCE = {2: (72, 80), 3: (36, 40, 34)}


def expected_shapes(method: str, sd: int) -> dict[str, tuple[int, ...]]:
    """The batch-key contract of monai_transfer.ssl.base, spelled out (per sample)."""
    roi = ROI[sd]
    full = (1, *roi)
    if method in JOINT:
        return {"image_v1": full, "image_v2": full}
    if method == "dino":
        n_local = 4 if sd == 2 else 2
        local = (1, *[r // 2 for r in roi])
        return {"image_v1": full, "image_v2": full, **{f"image_v{i}": local for i in range(3, 3 + n_local)}}
    if method == "mae":
        return {"image": full, "mask": (1, *[r // 16 for r in roi])}
    if method == "simmim":
        patch = 32 if sd == 2 else 16
        return {"image": full, "mask": (1, *[r // patch for r in roi])}
    if method == "models_genesis":
        return {"image": full, "image_v1": full}
    if method == "swin_unetr_ssl":
        return {"image_v1": full, "image_v2": full, "target_v1": full, "target_v2": full, "rot_v1": (), "rot_v2": ()}
    raise AssertionError(f"no expectation written for {method}")


def _image(sd: int, seed: int = 0, shape: tuple[int, ...] | None = None) -> MetaTensor:
    shape = shape or SOURCE[sd]
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros((1, *shape))
    inner = (slice(None), *[slice(3, s - 3) for s in shape])
    x[inner] = 0.2 + 0.7 * torch.rand(x[inner].shape, generator=g)
    return MetaTensor(x, affine=torch.eye(4), meta={"filename_or_obj": f"case{seed}"})


def test_every_registered_method_has_a_recipe():
    assert set(METHODS) == set(VIEW_RECIPES)


@pytest.mark.parametrize("sd", [2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_recipe_produces_exactly_the_documented_keys(method, sd):
    expected = expected_shapes(method, sd)
    out = make_views(method, sd, ROI[sd]).set_random_state(0)({"image": _image(sd)})
    assert set(out) == set(expected)
    assert set(view_keys(method, sd)) == set(expected)
    for k, shape in expected.items():
        assert tuple(out[k].shape) == shape, k
    for k in out:
        if k.startswith(("image", "target")):
            assert out[k].dtype == torch.float32
    if "mask" in out:
        n = out["mask"].numel()
        ratio = 0.75 if method == "mae" else 0.6
        assert int(out["mask"].sum()) == round(ratio * n)
    if method == "swin_unetr_ssl":
        for v in ("1", "2"):
            assert out[f"rot_v{v}"].dtype == torch.long and 0 <= int(out[f"rot_v{v}"]) <= 3
            cut = out[f"image_v{v}"] != out[f"target_v{v}"]  # cut-out boxes only: the target is the uncut view
            assert cut.any() and cut.float().mean() <= 0.3
    if method == "models_genesis":
        assert float(out["image_v1"].min()) >= 0 and float(out["image_v1"].max()) <= 1
        assert not torch.equal(out["image_v1"], out["image"])


@pytest.mark.parametrize("method", METHODS)
def test_recipes_are_seeded_and_leave_global_rng_alone(method):
    sd = 2
    img = _image(sd)
    before = (torch.get_rng_state(), np.random.get_state())
    a = make_views(method, sd, ROI[sd]).set_random_state(1)({"image": img})
    b = make_views(method, sd, ROI[sd]).set_random_state(1)({"image": img})
    c = make_views(method, sd, ROI[sd]).set_random_state(2)({"image": img})
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state(), before[1]))
    first = "image_v1" if "image_v1" in a else "image"
    assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    assert not torch.equal(a[first], c[first])
    if "image_v2" in a:
        assert not torch.equal(a["image_v1"], a["image_v2"])


@pytest.mark.parametrize("sd", [2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_pretrain_transforms_collate_in_a_dataloader(method, sd):
    # HU volumes of different sizes (and, for 2-D pretraining, one 2-D image beside a volume)
    hu = [_image(3, 0, (36, 40, 30)) * 2000 - 1000, _image(3, 1, (40, 36, 34)) * 2000 - 1000]
    if sd == 2:
        hu[1] = _image(2, 1, (70, 76)) * 2000 - 1000
    data = [{"image": x, "label": i, "path": f"p{i}"} for i, x in enumerate(hu)]
    transform = make_pretrain_transforms(method, sd, ROI[sd], modality="ct", load=False)
    transform.set_random_state(0)
    batch = next(iter(DataLoader(Dataset(data, transform), batch_size=2, num_workers=0)))
    expected = expected_shapes(method, sd)
    assert set(batch) == set(expected)
    for k, shape in expected.items():
        assert tuple(batch[k].shape) == (2, *shape), k
    for k in ("rot_v1", "rot_v2"):
        if k in batch:
            assert batch[k].dtype == torch.long
    # the CT window maps [-1000, 1000] HU to [0, 1] before the views
    if method in ("mae", "simmim", "models_genesis"):
        assert float(batch["image"].min()) >= 0 and float(batch["image"].max()) <= 1


@pytest.mark.parametrize("sd", [2, 3])
def test_pretrain_transforms_load_files(tmp_path, sd):
    vol = np.zeros((30, 28, 24), dtype=np.float32) - 1000
    vol[5:25, 5:23, 4:20] = 40.0
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    data = [{"img": str(tmp_path / "vol.nii.gz")}]
    if sd == 2:
        nib.save(nib.Nifti1Image(vol[:, :, 10], np.eye(4)), tmp_path / "slice.nii.gz")
        data.append({"img": str(tmp_path / "slice.nii.gz")})
    roi = (32, 32) if sd == 2 else (16, 16, 16)
    t = make_pretrain_transforms("mae", sd, roi, modality="ct", image_key="img", mask_patch_size=8)
    t.set_random_state(0)
    for d in data:
        out = t(d)
        assert set(out) == {"image", "mask"}
        assert tuple(out["image"].shape) == (1, *roi) and tuple(out["mask"].shape) == (1, *[r // 8 for r in roi])
        # soft tissue at 40 HU lies at (40 + 1000) / 2000 of the [-1000, 1000] window
        assert float(out["image"].max()) == pytest.approx(0.52, abs=0.01)
        assert float(out["image"].min()) >= 0


def test_2d_pretraining_slices_volumes_away_from_the_ends():
    vol = torch.arange(40.0).reshape(1, 1, 1, 40).expand(1, 24, 24, 40).clone()  # value = slice index
    t = make_pretrain_transforms("mae", 2, 16, load=False, intensity=None, slice_margin=0.2, scale=(1.0, 1.0))
    t.set_random_state(0)
    picked = {int(round(float(t({"image": vol})["image"].mean()))) for _ in range(30)}
    assert min(picked) >= 8 and max(picked) < 32 and len(picked) > 5


def test_options_reach_the_recipes():
    img = _image(2)
    dino = make_views("dino", 2, 64, num_local_views=3, local_roi_size=24).set_random_state(0)({"image": img})
    assert [tuple(dino[f"image_v{i}"].shape) for i in range(1, 6)] == [(1, 64, 64)] * 2 + [(1, 24, 24)] * 3
    assert view_keys("dino", 2, num_local_views=3) == tuple(f"image_v{i}" for i in range(1, 6))
    mae = make_views("mae", 2, 64, mask_patch_size=8, mask_ratio=0.5).set_random_state(0)({"image": img})
    assert mae["mask"].shape == (1, 8, 8) and int(mae["mask"].sum()) == 32
    swin = make_views("swin_unetr_ssl", 3, 32, shared_crop=True, cutout={"max_fraction": 0.1}).set_random_state(0)
    out = swin({"image": _image(3)})
    assert set(out) == set(expected_shapes("swin_unetr_ssl", 3))
    assert all(float((out[f"image_v{v}"] != out[f"target_v{v}"]).float().mean()) <= 0.1 for v in (1, 2))
    weak = make_views("simclr", 2, 64, strength="weak").set_random_state(0)({"image": img})
    assert set(weak) == {"image_v1", "image_v2"}


def test_errors():
    with pytest.raises(KeyError, match="no view recipe"):
        make_views("jigsaw", 2, 64)
    with pytest.raises(KeyError):
        view_keys("jigsaw", 2)
    with pytest.raises(ValueError, match="divisible"):
        make_views("mae", 2, 40)
    with pytest.raises(ValueError, match="divisible"):
        make_views("simmim", 3, 32, mask_patch_size=12)
    with pytest.raises(TypeError):
        make_views("simclr", 2, 64, mask_ratio=0.5)
    with pytest.raises(ValueError, match="spatial_dims"):
        make_views("simclr", 4, 64)
    with pytest.raises(ValueError, match="square"):
        make_views("swin_unetr_ssl", 3, (32, 16, 32))
    t = make_pretrain_transforms("simclr", 3, 16, load=False)
    with pytest.raises(RuntimeError) as err:  # MONAI's Compose wraps the error, the cause is ours
        t({"image": torch.rand(1, 32, 32)})
    assert isinstance(err.value.__cause__, ValueError) and "volumes" in str(err.value.__cause__)
    with pytest.raises(ValueError, match="intensity"):
        make_pretrain_transforms("simclr", 2, 16, modality="pet", load=False)


def test_intensity_choices():
    x = MetaTensor(torch.full((1, 20, 20, 20), -600.0))
    x[:, 4:16, 4:16, 4:16] = 150.0
    lung = make_pretrain_transforms("models_genesis", 3, 16, load=False, intensity="ct_lung").set_random_state(0)
    # lung window (-600, 1500): -600 HU -> 0.5, 150 HU -> 1.0 (clipped)
    assert float(lung({"image": x})["image"].max()) == pytest.approx(1.0)
    raw = make_pretrain_transforms("models_genesis", 3, 16, load=False, intensity=None).set_random_state(0)
    assert float(raw({"image": x.clone()})["image"].max()) == pytest.approx(150.0)
    mr = make_pretrain_transforms("simclr", 3, 16, modality="mr", load=False).set_random_state(0)
    assert set(mr({"image": x.clone() + 1000})) == {"image_v1", "image_v2"}
