"""The Swin transformer encoder of SwinUNETR (Hatamizadeh et al., 2022, arXiv:2201.01266; Tang et al., 2022,
arXiv:2111.14791 for its self-supervised weights), over MONAI's ``SwinTransformer``.

Parameter names are those of ``SwinUNETR.swinViT``, so a SwinUNETR checkpoint loads after stripping ``swinViT.``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets.swin_unetr import SwinTransformer
from monai.utils import ensure_tuple_rep

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["SwinBackbone"]


class SwinBackbone(BackboneMixin, SwinTransformer):
    """SwinUNETR's encoder: patch embedding then four Swin stages, each ending in patch merging.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        feature_size: embedding size (48 for the published SwinUNETR and its SSL weights).
        depths, num_heads, window_size, patch_size, mlp_ratio, drop_path_rate, use_checkpoint: as in SwinUNETR.
        normalize: layer-normalise each stage output, as SwinUNETR's decoder input does.

    Input sizes must be divisible by ``patch_size * 2**4`` (32 by default).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        feature_size: int = 48,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] | int = 7,
        patch_size: int = 2,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
        normalize: bool = True,
    ) -> None:
        check_spatial_dims("SwinBackbone", spatial_dims)
        super().__init__(
            in_chans=in_channels,
            embed_dim=feature_size,
            window_size=ensure_tuple_rep(window_size, spatial_dims),
            patch_size=ensure_tuple_rep(patch_size, spatial_dims),
            depths=depths,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path_rate=drop_path_rate,
            use_checkpoint=use_checkpoint,
            spatial_dims=spatial_dims,
        )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.normalize = normalize
        self.feature_info = [StageInfo("patch_embed", feature_size, patch_size)] + [
            StageInfo(f"layers{i + 1}", feature_size * 2 ** (i + 1), patch_size * 2 ** (i + 1)) for i in range(4)
        ]
        self.num_features = self.feature_info[-1].channels  # MONAI's attribute omits the last merging
        self.divisor = patch_size * 2**4

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        for s in x.shape[2:]:
            if s % self.divisor != 0:
                raise ValueError(f"Swin backbone needs spatial sizes divisible by {self.divisor}, got shape {x.shape}.")
        return SwinTransformer.forward(self, x, self.normalize)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        last = self.forward_intermediates(x)[-1]
        return torch.flatten(last, 2).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {"patch_embed": ("patch_embed",)}
        for i in range(4):
            stages[f"layers{i + 1}"] = (f"layers{i + 1}",)
        return stages


def swin_unetr_encoder(spatial_dims: int = 3, in_channels: int = 1, **kwargs: Any) -> SwinBackbone:
    return SwinBackbone(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
