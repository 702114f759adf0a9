"""The encoder of MONAI's ``SegResNet`` (Myronenko, 2018, arXiv:1810.11654).

Parameter names are SegResNet's (``convInit``, ``down_layers``), so a SegResNet checkpoint (for example the
``brats_mri_segmentation`` bundle's) loads into it directly, leaving the decoder keys unexpected.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import SegResNet

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["SegResNetBackbone"]


class SegResNetBackbone(BackboneMixin, SegResNet):
    """SegResNet's initial convolution and down path; the decoder is removed.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        init_filters: channels of the first stage (16 in MONAI's BraTS bundle); doubles at each stage.
        blocks_down: residual blocks per stage.
        norm, act, dropout_prob: as in MONAI's ``SegResNet``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        init_filters: int = 16,
        blocks_down: tuple[int, ...] = (1, 2, 2, 4),
        norm: tuple | str = ("GROUP", {"num_groups": 8}),
        act: tuple | str = ("RELU", {"inplace": True}),
        dropout_prob: float | None = None,
    ) -> None:
        check_spatial_dims("SegResNetBackbone", spatial_dims)
        super().__init__(
            spatial_dims=spatial_dims,
            init_filters=init_filters,
            in_channels=in_channels,
            out_channels=1,
            dropout_prob=dropout_prob,
            act=act,
            norm=norm,
            blocks_down=blocks_down,
            blocks_up=(1,) * (len(blocks_down) - 1),
        )
        del self.up_layers, self.up_samples, self.conv_final  # the decoder belongs to a decoder head
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.feature_info = [StageInfo(f"down_layers.{i}", init_filters * 2**i, 2**i) for i in range(len(blocks_down))]
        self.num_features = self.feature_info[-1].channels
        self.pool = torch.nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else torch.nn.AdaptiveAvgPool2d(1)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        return self.encode(x)[1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.act_mod(self.forward_intermediates(x)[-1])), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {}
        for i in range(len(self.down_layers)):
            stages[f"down_layers.{i}"] = (f"down_layers.{i}",) if i else ("convInit", "down_layers.0")
        return stages


def segresnet_encoder(spatial_dims: int = 3, in_channels: int = 1, **kwargs: Any) -> SegResNetBackbone:
    return SegResNetBackbone(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
