"""The encoder of MONAI's ``UNet`` (Ronneberger et al., 2015, arXiv:1505.04597; Kerfoot et al., 2018, residual units),
the network of the model zoo's ``spleen_ct_segmentation`` and of many other bundles.

MONAI's ``UNet`` nests its encoder inside ``SkipConnection`` modules (``model.0``, ``model.1.submodule.0``,
``model.1.submodule.1.submodule.0`` ...), interleaved with the decoder. Here the same units are built the same way and
kept flat: ``down_layers.i`` for the strided units and ``bottom`` for the stride-1 bottleneck; the ``monai-unet``
checkpoint adapter maps the nested names onto them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["UNetEncoder", "unet_encoder"]


class UNetEncoder(BackboneMixin, nn.Module):
    """The down path and bottleneck of ``monai.networks.nets.UNet``, with the backbone surface.

    The stages are the strided units, the last one followed by the bottleneck (whose output, at the same resolution,
    is that stage's map): with ``channels=(16, 32, 64, 128, 256)`` and ``strides=(2, 2, 2, 2)`` the maps have 16, 32,
    64 and 256 channels at strides 2, 4, 8 and 16.

    Args:
        spatial_dims, in_channels, channels, strides, kernel_size, num_res_units, act, norm, dropout, bias,
            adn_ordering: as in ``monai.networks.nets.UNet`` (same defaults).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2, 2),
        kernel_size: int = 3,
        num_res_units: int = 0,
        act: tuple | str = "PRELU",
        norm: tuple | str = "INSTANCE",
        dropout: float = 0.0,
        bias: bool = True,
        adn_ordering: str = "NDA",
    ) -> None:
        super().__init__()
        check_spatial_dims("UNetEncoder", spatial_dims)
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if len(channels) < 2 or len(strides) != len(channels) - 1:
            raise ValueError(
                f"UNetEncoder needs at least two channels and one stride fewer than channels, got channels={channels}, "
                f"strides={strides}."
            )
        args = dict(kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias, adn_ordering=adn_ordering)

        def unit(c_in: int, c_out: int, stride: int) -> nn.Module:  # UNet._get_down_layer
            if num_res_units > 0:
                return ResidualUnit(spatial_dims, c_in, c_out, strides=stride, subunits=num_res_units, **args)
            return Convolution(spatial_dims, c_in, c_out, strides=stride, **args)

        ins = (in_channels,) + channels[:-2]
        self.down_layers = nn.ModuleList([unit(i, o, s) for i, o, s in zip(ins, channels[:-1], strides)])
        self.bottom = unit(channels[-2], channels[-1], 1)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        total, info = 1, []
        for i, s in enumerate(strides):
            total *= s
            info.append(StageInfo(f"down_layers.{i}", channels[i] if i < len(strides) - 1 else channels[-1], total))
        self.feature_info = info
        self.num_features = channels[-1]
        self.pool = nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        out: list[torch.Tensor] = []
        for layer in self.down_layers:
            x = layer(x)
            out.append(x)
        out[-1] = self.bottom(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.forward_intermediates(x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        last = len(self.down_layers) - 1
        return {f"down_layers.{i}": (f"down_layers.{i}",) + (("bottom",) if i == last else ()) for i in range(last + 1)}


def unet_encoder(spatial_dims: int = 3, in_channels: int = 1, **kwargs: Any) -> UNetEncoder:
    return UNetEncoder(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
