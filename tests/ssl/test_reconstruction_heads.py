"""Heads of the reconstructive SSL methods: shapes in 2D and 3D, locality of SimMIM's head, MAE's decoder
position handling, and the shared mask and backbone checks."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding

from monai_transfer.networks.base import StageInfo
from monai_transfer.ssl.reconstruction_heads import (
    ContrastiveHead,
    MAEDecoder,
    RotationHead,
    SimMIMHead,
    UpsampleReconstructionHead,
    check_mask,
    check_pyramid_backbone,
    expand_mask,
    sincos_position_embedding,
)


def test_sincos_matches_monai_and_pads_any_width():
    assert torch.equal(sincos_position_embedding((4, 4), 64, 2), build_sincos_position_embedding([4, 4], 64, 2))
    pe = sincos_position_embedding((2, 3, 4), 512, 3)  # 512 is not divisible by 6 (MAE's decoder width in 3D)
    assert pe.shape == (1, 24, 512) and not pe.requires_grad
    assert torch.equal(pe[..., :510], build_sincos_position_embedding([2, 3, 4], 510, 3))
    assert torch.count_nonzero(pe[..., 510:]) == 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("pos_embed", ["sincos", "learnable"])
def test_mae_decoder_shapes_and_position_buffer(spatial_dims, pos_embed):
    grid = (2,) * spatial_dims
    n = math.prod(grid)
    dec = MAEDecoder(
        spatial_dims, grid, in_dim=24, out_dim=10, decoder_dim=24, depth=1, num_heads=2, pos_embed=pos_embed
    )
    tokens = torch.randn(3, 1 + n - 3, 24)  # class token + visible tokens
    ids_restore = torch.stack([torch.randperm(n) for _ in range(3)])
    out = dec(tokens, ids_restore)
    assert out.shape == (3, n, 10)
    names = dict(dec.named_parameters())
    # the fixed embedding is a buffer: never optimised, never weight-decayed
    assert ("pos_embed" in names) == (pos_embed == "learnable")
    assert dec.pos_embed.shape == (1, 1 + n, 24)
    with pytest.raises(ValueError, match="patches"):
        dec(tokens, ids_restore[:, :-1])


def test_mae_decoder_restores_grid_order():
    # with an identity-like decoder (no blocks' effect), each grid position must receive its own visible token
    torch.manual_seed(0)
    dec = MAEDecoder(2, (2, 2), in_dim=8, out_dim=8, decoder_dim=8, depth=1, num_heads=1, num_prefix_tokens=0)
    dec.blocks = torch.nn.ModuleList()
    dec.norm = torch.nn.Identity()
    with torch.no_grad():
        for lin in (dec.embed, dec.pred):
            lin.weight.copy_(torch.eye(8))
            lin.bias.zero_()
        dec.pos_embed.zero_()
        dec.mask_token.fill_(-7.0)
    visible = torch.randn(1, 2, 8)  # patches 3 and 1 visible, in that order; 0 and 2 masked
    ids_shuffle = torch.tensor([[3, 1, 0, 2]])
    out = dec(visible, torch.argsort(ids_shuffle, dim=1))
    assert torch.allclose(out[0, 3], visible[0, 0]) and torch.allclose(out[0, 1], visible[0, 1])
    assert torch.all(out[0, [0, 2]] == -7.0)


@pytest.mark.parametrize("spatial_dims,scale", [(2, 32), (3, 8)])
def test_simmim_head_shape_and_locality(spatial_dims, scale):
    head = SimMIMHead(spatial_dims, in_channels=6, out_channels=2, scale=scale)
    x = torch.randn((1, 6) + (2,) * spatial_dims)
    y = head(x)
    assert y.shape == (1, 2) + (2 * scale,) * spatial_dims
    # a 1x1 convolution and a pixel shuffle: feature (0, ..., 0) only drives the first output patch
    x2 = x.clone()
    x2[(0, slice(None)) + (0,) * spatial_dims] += 1.0
    changed = (head(x2) - y).abs().sum(dim=(0, 1)) > 0
    first = (slice(0, scale),) * spatial_dims
    assert changed[first].all() and changed.sum() == scale**spatial_dims


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("mode", ["vae", "deconv"])
def test_upsample_reconstruction_head(spatial_dims, mode):
    head = UpsampleReconstructionHead(spatial_dims, in_channels=64, out_channels=2, scale=8, mode=mode)
    y = head(torch.randn((2, 64) + (2,) * spatial_dims))
    assert y.shape == (2, 2) + (16,) * spatial_dims
    with pytest.raises(ValueError, match="power-of-2"):
        UpsampleReconstructionHead(spatial_dims, 64, 1, scale=12)
    with pytest.raises(ValueError, match="mode"):
        UpsampleReconstructionHead(spatial_dims, 64, 1, scale=8, mode="pixelshuffle")


def test_rotation_and_contrastive_heads():
    x = torch.randn(5, 32)
    assert RotationHead(32).forward(x).shape == (5, 4)
    assert ContrastiveHead(32).forward(x).shape == (5, 512)
    mlp = ContrastiveHead(32, out_features=16, hidden_features=8)
    assert mlp(x).shape == (5, 16) and len(mlp.proj) == 3


def test_mask_helpers():
    image = torch.zeros(2, 1, 8, 12)
    mask = torch.zeros(2, 1, 2, 3)
    assert check_mask(mask, image, "t") == (4, 4)
    mask[0, 0, 1, 2] = 1
    up = expand_mask(mask, (4, 4))
    assert up.shape == (2, 1, 8, 12) and up.sum() == 16 and up[0, 0, 4:, 8:].all()
    with pytest.raises(ValueError, match="divisible"):
        check_mask(torch.zeros(2, 1, 3, 3), image, "t")
    with pytest.raises(ValueError, match="mask of shape"):
        check_mask(torch.zeros(2, 2, 2, 3), image, "t")


def test_check_pyramid_backbone_rejects_plain_vit():
    class FakeViT(torch.nn.Module):
        spatial_dims, in_channels = 2, 1
        feature_info = [StageInfo(f"blocks.{i}", 8, 16) for i in range(4)]

        def forward_intermediates(self, x):  # pragma: no cover - never called
            return []

    with pytest.raises(ValueError, match="plain ViT"):
        check_pyramid_backbone(FakeViT(), "SimMIM")
    with pytest.raises(ValueError, match="registry backbone"):
        check_pyramid_backbone(torch.nn.Linear(2, 2), "SimMIM")
