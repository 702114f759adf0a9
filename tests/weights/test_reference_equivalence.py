"""Output-for-output equivalence with the reference implementations (torchvision, timm) after loading their
state dicts through the adapters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_transfer.networks import create_backbone
from monai_transfer.weights import load_pretrained

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def _torchvision_resnet_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.Sequential(*list(model.children())[:-1])(x).flatten(1)  # everything before fc


def _torchvision_densenet_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(F.relu(model.features(x)), 1).flatten(1)  # everything before classifier


@pytest.mark.parametrize(
    "name, build, features, adapter",
    [
        ("resnet50", "resnet50", _torchvision_resnet_features, "torchvision-resnet"),
        ("densenet121", "densenet121", _torchvision_densenet_features, "torchvision-densenet"),
    ],
)
def test_torchvision_pooled_features_match(name, build, features, adapter, randomize, all_loaded):
    torch.manual_seed(0)
    reference = randomize(getattr(torchvision.models, build)(weights=None), seed=1)
    ours = create_backbone(name, spatial_dims=2, in_channels=3)
    report = load_pretrained(ours, reference.state_dict(), source="auto")
    ours.eval()
    assert report.adapter == adapter
    all_loaded(report)
    head = "fc" if name.startswith("resnet") else "classifier"
    assert sorted(report.dropped) == [f"{head}.bias", f"{head}.weight"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = features(reference, x), ours.forward_features(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_torchvision_densenet_old_key_names(randomize, all_loaded):
    """The published densenet121-a639ec97.pth still uses the pre-0.4 names ``denselayerN.norm.1``."""
    reference = randomize(torchvision.models.densenet121(weights=None), seed=2)
    old = {}
    for k, v in reference.state_dict().items():
        for part in ("norm1", "norm2", "conv1", "conv2"):
            k = k.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.") if "denselayer" in k else k
        old[k] = v
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    ours = create_backbone("densenet121", spatial_dims=2, in_channels=3)
    all_loaded(load_pretrained(ours, old))
    torch.testing.assert_close(
        ours.state_dict()["features.denseblock1.denselayer1.layers.norm1.weight"],
        reference.state_dict()["features.denseblock1.denselayer1.norm1.weight"],
    )


@pytest.fixture(scope="module")
def timm_vit():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    with torch.no_grad():  # timm zero-initialises some tensors (cls_token, biases): make every one matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def test_timm_vit_matches_pre_logits(timm_vit, all_loaded):
    ours = create_backbone("vit_small_patch16", spatial_dims=2, in_channels=3, img_size=224).eval()
    report = load_pretrained(ours, timm_vit.state_dict(), source="auto")
    assert report.adapter == "timm-vit"
    all_loaded(report)
    assert sorted(report.dropped) == ["head.bias", "head.weight"]
    assert all("norm_cross_attn" in k for k in report.defaulted)  # unused by MONAI's ViT, not in timm files
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = timm_vit.forward_head(timm_vit.forward_features(x), pre_logits=True)
        got = ours.forward_features(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_timm_vit_class_position_folded(timm_vit):
    ours = create_backbone("vit_small_patch16", spatial_dims=2, in_channels=3, img_size=224)
    load_pretrained(ours, timm_vit.state_dict())
    sd = timm_vit.state_dict()
    torch.testing.assert_close(ours.cls_token.detach(), sd["cls_token"] + sd["pos_embed"][:, :1])
    torch.testing.assert_close(ours.patch_embedding.position_embeddings.detach(), sd["pos_embed"][:, 1:])


def test_timm_vit_resampled_to_112(timm_vit, all_loaded):
    ours = create_backbone("vit_small_patch16", spatial_dims=2, in_channels=3, img_size=112).eval()
    report = load_pretrained(ours, timm_vit.state_dict())
    all_loaded(report)
    assert "14x14 -> 7x7" in report.adapted["patch_embedding.position_embeddings"]
    grid = timm_vit.state_dict()["pos_embed"][:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False, antialias=True)
    expected = expected.flatten(2).transpose(1, 2)
    torch.testing.assert_close(ours.patch_embedding.position_embeddings.detach(), expected)
    out = ours(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 384) and torch.isfinite(out).all()


def test_timm_vit_into_3d(timm_vit, all_loaded):
    ours = create_backbone("vit_small_patch16", spatial_dims=3, in_channels=1, img_size=32).eval()
    report = load_pretrained(ours, timm_vit.state_dict(), inflate_mode="centre")
    all_loaded(report)
    patch = "patch_embedding.patch_embeddings.weight"
    assert "inflated 2D->3D (centre, depth 16)" in report.adapted[patch]
    assert "in_channels 3->1" in report.adapted[patch]
    assert "14x14 -> 2x2x2" in report.adapted["patch_embedding.position_embeddings"]
    w = ours.patch_embedding.patch_embeddings.weight.detach()
    assert w.shape == (384, 1, 16, 16, 16)
    torch.testing.assert_close(w[..., 8], timm_vit.state_dict()["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert w[..., :8].abs().max() == 0 and w[..., 9:].abs().max() == 0
    out = ours(torch.randn(1, 1, 32, 32, 32))
    assert out.shape == (1, 384) and torch.isfinite(out).all()
