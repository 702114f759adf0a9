"""Heads of the reconstructive SSL methods, and the mask and backbone checks they share.

* ``MAEDecoder``: the light transformer decoder of MAE (He et al., 2022, "Masked Autoencoders Are Scalable Vision
  Learners", arXiv:2111.06377), for 2D and 3D token grids.
* ``SimMIMHead``: SimMIM's one-layer prediction head (Xie et al., 2022, "SimMIM: A Simple Framework for Masked Image
  Modeling", arXiv:2111.09886): a 1x1 convolution to ``stride^d * C`` channels and a pixel shuffle.
* ``UpsampleReconstructionHead``, ``RotationHead``, ``ContrastiveHead``: the heads of SwinUNETR's self-supervised
  pretraining network ``SSLHead`` (Tang et al., 2022, "Self-Supervised Pre-Training of Swin Transformers for 3D
  Medical Image Analysis", arXiv:2111.14791; MONAI research-contributions ``SwinUNETR/Pretrain/models/ssl_head.py``).

Masks follow the batch-key contract of ``monai_transfer.ssl.base``: ``(B, 1, *grid)``, 1 where a patch is masked.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import SubpixelUpsample, TransformerBlock
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.networks.layers import Conv, get_act_layer, get_norm_layer
from monai.utils import ensure_tuple_rep
from torch import nn

from monai_transfer.networks.base import check_spatial_dims

__all__ = [
    "MAEDecoder",
    "SimMIMHead",
    "RotationHead",
    "ContrastiveHead",
    "UpsampleReconstructionHead",
    "sincos_position_embedding",
    "check_mask",
    "expand_mask",
    "check_pyramid_backbone",
]


# -- helpers shared by the reconstructive methods ------------------------------------------------------------------
def sincos_position_embedding(grid_size: Sequence[int], dim: int, spatial_dims: int) -> torch.Tensor:
    """Fixed sin-cos position embedding ``(1, prod(grid_size), dim)`` for a 2D or 3D token grid (row-major order).

    MONAI's ``build_sincos_position_embedding`` needs ``dim`` divisible by ``2 * spatial_dims``; the remaining
    channels are zero, so any width works (MAE's decoder width 512 is not divisible by 6 in 3D).
    """
    check_spatial_dims("sincos_position_embedding", spatial_dims)
    usable = dim - dim % (2 * spatial_dims)
    if usable == 0:
        raise ValueError(f"sin-cos position embedding needs dim >= {2 * spatial_dims}, got {dim}.")
    with warnings.catch_warnings():  # MONAI calls torch.meshgrid without indexing= (it means "ij")
        warnings.simplefilter("ignore", UserWarning)
        emb = build_sincos_position_embedding(list(grid_size), usable, spatial_dims).detach()
    return F.pad(emb, (0, dim - usable))


def check_mask(mask: torch.Tensor, image: torch.Tensor, name: str) -> tuple[int, ...]:
    """Check a patch mask ``(B, 1, *grid)`` against an image ``(B, C, *roi)``; return the patch size per axis.

    Raises:
        ValueError: wrong rank, batch or channel count, or an ``roi`` not divisible by ``grid`` on every axis.
    """
    if mask.dim() != image.dim() or mask.shape[0] != image.shape[0] or mask.shape[1] != 1:
        raise ValueError(
            f"{name} needs a mask of shape (B, 1, *grid) matching image {tuple(image.shape)}, got {tuple(mask.shape)}."
        )
    roi, grid = image.shape[2:], mask.shape[2:]
    if any(g < 1 or r % g for r, g in zip(roi, grid)):
        raise ValueError(f"{name}: image size {tuple(roi)} must be divisible by the mask grid {tuple(grid)}.")
    return tuple(r // g for r, g in zip(roi, grid))


def expand_mask(mask: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of a patch mask ``(B, 1, *grid)`` by an integer ``factor`` per axis."""
    for axis, f in enumerate(factor):
        if f > 1:
            mask = mask.repeat_interleave(int(f), dim=axis + 2)
    return mask


def check_pyramid_backbone(backbone: nn.Module, method: str) -> None:
    """Raise ``ValueError`` unless ``backbone`` is a 2D/3D registry backbone with a hierarchical feature pyramid.

    A plain ViT (every stage at the same stride) has no pyramid; MAE is the reconstructive method for it.
    """
    for attr in ("spatial_dims", "in_channels", "feature_info", "forward_intermediates"):
        if not hasattr(backbone, attr):
            raise ValueError(
                f"{method} needs a registry backbone (create_backbone); {type(backbone).__name__} lacks {attr!r}."
            )
    check_spatial_dims(method, int(backbone.spatial_dims))
    strides = [int(s.stride) for s in backbone.feature_info]
    if len(strides) > 1 and len(set(strides)) == 1:
        raise ValueError(
            f"{method} needs a hierarchical encoder (CNN or Swin) whose stages downsample; {type(backbone).__name__} "
            f"keeps one stride {strides[0]} in every stage (a plain ViT). Pretrain a ViT with 'mae'."
        )
    deepest = strides[-1]
    if deepest < 1 or deepest & (deepest - 1):
        raise ValueError(f"{method} needs a deepest stride that is a power of 2, got {deepest}.")


def _init_transformer_weights(module: nn.Module) -> None:
    # MAE's initialisation: xavier-uniform linear layers, zero biases, unit LayerNorm
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# -- MAE -----------------------------------------------------------------------------------------------------------
class MAEDecoder(nn.Module):
    """MAE's decoder: embed the visible encoder tokens, fill the masked positions with a shared mask token, add
    position embeddings, run a few transformer blocks and predict the pixels of every patch.

    Shapes:
        ``tokens``: ``(B, num_prefix_tokens + n_visible, in_dim)``, the encoder output (prefix = class token);
        ``ids_restore``: ``(B, N)`` long, the position in ``[visible..., masked...]`` order of each grid patch;
        returns ``(B, N, out_dim)`` predictions in grid (row-major) order, prefix tokens dropped.

    Args:
        spatial_dims: 2 or 3.
        grid_size: patch grid of the encoder (``roi // patch_size``).
        in_dim: encoder width.
        out_dim: values predicted per patch, ``prod(patch_size) * in_channels``.
        decoder_dim: decoder width (512 in the paper).
        depth: number of transformer blocks (8 in the paper).
        num_heads: attention heads (16 in the paper).
        mlp_ratio: MLP width over ``decoder_dim``.
        num_prefix_tokens: tokens before the patch tokens (1 with a class token, else 0).
        pos_embed: ``"sincos"`` (fixed, as the paper) or ``"learnable"``.
        layer_norm_eps: epsilon of the final LayerNorm.
    """

    def __init__(
        self,
        spatial_dims: int,
        grid_size: Sequence[int],
        in_dim: int,
        out_dim: int,
        decoder_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_prefix_tokens: int = 1,
        pos_embed: str = "sincos",
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_spatial_dims("MAEDecoder", spatial_dims)
        grid = tuple(int(g) for g in ensure_tuple_rep(grid_size, spatial_dims))
        if decoder_dim % num_heads:
            raise ValueError(f"decoder_dim {decoder_dim} must be divisible by num_heads {num_heads}.")
        if depth < 1:
            raise ValueError(f"MAEDecoder needs depth >= 1, got {depth}.")
        if pos_embed not in ("sincos", "learnable"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learnable', got {pos_embed!r}.")
        self.grid_size = grid
        self.num_patches = math.prod(grid)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.embed = nn.Linear(in_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        n = self.num_prefix_tokens + self.num_patches
        if pos_embed == "sincos":
            # prefix tokens get a zero position, as MAE's class token; a buffer, so the optimizer never sees it
            pe = sincos_position_embedding(grid, decoder_dim, spatial_dims)
            self.register_buffer("pos_embed", F.pad(pe, (0, 0, self.num_prefix_tokens, 0)))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, n, decoder_dim))
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(decoder_dim, int(decoder_dim * mlp_ratio), num_heads, qkv_bias=True)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(decoder_dim, eps=layer_norm_eps)
        self.pred = nn.Linear(decoder_dim, out_dim)
        self.apply(_init_transformer_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        if ids_restore.shape[1] != self.num_patches:
            raise ValueError(
                f"MAEDecoder was built for {self.num_patches} patches, got ids_restore {ids_restore.shape}."
            )
        x = self.embed(tokens)
        prefix, visible = x[:, : self.num_prefix_tokens], x[:, self.num_prefix_tokens :]
        b, n_vis, d = visible.shape
        filled = torch.cat([visible, self.mask_token.expand(b, self.num_patches - n_vis, d)], dim=1)
        filled = torch.gather(filled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))  # back to grid order
        x = torch.cat([prefix, filled], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))[:, self.num_prefix_tokens :]


# -- SimMIM --------------------------------------------------------------------------------------------------------
class SimMIMHead(nn.Module):
    """SimMIM's prediction head: a 1x1 convolution to ``scale^d * out_channels`` then a pixel shuffle.

    Shapes: ``(B, in_channels, *s)`` -> ``(B, out_channels, *(s * scale))``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the encoder map (the deepest stage in the paper).
        out_channels: image channels.
        scale: the map's stride relative to the image.

    Note:
        The head has ``in_channels * scale^d * out_channels`` weights: 0.5 M for a 2D ResNet at stride 32,
        25 M for a 3D Swin (768 channels at stride 32); the paper's ablation prefers this one layer over deeper heads.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: int) -> None:
        super().__init__()
        check_spatial_dims("SimMIMHead", spatial_dims)
        if scale < 1:
            raise ValueError(f"SimMIMHead scale must be a positive integer, got {scale}.")
        conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels * scale**spatial_dims, kernel_size=1)
        # pad_pool would blur the prediction: SimMIM's head is exactly linear per patch
        self.upsample = SubpixelUpsample(spatial_dims, in_channels, out_channels, scale, conv, apply_pad_pool=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


# -- SwinUNETR multi-task ------------------------------------------------------------------------------------------
class RotationHead(nn.Module):
    """Linear classifier of the rotation class from a pooled embedding ``(B, in_features)`` -> ``(B, num_classes)``."""

    def __init__(self, in_features: int, num_classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ContrastiveHead(nn.Module):
    """Contrastive projection ``(B, in_features)`` -> ``(B, out_features)``: linear as SwinUNETR-SSL, or a
    two-layer MLP (linear, activation, linear) when ``hidden_features`` is given.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 512,
        hidden_features: int | None = None,
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if hidden_features is None:
            self.proj: nn.Module = nn.Linear(in_features, out_features)
        else:
            self.proj = nn.Sequential(
                nn.Linear(in_features, hidden_features), get_act_layer(act), nn.Linear(hidden_features, out_features)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class UpsampleReconstructionHead(nn.Module):
    """Reconstruct the image from the deepest feature map by ``log2(scale)`` x2 upsampling stages.

    As ``SSLHead.conv`` of SwinUNETR-SSL, with the widths derived from ``in_channels`` (``in_channels / 2^k``, halved
    at most four times, as the reference's 768 -> 384 -> 192 -> 96 -> 48 -> 48) instead of hard-coded:

    * ``"vae"`` (the reference default): per stage a 3x3 convolution, norm, activation, then trilinear/bilinear x2;
    * ``"deconv"``: per stage a 2x2 transposed convolution (stride 2);

    then a 1x1 convolution to ``out_channels``.

    Shapes: ``(B, in_channels, *s)`` -> ``(B, out_channels, *(s * scale))``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the deepest map.
        out_channels: image channels.
        scale: the map's stride, a power of 2.
        mode: ``"vae"`` or ``"deconv"``.
        norm: normalisation of the ``"vae"`` stages (MONAI name or ``(name, kwargs)``).
        act: activation of the ``"vae"`` stages.
        min_channels: floor of the stage widths.

    Note:
        With instance norm (the reference), the deepest map needs more than one voxel in training: use inputs of at
        least twice the deepest stride on one axis, or ``norm="batch"``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        scale: int,
        mode: str = "vae",
        norm: str | tuple = "instance",
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.01}),
        min_channels: int = 4,
    ) -> None:
        super().__init__()
        check_spatial_dims("UpsampleReconstructionHead", spatial_dims)
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"UpsampleReconstructionHead needs a power-of-2 scale, got {scale}.")
        if mode not in ("vae", "deconv"):
            raise ValueError(f"mode must be 'vae' or 'deconv', got {mode!r}.")
        n_up = int(math.log2(scale))
        widths = [in_channels] + [max(in_channels >> min(k + 1, 4), min_channels) for k in range(n_up)]
        conv, tconv = Conv[Conv.CONV, spatial_dims], Conv[Conv.CONVTRANS, spatial_dims]
        interp = "bilinear" if spatial_dims == 2 else "trilinear"
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            if mode == "vae":
                layers += [
                    conv(c_in, c_out, kernel_size=3, padding=1),
                    get_norm_layer(norm, spatial_dims, c_out),
                    get_act_layer(act),
                    nn.Upsample(scale_factor=2, mode=interp, align_corners=False),
                ]
            else:
                layers.append(tconv(c_in, c_out, kernel_size=2, stride=2))
        layers.append(conv(widths[-1], out_channels, kernel_size=1))
        self.conv = nn.Sequential(*layers)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
