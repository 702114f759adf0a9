"""The encoder of MONAI's ``SegResNetDS`` (``monai.networks.nets.segresnet_ds.SegResEncoder``; Myronenko, 2018,
arXiv:1810.11654), the network of CT-FM (Pai et al., 2025, arXiv:2501.09001) and of VISTA-3D's image encoder.

It *is* a ``SegResEncoder`` (same parameter names: ``conv_init``, ``layers.i.blocks``, ``layers.i.downsample``), so
CT-FM's ``model.safetensors`` and the encoder of a ``SegResNetDS`` checkpoint (under ``encoder.``) load directly.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets.segresnet_ds import SegResEncoder

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["SegResEncoderBackbone", "segresnet_ds_encoder"]


class SegResEncoderBackbone(BackboneMixin, SegResEncoder):
    """MONAI's ``SegResEncoder`` with the backbone surface.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        init_filters: channels of the first stage; doubles at each stage (32 in CT-FM and MONAI's default).
        blocks_down: residual blocks per stage; CT-FM uses five stages ``(1, 2, 2, 4, 4)``.
        norm, act: as in ``SegResEncoder`` (batch norm and ReLU by default, as CT-FM was trained).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        init_filters: int = 32,
        blocks_down: tuple[int, ...] = (1, 2, 2, 4, 4),
        norm: tuple | str = "batch",
        act: tuple | str = "relu",
    ) -> None:
        check_spatial_dims("SegResEncoderBackbone", spatial_dims)
        super().__init__(
            spatial_dims=spatial_dims,
            init_filters=init_filters,
            in_channels=in_channels,
            act=act,
            norm=norm,
            blocks_down=tuple(blocks_down),
        )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.feature_info = [StageInfo(f"layers.{i}", init_filters * 2**i, 2**i) for i in range(len(blocks_down))]
        self.num_features = self.feature_info[-1].channels
        self.pool = torch.nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else torch.nn.AdaptiveAvgPool2d(1)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        return self._forward(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # CT-FM's own feature head: the deepest map, average-pooled
        return torch.flatten(self.pool(self.forward_intermediates(x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {}
        for i in range(len(self.layers)):
            stages[f"layers.{i}"] = (f"layers.{i}",) if i else ("conv_init", "layers.0")
        return stages


def segresnet_ds_encoder(spatial_dims: int = 3, in_channels: int = 1, **kwargs: Any) -> SegResEncoderBackbone:
    return SegResEncoderBackbone(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
