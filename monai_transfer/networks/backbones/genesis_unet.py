"""The encoder of the 3D U-Net of Models Genesis (Zhou et al., 2019, MICCAI; arXiv:1908.06912).

Four down transitions of two convolution-norm-ReLU units each (``down_tr64`` ... ``down_tr512``: 1 -> 32 -> 64,
64 -> 64 -> 128, 128 -> 128 -> 256, 256 -> 256 -> 512 channels), a 2x max-pool after each of the first three. The
parameter names are the published ones (``down_tr64.ops.0.conv1.weight``, ``down_tr64.ops.0.bn1.running_mean``), so
``Genesis_Chest_CT.pt`` loads once its ``module.`` prefix is removed and its decoder (``up_tr*``, ``out_tr``) dropped.

One difference, on purpose: the original normalises with *batch* statistics even in eval mode (its
``ContBatchNorm3d``); this encoder uses MONAI's batch norm, which normalises with the running statistics in eval
mode, so that a fine-tuned network gives the same output for an image whatever else is in its batch.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers import Conv, Pool
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["GenesisUNetEncoder", "genesis_unet_encoder"]

_STAGES = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")


class _ConvNormAct(nn.Module):
    """Models Genesis' ``LUConv``: 3^d convolution (with bias), norm, activation; its attribute names kept."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm: str | tuple, act: str | tuple) -> None:
        super().__init__()
        self.conv1 = Conv[Conv.CONV, spatial_dims](in_ch, out_ch, kernel_size=3, padding=1)
        self.bn1 = get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=out_ch)
        self.activation = get_act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


class _DownTransition(nn.Module):
    def __init__(self, spatial_dims: int, in_ch: int, depth: int, norm: str | tuple, act: str | tuple) -> None:
        super().__init__()
        mid = 32 * 2**depth
        self.ops = nn.Sequential(
            _ConvNormAct(spatial_dims, in_ch, mid, norm, act), _ConvNormAct(spatial_dims, mid, 2 * mid, norm, act)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops(x)


class GenesisUNetEncoder(BackboneMixin, nn.Module):
    """Models Genesis' 3D U-Net encoder with the backbone surface.

    Args:
        spatial_dims: 3 (the published weights) or 2.
        in_channels: input channels (1 in the published weights).
        norm, act: MONAI norm and activation names (batch norm and ReLU, as published).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        norm: str | tuple = "batch",
        act: str | tuple = ("relu", {"inplace": True}),
    ) -> None:
        super().__init__()
        check_spatial_dims("GenesisUNetEncoder", spatial_dims)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.down_tr64 = _DownTransition(spatial_dims, in_channels, 0, norm, act)
        self.down_tr128 = _DownTransition(spatial_dims, 64, 1, norm, act)
        self.down_tr256 = _DownTransition(spatial_dims, 128, 2, norm, act)
        self.down_tr512 = _DownTransition(spatial_dims, 256, 3, norm, act)
        self.maxpool = Pool[Pool.MAX, spatial_dims](2)
        self.pool = nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.feature_info = [StageInfo(name, 64 * 2**i, 2**i) for i, name in enumerate(_STAGES)]
        self.num_features = 512

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        x64 = self.down_tr64(x)
        x128 = self.down_tr128(self.maxpool(x64))
        x256 = self.down_tr256(self.maxpool(x128))
        x512 = self.down_tr512(self.maxpool(x256))
        return [x64, x128, x256, x512]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # the published classification recipe: global average pooling of out512
        return torch.flatten(self.pool(self.forward_intermediates(x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        return {name: (name,) for name in _STAGES}


def genesis_unet_encoder(spatial_dims: int = 3, in_channels: int = 1, **kwargs: Any) -> GenesisUNetEncoder:
    return GenesisUNetEncoder(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
