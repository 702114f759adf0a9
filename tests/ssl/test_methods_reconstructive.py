"""The reconstructive and multi-task SSL methods (MAE, SimMIM, Models Genesis, SwinUNETR multi-task) in 2D and 3D.

Each method is built with ``create_method`` around a tiny registry backbone and trained a few Adam steps on one
fixed, hand-built batch (masks with an exact count per sample, rotations by ``torch.rot90``), so these tests do not
depend on the view transforms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from monai_transfer.networks import create_backbone
from monai_transfer.ssl import MissingViewError, create_method
from monai_transfer.ssl.methods.mae import MAE, patchify, unpatchify
from monai_transfer.ssl.methods.simmim import SimMIM

TINY_VIT = {"img_size": 32, "patch_size": 8}
TINY_SWIN = {"feature_size": 12, "window_size": 4}
TINY_MAE_DECODER = {"decoder_dim": 48, "decoder_depth": 1, "decoder_num_heads": 4}


# -- hand-built batches ------------------------------------------------------------------------------------------
def smooth_images(batch: int, roi: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with structure: coarse noise upsampled, plus a ramp along the first axis (an orientation
    cue for the rotation task)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((batch, 1) + tuple(max(r // 8, 1) for r in roi), generator=g)
    x = F.interpolate(low, size=roi, mode="bilinear" if len(roi) == 2 else "trilinear", align_corners=False)
    ramp = torch.linspace(0, 1, roi[0]).view([1, 1, roi[0]] + [1] * (len(roi) - 1))
    return (0.5 * x + 0.5 * ramp).clamp(0, 1)


def exact_mask(batch: int, grid: tuple[int, ...], n_masked: int, seed: int = 0) -> torch.Tensor:
    """``(B, 1, *grid)`` with exactly ``n_masked`` ones per sample."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(grid)
    flat = torch.zeros(batch, n)
    for i in range(batch):
        flat[i, torch.randperm(n, generator=g)[:n_masked]] = 1.0
    return flat.view((batch, 1) + grid)


def masked_batch(roi: tuple[int, ...], mask_patch: int, ratio: float, batch: int = 2) -> dict[str, torch.Tensor]:
    grid = tuple(r // mask_patch for r in roi)
    return {"image": smooth_images(batch, roi), "mask": exact_mask(batch, grid, int(ratio * math.prod(grid)))}


def genesis_batch(roi: tuple[int, ...], batch: int = 2) -> dict[str, torch.Tensor]:
    image = smooth_images(batch, roi)
    corrupted = image.pow(2.0)  # a non-linear intensity transformation, as one of Models Genesis' corruptions
    corrupted[(slice(None), slice(None)) + (slice(4, 12),) * len(roi)] = 0.5  # and an in-painting hole
    return {"image_v1": corrupted, "image": image}


def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by ``k[i] * 90`` degrees in the plane of the first two spatial axes."""
    return torch.stack([torch.rot90(x[i], int(k[i]), dims=(1, 2)) for i in range(x.shape[0])])


def multitask_batch(roi: tuple[int, ...], batch: int = 2) -> dict[str, torch.Tensor]:
    image = smooth_images(batch, roi)
    rot_v1, rot_v2 = torch.tensor([0, 1]), torch.tensor([2, 3])
    target_v1, target_v2 = rotate(image, rot_v1), rotate(image, rot_v2)
    image_v1, image_v2 = target_v1.clone(), target_v2.clone()
    image_v1[..., :8, :8] = 0.0  # cut-outs at different places in the two views
    image_v2[..., 8:16, 8:16] = 0.0
    return {
        "image_v1": image_v1,
        "image_v2": image_v2,
        "target_v1": target_v1,
        "target_v2": target_v2,
        "rot_v1": rot_v1,
        "rot_v2": rot_v2,
    }


# -- the training cases ------------------------------------------------------------------------------------------
# (method, backbone, spatial_dims, backbone kwargs, method kwargs, batch builder, learning rate)
CASES: dict[str, tuple[str, str, int, dict, dict, Callable[[], dict], float]] = {
    "mae-2d": (
        "mae",
        "vit_small_patch16",
        2,
        TINY_VIT,
        TINY_MAE_DECODER,
        lambda: masked_batch((32, 32), 8, 0.75),
        1e-3,
    ),
    "mae-3d": (
        "mae",
        "vit_small_patch16",
        3,
        TINY_VIT,
        TINY_MAE_DECODER,
        lambda: masked_batch((32,) * 3, 8, 0.75),
        1e-3,
    ),
    "simmim-swin-2d": ("simmim", "swin_unetr", 2, TINY_SWIN, {}, lambda: masked_batch((32, 32), 8, 0.5), 1e-3),
    "simmim-resnet-2d": ("simmim", "resnet10", 2, {}, {}, lambda: masked_batch((32, 32), 8, 0.5), 1e-3),
    "simmim-swin-3d": ("simmim", "swin_unetr", 3, TINY_SWIN, {}, lambda: masked_batch((32,) * 3, 8, 0.5), 1e-3),
    # default decoder (instance norm) in 2D: 64 px so the deepest map has more than one pixel
    "genesis-2d": ("models_genesis", "resnet10", 2, {}, {}, lambda: genesis_batch((64, 64)), 1e-3),
    "genesis-3d": (
        "models_genesis",
        "resnet10",
        3,
        {},
        {"decoder_norm": "batch", "decoder_feature_size": 8},
        lambda: genesis_batch((32,) * 3),
        1e-3,
    ),
    "swin-ssl-2d": ("swin_unetr_ssl", "swin_unetr", 2, TINY_SWIN, {}, lambda: multitask_batch((64, 64)), 1e-4),
    "swin-ssl-3d": ("swin_unetr_ssl", "swin_unetr", 3, TINY_SWIN, {}, lambda: multitask_batch((32, 32, 64)), 1e-4),
}

# the multi-task loss falls more slowly: its contrastive term pulls against the rotation task on one tiny batch
STEPS = {"swin-ssl-2d": 8, "swin-ssl-3d": 8}

EXPECTED_TERMS = {
    "mae": {"loss", "reconstruction"},
    "simmim": {"loss", "reconstruction"},
    "models_genesis": {"loss", "reconstruction"},
    "swin_unetr_ssl": {"loss", "rotation", "contrastive", "reconstruction"},
}


def build(case: str):
    method, backbone_name, dims, backbone_kwargs, method_kwargs, make_batch, lr = CASES[case]
    torch.manual_seed(0)
    backbone = create_backbone(backbone_name, spatial_dims=dims, **backbone_kwargs)
    return create_method(method, backbone, **method_kwargs), make_batch(), lr


def first_parameter_grad(module: torch.nn.Module) -> torch.Tensor:
    """Gradient of the backbone's first parameter (the stem / patch embedding): the farthest from the loss."""
    return next(p for p in module.parameters() if p.requires_grad).grad


@pytest.mark.parametrize("case", list(CASES))
def test_method_trains_on_a_fixed_batch(case):
    method, batch, lr = build(case)
    assert method.export_encoder() is method.backbone
    optimizer = torch.optim.Adam(method.parameters(), lr=lr)
    losses = []
    for step in range(STEPS.get(case, 5)):
        out = method(batch)
        assert set(out) == EXPECTED_TERMS[CASES[case][0]]
        assert out["loss"].requires_grad and all(not v.requires_grad for k, v in out.items() if k != "loss")
        optimizer.zero_grad()
        out["loss"].backward()
        if step == 0:
            grad = first_parameter_grad(method.backbone)
            assert grad is not None and grad.abs().sum() > 0, "no gradient reached the backbone's first layer"
        optimizer.step()
        losses.append(out["loss"].item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.95 * losses[0], f"loss did not fall: {losses}"


# -- MAE ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mae2d():
    method, batch, _ = build("mae-2d")
    return method, batch


def test_mae_patchify_roundtrip():
    for roi, patch in [((8, 12), (4, 2)), ((4, 8, 6), (2, 4, 3))]:
        x = torch.randn((2, 3) + roi)
        grid = tuple(r // p for r, p in zip(roi, patch))
        patches = patchify(x, patch)
        assert patches.shape == (2, math.prod(grid), math.prod(patch) * 3)
        assert torch.equal(unpatchify(patches, patch, grid), x)
    # patch k in grid order holds the pixels of the k-th ViT token
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert patchify(x, (2, 2))[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_reads_masked_patches_only(mae2d, norm_pix):
    method, batch = mae2d
    method.norm_pix_loss = norm_pix
    image, mask = batch["image"], batch["mask"]
    with torch.no_grad():
        pred = method.predict(image, mask)
        loss = method.reconstruction_loss(pred, image, mask)
        pixel_mask = mask.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
        noise = torch.randn_like(image)
        visible_changed = image + noise * (1 - pixel_mask)
        masked_changed = image + noise * pixel_mask
        assert torch.allclose(method.reconstruction_loss(pred, visible_changed, mask), loss)
        assert not torch.allclose(method.reconstruction_loss(pred, masked_changed, mask), loss)
    method.norm_pix_loss = True


def test_mae_encoder_sees_visible_tokens_only(mae2d):
    method, batch = mae2d
    tokens, ids_restore = method.encode_visible(batch["image"], batch["mask"])
    n_visible = 16 - int(batch["mask"][0].sum())
    assert tokens.shape == (2, 1 + n_visible, 384)  # class token + visible patches
    assert ids_restore.shape == (2, 16)


def test_mae_rejects_bad_masks(mae2d):
    method, batch = mae2d
    image = batch["image"]
    with pytest.raises(ValueError, match="patch grid"):
        method({"image": image, "mask": exact_mask(2, (8, 8), 48)})  # mask patches of 4 px, ViT patches of 8
    uneven = exact_mask(2, (4, 4), 12)
    flat = uneven[1].view(-1)
    flat[flat.argmin()] = 1.0  # the second sample masks 13 patches
    with pytest.raises(ValueError, match="same number"):
        method({"image": image, "mask": uneven})
    with pytest.raises(MissingViewError, match="mask"):
        method({"image": image})


def test_mae_rejects_a_cnn():
    with pytest.raises(ValueError, match="ViT"):
        create_method("mae", create_backbone("resnet18", spatial_dims=2))
    with pytest.raises(ValueError, match="ViT backbone"):
        MAE(create_backbone("resnet10", spatial_dims=2))  # the constructor checks too, without the registry


@pytest.mark.parametrize("spatial_dims,global_pool", [(3, "token"), (2, "avg")])
def test_mae_defaults_and_no_class_token(spatial_dims, global_pool):
    # the paper's decoder (512 wide: sin-cos padded in 3D, as 512 is not divisible by 6); a ViT without class token
    backbone = create_backbone("vit_small_patch16", spatial_dims=spatial_dims, global_pool=global_pool, **TINY_VIT)
    method = create_method("mae", backbone)
    assert method.norm_pix_loss and len(method.decoder.blocks) == 8 and method.decoder.pos_embed.shape[-1] == 512
    grid = (4,) * spatial_dims
    batch = {"image": smooth_images(2, (32,) * spatial_dims), "mask": exact_mask(2, grid, 3 * math.prod(grid) // 4)}
    tokens, _ = method.encode_visible(batch["image"], batch["mask"])
    assert tokens.shape[1] == method.num_prefix_tokens + math.prod(grid) // 4
    method(batch)["loss"].backward()
    assert first_parameter_grad(method.backbone).abs().sum() > 0


def test_mae_keeps_the_backbone_structure(mae2d):
    method, _ = mae2d
    fresh = create_backbone("vit_small_patch16", spatial_dims=2, **TINY_VIT)
    assert list(method.export_encoder().state_dict()) == list(fresh.state_dict())


# -- SimMIM ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["simmim-swin-2d", "simmim-resnet-2d"])
def test_simmim_loss_ignores_unmasked_pixels(case):
    method, batch, _ = build(case)
    image, mask = batch["image"], batch["mask"]
    with torch.no_grad():
        pred = method.predict(image, mask)
        loss = method.reconstruction_loss(pred, image, mask)
        pixel_mask = method.pixel_mask(image, mask)
        noise = torch.randn_like(image)
        assert torch.allclose(method.reconstruction_loss(pred, image + noise * (1 - pixel_mask), mask), loss)
        assert not torch.allclose(method.reconstruction_loss(pred, image + noise * pixel_mask, mask), loss)
        # the prediction itself does not see the masked pixels' content
        assert torch.allclose(method.predict(image + noise * pixel_mask, mask), pred, atol=1e-5)
    # the paper's normalisation: mean absolute error over masked pixels and channels
    expected = ((pred - image).abs() * pixel_mask).sum() / pixel_mask.sum()
    assert torch.allclose(loss, expected, rtol=1e-4)


def test_simmim_mask_token_placement_and_gradient():
    swin, batch, _ = build("simmim-swin-2d")
    assert swin.token_space == "patch_embedding" and swin.mask_token.shape == (1, 12, 1, 1)
    swin(batch)["loss"].backward()
    assert swin.mask_token.grad.abs().sum() > 0
    assert len(swin.backbone.patch_embed._forward_hooks) == 0  # the hook lives for one forward only
    cnn, batch, _ = build("simmim-resnet-2d")
    assert cnn.token_space == "input" and cnn.mask_token.shape == (1, 1, 1, 1)
    cnn(batch)["loss"].backward()
    assert cnn.mask_token.grad.abs().sum() > 0


def test_simmim_rejects_bad_inputs():
    method, batch, _ = build("simmim-swin-2d")
    with pytest.raises(ValueError, match="multiples of the Swin patch size"):
        method({"image": batch["image"], "mask": exact_mask(2, (32, 32), 100)})  # 1-px mask patches, 2-px tokens
    with pytest.raises(ValueError, match="divisible by the stride"):
        method({"image": smooth_images(2, (40, 40)), "mask": exact_mask(2, (5, 5), 10)})
    with pytest.raises(ValueError, match="does not fit"):
        create_method("simmim", create_backbone("vit_small_patch16", spatial_dims=2, **TINY_VIT))
    with pytest.raises(ValueError, match="plain ViT"):
        SimMIM(create_backbone("vit_small_patch16", spatial_dims=2, **TINY_VIT))


# -- Models Genesis ----------------------------------------------------------------------------------------------
def test_models_genesis_restores_in_unit_range():
    method, batch, _ = build("genesis-2d")
    restored = method.restore(batch["image_v1"])
    assert restored.shape == batch["image"].shape
    assert restored.min() >= 0 and restored.max() <= 1
    with pytest.raises(ValueError, match="same shape"):
        method({"image_v1": batch["image_v1"], "image": batch["image"][:, :, :32]})


# -- SwinUNETR multi-task ----------------------------------------------------------------------------------------
def test_swin_multitask_each_term_drives_the_encoder():
    method, batch, _ = build("swin-ssl-2d")
    heads = {
        "rotation": method.rotation_head,
        "contrastive": method.contrastive_head,
        "reconstruction": method.reconstruction_head,
    }
    out = method(batch)
    assert all(out[k] > 0 for k in heads)
    weights = {
        "rotation": "rotation_weight",
        "contrastive": "contrastive_weight",
        "reconstruction": "reconstruction_weight",
    }
    for term in heads:
        for other, attr in weights.items():
            setattr(method, attr, 1.0 if other == term else 0.0)
        method.zero_grad(set_to_none=True)
        method(batch)["loss"].backward()
        grad = first_parameter_grad(method.backbone)
        assert grad is not None and grad.abs().sum() > 0, f"{term} sends no gradient to the encoder"
        for other, head in heads.items():
            g = sum(float(p.grad.abs().sum()) for p in head.parameters() if p.grad is not None)
            assert (g > 0) == (other == term), f"{term} loss: gradient on the {other} head is {g}"


def test_swin_multitask_loss_is_the_weighted_sum():
    method, batch, _ = build("swin-ssl-2d")
    method.rotation_weight, method.contrastive_weight, method.reconstruction_weight = 0.5, 2.0, 3.0
    with torch.no_grad():
        out = method(batch)
    expected = 0.5 * out["rotation"] + 2.0 * out["contrastive"] + 3.0 * out["reconstruction"]
    assert torch.allclose(out["loss"], expected)
    with pytest.raises(ValueError, match="rot_v1"):
        method({**batch, "rot_v1": torch.tensor([0, 4])})
    with pytest.raises(ValueError, match="one shape"):
        method({**batch, "target_v2": batch["target_v2"][..., :32]})
