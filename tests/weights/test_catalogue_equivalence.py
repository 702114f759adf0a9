"""Output-for-output equivalence with the reference implementations the catalogue's publishers use (timm for DINOv2,
open_clip for BiomedCLIP, MONAI for CT-FM's SegResEncoder and the model zoo's SegResNet, torchvision for RadImageNet),
after loading their state dicts in the published layout through the adapters: same random weights, same input,
features equal to 1e-4."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import SegResNet, UNet
from monai.networks.nets.segresnet_ds import SegResEncoder

from monai_transfer.networks import create_backbone
from monai_transfer.weights import load_pretrained

TOL = {"atol": 1e-4, "rtol": 1e-4}


def _jitter(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter (timm and open_clip zero some, e.g. LayerScale-free biases) so that all matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model.eval()


@pytest.mark.parametrize(
    "size, ours_name",
    [("small", "vit_small_patch14"), pytest.param("base", "vit_base_patch14", marks=pytest.mark.slow)],
)
def test_dinov2_matches_timm(size, ours_name, all_loaded):
    timm = pytest.importorskip("timm")
    reference = _jitter(
        timm.create_model(f"vit_{size}_patch14_dinov2", pretrained=False, img_size=56, num_classes=0), 0
    )
    assert "blocks.0.ls1.gamma" in reference.state_dict()  # DINOv2's LayerScale is what the adapter folds
    ours = create_backbone(ours_name, spatial_dims=2, in_channels=3, img_size=56).eval()
    report = load_pretrained(ours, reference.state_dict(), source="auto")
    assert report.adapter == "timm-vit"
    all_loaded(report)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)  # the normalised class token (timm's pre-logits)
        maps = ours.forward_intermediates(x)
        tokens = reference.forward_features(x)[:, 1:]  # the final normalised patch tokens
    torch.testing.assert_close(maps[-1].flatten(2).transpose(1, 2), tokens, **TOL)


@pytest.mark.slow
def test_biomedclip_tower_matches_open_clip(all_loaded):
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    # BiomedCLIP's vision_cfg (open_clip_config.json): vit_base_patch16_224, pool "", proj "linear", embed_dim 512
    tower = _jitter(open_clip.timm_model.TimmModel("vit_base_patch16_224", embed_dim=512, pool="", proj="linear"), 1)
    published = {"visual." + k: v for k, v in tower.state_dict().items()}
    published["logit_scale"] = torch.ones(())
    ours = create_backbone("vit_base_patch16", spatial_dims=2, in_channels=3, img_size=224).eval()
    report = load_pretrained(ours, published, source="auto")
    assert report.adapter == "open-clip-timm-vit"
    all_loaded(report)
    assert "visual.head.proj.weight" in report.dropped and "logit_scale" in report.dropped
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        features = ours(x)
        torch.testing.assert_close(features, tower.trunk(x), **TOL)
        torch.testing.assert_close(tower.head(features), tower(x), **TOL)  # the CLIP image embedding follows


@pytest.mark.parametrize("img_size", [128, 64])
def test_sam_image_encoder_matches_segment_anything(img_size, all_loaded):
    """SAM's own ImageEncoderViT (ViT-B layout, published settings, built for 128 px): the same embedding at 128 px,
    and at 64 px the relative tables of the global blocks resampled as SAM resamples them at run time."""
    sam = pytest.importorskip("segment_anything.modeling.image_encoder")
    from functools import partial

    reference = _jitter(
        sam.ImageEncoderViT(
            img_size=128, depth=12, num_heads=12, window_size=14, global_attn_indexes=(2, 5, 8, 11), use_rel_pos=True,
            qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), out_chans=256,
        ),
        2,
    )  # fmt: skip
    published = {"image_encoder." + k: v for k, v in reference.state_dict().items()}
    published["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    ours = create_backbone("sam_vit_b", spatial_dims=2, in_channels=3, img_size=img_size).eval()
    report = load_pretrained(ours, published, source="auto")
    assert report.adapter == "sam-image-encoder"
    all_loaded(report)
    x = torch.randn(1, 3, img_size, img_size)
    with torch.no_grad():
        got = ours.forward_embedding(x)
        if img_size == 128:
            torch.testing.assert_close(got, reference(x), **TOL)
        else:  # the reference at 64 px: its 8x8 grid of absolute positions resampled to 4x4 as ours were
            reference.pos_embed.data = ours.pos_embed.detach().clone()
            torch.testing.assert_close(got, reference(x), **TOL)
    assert got.shape == (1, 256, img_size // 16, img_size // 16)


def test_ct_fm_encoder_matches_monai(randomize, all_loaded):
    reference = randomize(SegResEncoder(spatial_dims=3, in_channels=1, init_filters=4, blocks_down=(1, 2, 2, 4, 4)), 5)
    ours = create_backbone("segresnet_ds", spatial_dims=3, in_channels=1, init_filters=4).eval()
    all_loaded(load_pretrained(ours, dict(reference.state_dict()), source="auto"))
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        expected, got = reference(x), ours.forward_intermediates(x)
        pooled = ours(x)
    assert len(got) == len(expected) == 5
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, **TOL)
    # CT-FM's own feature head: the deepest map, average-pooled
    torch.testing.assert_close(pooled, F.adaptive_avg_pool3d(expected[-1], 1).flatten(1), **TOL)


def test_zoo_segresnet_encoder_matches_monai(randomize, all_loaded):
    """The brats_mri_segmentation layout (4 input channels): our encoder's maps are SegResNet.encode's."""
    reference = randomize(
        SegResNet(spatial_dims=3, in_channels=4, out_channels=3, init_filters=8, blocks_down=(1, 2, 2, 4)), 6
    )
    ours = create_backbone("segresnet", spatial_dims=3, in_channels=4, init_filters=8).eval()
    report = load_pretrained(ours, reference.state_dict())
    assert report.adapter == "monai"
    all_loaded(report)
    assert any(k.startswith("up_layers.") for k in report.dropped)
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        _, expected = reference.encode(x)
        got = ours.forward_intermediates(x)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, **TOL)


@pytest.mark.parametrize("num_res_units", [2, 0])
def test_zoo_unet_encoder_matches_monai(num_res_units, randomize, all_loaded):
    """spleen_ct_segmentation's UNet (residual units, batch norm): our maps are the outputs of UNet's down units and
    bottleneck, taken inside the nested SkipConnections with forward hooks."""
    kwargs = {"channels": (4, 8, 16, 32), "strides": (2, 2, 2), "num_res_units": num_res_units, "norm": "batch"}
    reference = randomize(UNet(spatial_dims=3, in_channels=1, out_channels=2, **kwargs), 9)
    ours = create_backbone("unet", spatial_dims=3, in_channels=1, **kwargs).eval()
    report = load_pretrained(ours, reference.state_dict())
    assert report.adapter == "monai-unet"
    all_loaded(report)
    units = [
        reference.model[0],
        reference.model[1].submodule[0],
        reference.model[1].submodule[1].submodule[1].submodule,
    ]
    seen: list[torch.Tensor] = []
    hooks = [u.register_forward_hook(lambda m, i, o: seen.append(o)) for u in units]
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        reference(x)
        got = ours.forward_intermediates(x)
    for h in hooks:
        h.remove()
    assert len(got) == len(seen) == 3
    for e, g in zip(seen, got):
        torch.testing.assert_close(g, e, **TOL)


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_radimagenet_matches_torchvision(arch, randomize, all_loaded):
    torchvision = pytest.importorskip("torchvision")
    reference = randomize(getattr(torchvision.models, arch)(weights=None), seed=8)
    if arch == "resnet50":  # RadImageNet's Backbone: nn.Sequential(*children[:9]) of the torchvision ResNet
        trunk = torch.nn.Sequential(*list(reference.children())[:9]).eval()
    else:  # nn.Sequential(*children[:-1]): the DenseNet's features
        trunk = torch.nn.Sequential(*list(reference.children())[:-1]).eval()
    published = {"backbone." + k: v for k, v in trunk.state_dict().items()}
    ours = create_backbone(arch, spatial_dims=2, in_channels=3).eval()
    report = load_pretrained(ours, published, source="auto")
    # the ResNet's Sequential layout is lightly's too (detected as such, same mapping); the DenseNet's is RadImageNet's
    assert report.adapter == ("radimagenet" if arch == "densenet121" else "lightning-ssl")
    all_loaded(report)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = trunk(x)
        expected = out.flatten(1) if arch == "resnet50" else F.adaptive_avg_pool2d(F.relu(out), 1).flatten(1)
        torch.testing.assert_close(ours(x), expected, **TOL)
