"""The image encoder of Segment Anything (SAM; Kirillov et al., 2023, arXiv:2304.02643) and of MedSAM (Ma et al., 2024,
Nature Communications 15:654): a ViT-B/16 whose blocks attend within 14x14 windows except four global ones, with
decomposed relative position embeddings (MViTv2; Li et al., 2022, arXiv:2112.01526) and a convolutional neck to 256
channels.

MONAI's ``ViT`` has neither windowed attention nor relative positions, so this encoder is written out; its parameter
names are the published ones (``patch_embed.proj``, ``pos_embed``, ``blocks.i.attn.rel_pos_h``, ``neck.0`` ...), so
``sam_vit_b_01ec64.pth`` and ``medsam_vit_b.pth`` load once their ``image_encoder.`` prefix is removed. The absolute
and relative position embeddings are sized for ``img_size`` (1024 as published) and resampled on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["SAMImageEncoder", "sam_vit_b_encoder", "relative_positions"]


def relative_positions(size: int, table: torch.Tensor) -> torch.Tensor:
    """``(size, size, C)`` embeddings of the offsets ``i - j`` between query row ``i`` and key row ``j``, read from a
    ``(2 * size - 1, C)`` table (interpolated linearly when the table was learnt for another size, as SAM does)."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None], size=length, mode="linear")[0].t()
    offsets = torch.arange(size, device=table.device)[:, None] - torch.arange(size, device=table.device)[None, :]
    return table[offsets + size - 1]


class _PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H, W, C): SAM keeps tokens on a grid


class _Attention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` grid with decomposed relative positions along H and W."""

    def __init__(self, dim: int, heads: int, size: int) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, d)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        grid_q = q.reshape(b, self.heads, h, w, -1)
        # the query's dot product with the embedding of each row (column) offset, added to every key in that row
        rel_h = torch.einsum("bnhwd,hkd->bnhwk", grid_q, relative_positions(h, self.rel_pos_h))
        rel_w = torch.einsum("bnhwd,wkd->bnhwk", grid_q, relative_positions(w, self.rel_pos_w))
        logits = logits.reshape(b, self.heads, h, w, h, w) + rel_h[..., :, None] + rel_w[..., None, :]
        attn = logits.reshape(b, self.heads, h * w, h * w).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, grid: int, eps: float) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _Attention(dim, heads, window if window else grid)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, 4 * dim)

    def _windowed(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        s = self.window
        ph, pw = -h % s, -w % s  # zero padding to whole windows, cut off again after attention
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        nh, nw = (h + ph) // s, (w + pw) // s
        windows = x.reshape(b, nh, s, nw, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, s, s, c)
        out = self.attn(windows).reshape(b, nh, nw, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * s, nw * s, c)
        return out[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + (self._windowed(y) if self.window else self.attn(y))
        return x + self.mlp(self.norm2(x))


class _LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (SAM's ``LayerNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mean) / torch.sqrt(var + self.eps) + self.bias[:, None, None]


class SAMImageEncoder(BackboneMixin, nn.Module):
    """SAM's ViT-B image encoder with the backbone surface.

    ``forward_intermediates`` returns the token grids after the global-attention blocks (3, 6, 9 and 12 with the
    published settings; 768 channels at stride 16, the maps a UNETR-style decoder reads); ``forward_features`` the
    average of the neck's 256-channel map (the embedding SAM's mask decoder reads).

    Args:
        spatial_dims: 2 (SAM is a 2D model).
        in_channels: input channels (3 published; adapted on load).
        img_size: input side the position embeddings are built for (1024 published; resampled on load).
        patch_size, embed_dim, depth, num_heads, window_size, global_attn_indexes, out_channels: SAM ViT-B's.
        layer_norm_eps: epsilon of the LayerNorms.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        img_size: int = 1024,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
        out_channels: int = 256,
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_spatial_dims("SAMImageEncoder", spatial_dims, supported=(2,))
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size}.")
        grid = img_size // patch_size
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.img_size = img_size
        self.patch_embed = _PatchEmbed(in_channels, embed_dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        glob = {int(i) for i in global_attn_indexes}
        self.blocks = nn.ModuleList(
            [_Block(embed_dim, num_heads, 0 if i in glob else window_size, grid, layer_norm_eps) for i in range(depth)]
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_channels, kernel_size=1, bias=False),
            _LayerNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            _LayerNorm2d(out_channels),
        )
        self.out_indices = sorted(glob) or [depth - 1]
        self.feature_info = [StageInfo(f"blocks.{i}", embed_dim, patch_size) for i in self.out_indices]
        self.num_features = out_channels

    def _grids(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        self._check_input(x)
        if list(x.shape[2:]) != [self.img_size, self.img_size]:
            raise ValueError(
                f"SAM image encoder was built for img_size {self.img_size}, got spatial size {list(x.shape[2:])}; "
                "build it with img_size=... (pretrained position embeddings are resampled on load)."
            )
        x = self.patch_embed(x) + self.pos_embed
        maps: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_indices:
                maps.append(x.permute(0, 3, 1, 2))
        return maps, x

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._grids(x)[0]

    def forward_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The neck's ``(B, 256, H/16, W/16)`` image embedding, as SAM's ``image_encoder(x)`` returns it."""
        return self.neck(self._grids(x)[1].permute(0, 3, 1, 2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_embedding(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {"embed": ("patch_embed", "pos_embed")}
        for i in range(len(self.blocks)):
            stages[f"block{i}"] = (f"blocks.{i}",)
        stages["neck"] = ("neck",)
        return stages


def sam_vit_b_encoder(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> SAMImageEncoder:
    return SAMImageEncoder(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
