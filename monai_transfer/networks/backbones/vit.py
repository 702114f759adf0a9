"""ViT-S and ViT-B backbones (patch 16, and patch 14 for DINOv2) over MONAI's ``ViT`` (Dosovitskiy et al., 2021,
arXiv:2010.11929).

Differences from MONAI's defaults, chosen so timm/ImageNet and MAE checkpoints reproduce their outputs:
``qkv_bias=True`` and LayerNorm ``eps=1e-6``. MONAI keeps no position embedding for the class token; timm's
class-token position embedding is folded into ``cls_token`` by the weight adapter (exact, both are additive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import ViT
from monai.utils import ensure_tuple_rep
from torch import nn

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["ViTBackbone", "VIT_SIZES"]

# name -> (hidden_size, mlp_dim, num_layers, num_heads)
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "small": (384, 1536, 12, 6),
    "base": (768, 3072, 12, 12),
}


class ViTBackbone(BackboneMixin, ViT):
    """A MONAI ``ViT`` with a class token and no classifier.

    Args:
        size: ``"small"`` or ``"base"``.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        img_size: input size the position embeddings are built for (an int or one per axis).
        patch_size: patch size.
        global_pool: ``"token"`` (class token, as timm and the original ViT) or ``"avg"`` (mean of patch tokens).
        out_indices: blocks whose outputs ``forward_intermediates`` returns (the last block's is normalised).
            Defaults to UNETR's choice for 12 blocks (after blocks 3, 6 and 9, 0-based, and the final normalised
            output), so a UNETR checkpoint's decoder sees the maps it was trained on.
        layer_norm_eps: epsilon of every LayerNorm.
        dropout_rate, pos_embed_type: as in MONAI's ``ViT``.
    """

    def __init__(
        self,
        size: str = "small",
        spatial_dims: int = 2,
        in_channels: int = 1,
        img_size: Sequence[int] | int = 224,
        patch_size: Sequence[int] | int = 16,
        global_pool: str = "token",
        out_indices: Sequence[int] | None = None,
        layer_norm_eps: float = 1e-6,
        dropout_rate: float = 0.0,
        pos_embed_type: str = "learnable",
    ) -> None:
        check_spatial_dims("ViTBackbone", spatial_dims)
        if size not in VIT_SIZES:
            raise ValueError(f"ViTBackbone size must be one of {sorted(VIT_SIZES)}, got {size!r}.")
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}.")
        img = ensure_tuple_rep(img_size, spatial_dims)
        patch = ensure_tuple_rep(patch_size, spatial_dims)
        bad = [(i, p) for i, p in zip(img, patch) if i % p]
        if bad:
            raise ValueError(f"img_size {img} must be divisible by patch_size {patch} on every axis.")
        hidden, mlp, layers, heads = VIT_SIZES[size]
        super().__init__(
            in_channels=in_channels,
            img_size=img,
            patch_size=patch,
            hidden_size=hidden,
            mlp_dim=mlp,
            num_layers=layers,
            num_heads=heads,
            pos_embed_type=pos_embed_type,
            classification=global_pool == "token",  # MONAI creates cls_token only for classification
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
            qkv_bias=True,
        )
        if hasattr(self, "classification_head"):
            del self.classification_head
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = layer_norm_eps
        self.size = size
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.img_size = img
        self.patch_size = patch
        self.grid_size = tuple(i // p for i, p in zip(img, patch))
        self.global_pool = global_pool
        self.num_prefix_tokens = 1 if global_pool == "token" else 0
        if out_indices is None:
            step = layers // 4
            out_indices = [step * (k + 1) for k in range(3)] + [layers - 1]
        self.out_indices = [int(i) for i in out_indices]
        if not self.out_indices or max(self.out_indices) >= layers or min(self.out_indices) < 0:
            raise ValueError(f"out_indices must lie in [0, {layers}), got {self.out_indices}.")
        stride = max(patch)  # patch sizes are isotropic in the published models; stride is reported per axis
        self.feature_info = [StageInfo(f"blocks.{i}", hidden, stride) for i in self.out_indices]
        self.num_features = hidden

    def _tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the transformer and return the token sequence after every block (the last one normalised)."""
        self._check_input(x)
        if list(x.shape[2:]) != list(self.img_size):
            raise ValueError(
                f"ViT backbone was built for img_size {list(self.img_size)}, got spatial size {list(x.shape[2:])}; "
                "build it with img_size=... (pretrained position embeddings are resampled on load)."
            )
        x = self.patch_embedding(x)
        if self.global_pool == "token":
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        out: list[torch.Tensor] = []
        for blk in self.blocks:
            x = blk(x)
            out.append(x)
        out[-1] = self.norm(x)
        return out

    def _to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens[:, self.num_prefix_tokens :]
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape([b, c] + list(self.grid_size))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        hidden = self._tokens(x)
        last = len(hidden) - 1
        return [self._to_map(hidden[i] if i != last else hidden[last]) for i in self.out_indices]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens(x)[-1]
        if self.global_pool == "token":
            return tokens[:, 0]
        return tokens.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {"embed": ("patch_embedding", "cls_token")}
        for i in range(len(self.blocks)):
            stages[f"block{i}"] = (f"blocks.{i}",)
        stages["norm"] = ("norm",)
        return stages


def vit_factory(size: str, patch_size: int = 16):
    def build(spatial_dims: int = 2, in_channels: int = 1, **kwargs: Any) -> ViTBackbone:
        patch = kwargs.setdefault("patch_size", patch_size)
        # 224 (2D) and 96 (3D), rounded down to a multiple of the patch (84 for patch 14 in 3D)
        side = (224 if spatial_dims == 2 else 96) // max(ensure_tuple_rep(patch, spatial_dims))
        kwargs.setdefault("img_size", side * max(ensure_tuple_rep(patch, spatial_dims)))
        return ViTBackbone(size=size, spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)

    build.__name__ = f"vit_{size}_patch{patch_size}"
    return build
