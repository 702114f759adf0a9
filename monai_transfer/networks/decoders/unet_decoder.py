"""A UNet-style segmentation decoder over the multi-scale maps of any CNN or Swin backbone.

The layout follows the decoders of SwinUNETR (Hatamizadeh et al., 2022, arXiv:2201.01266) and UNETR
(Hatamizadeh et al., 2022, arXiv:2103.10504), themselves the U-Net of Ronneberger et al. (2015, arXiv:1505.04597)
with the residual blocks of nnU-Net/DynUNet (Isensee et al., 2021, arXiv:1809.10486):

* a **stem** residual block on the raw image gives the stride-1 skip;
* every backbone stage map is a skip; where its channels differ from the decoder width at that level it is
  projected by a residual 1x1 block (``UnetResBlock``), otherwise it is used as it is;
* from the deepest stage, each **up block** upsamples by the stride ratio between consecutive stages with a
  transposed convolution (kernel = stride = ratio; a ratio of 1 gives a 1x1 convolution), concatenates the skip
  and fuses with a residual block (MONAI's ``UnetrUpBlock`` layout: ``transp_conv`` then ``conv_block``);
* an ``UnetOutBlock`` (1x1 convolution) gives ``out_channels`` logits at the input resolution.

It works for any backbone whose stage strides are non-decreasing powers of 2 (consecutive ratios 1, 2, 4 ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import UnetOutBlock, UnetResBlock
from monai.networks.blocks.dynunet_block import get_conv_layer
from torch import nn

from monai_transfer.networks.base import StageInfo, check_spatial_dims

__all__ = ["UNetDecoder", "UpBlock", "parse_feature_info"]

_DEFAULT_ACT: tuple = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


def parse_feature_info(feature_info: Sequence[Any]) -> list[StageInfo]:
    """Normalise a backbone's ``feature_info`` given as ``StageInfo``, dicts or ``(channels, stride)`` pairs.

    The dict and pair forms let a bundle config spell the stages out in JSON.
    """
    stages: list[StageInfo] = []
    for i, item in enumerate(feature_info):
        if isinstance(item, StageInfo):
            stages.append(item)
        elif isinstance(item, dict):
            stages.append(StageInfo(str(item.get("name", f"stage{i}")), int(item["channels"]), int(item["stride"])))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            stages.append(StageInfo(f"stage{i}", int(item[0]), int(item[1])))
        else:
            raise ValueError(
                f"feature_info[{i}] must be a StageInfo, a dict or a (channels, stride) pair, got {item!r}."
            )
    if not stages:
        raise ValueError("feature_info is empty: a decoder needs at least one stage.")
    return stages


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def check_decoder_inputs(x: torch.Tensor, num_features: int, num_stages: int, max_stride: int, name: str) -> None:
    """Shared by the decoders (TorchScript-compatible): one map per stage, input sizes divisible by the deepest
    stride, so that every upsampling lands exactly on its skip."""
    if num_features != num_stages:
        raise ValueError(f"{name} expects {num_stages} feature maps, got {num_features}.")
    for size in x.shape[2:]:
        if size % max_stride != 0:
            raise ValueError(f"{name} needs input sizes divisible by the deepest stride {max_stride}, got {x.shape}.")


class UpBlock(nn.Module):
    """Upsample by ``ratio``, concatenate a skip with ``out_channels`` channels, fuse with a residual block.

    Same submodule names as MONAI's ``UnetrUpBlock`` (``transp_conv``, ``conv_block``), with the activation and
    dropout of the decoder configurable, and ``ratio=1`` allowed (a 1x1 convolution, for stages at equal stride).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        ratio: int,
        kernel_size: int = 3,
        norm: str | tuple = "instance",
        act: str | tuple = _DEFAULT_ACT,
        dropout: float | tuple | str | None = None,
    ) -> None:
        super().__init__()
        self.transp_conv = get_conv_layer(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=ratio,
            stride=ratio,
            conv_only=True,
            is_transposed=ratio > 1,
        )
        self.conv_block = UnetResBlock(
            spatial_dims,
            out_channels * 2,
            out_channels,
            kernel_size=kernel_size,
            stride=1,
            norm_name=norm,
            act_name=act,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat((self.transp_conv(x), skip), dim=1))


class UNetDecoder(nn.Module):
    """UNet-style decoder with skip connections over ``backbone.forward_intermediates(x)``.

    Called as ``decoder(x, features)`` with the input image ``x`` ``(B, in_channels, *spatial)`` and the stage maps
    ``features`` (shallow to deep, each ``(B, channels_i, *spatial / stride_i)``); returns logits
    ``(B, out_channels, *spatial)``. Input sizes must be divisible by the deepest stride.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image (for the stem block).
        out_channels: number of output channels (segmentation classes, background included).
        feature_info: the backbone's ``feature_info`` (``StageInfo``, dicts or ``(channels, stride)`` pairs);
            strides must be non-decreasing powers of 2.
        feature_size: sets the default widths: stage ``i`` gets ``min(channels_i, feature_size * stride_i,
            16 * feature_size)`` (a pyramid doubling with the stride, as U-Net), the stem ``feature_size``.
        decoder_channels: decoder width at each stage, shallow to deep (overrides the ``feature_size`` rule).
        stem_channels: width of the stride-1 stem and of the last up block (default ``feature_size``).
        skip_kernel_size: kernel of the residual block projecting a skip whose channels differ (1 by default).
        kernel_size: kernel of the residual convolution blocks.
        norm: normalisation (MONAI name or ``(name, kwargs)``); instance norm as SwinUNETR and UNETR.
        act: activation (MONAI name or ``(name, kwargs)``); leaky ReLU as nnU-Net.
        dropout: dropout after the convolutions of the residual blocks (MONAI's ``UnetResBlock``); never on the logits.

    Note:
        With instance norm, an input whose deepest map is a single voxel raises, in training and in evaluation
        (PyTorch's instance norm needs more than one spatial element): use inputs of at least twice the deepest
        stride per axis, or ``norm="batch"``.
    """

    __constants__ = ["needs_features", "num_stages", "max_stride"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        feature_info: Sequence[Any],
        feature_size: int = 16,
        decoder_channels: Sequence[int] | None = None,
        stem_channels: int | None = None,
        skip_kernel_size: int = 1,
        kernel_size: int = 3,
        norm: str | tuple = "instance",
        act: str | tuple = _DEFAULT_ACT,
        dropout: float | tuple | str | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims("UNetDecoder", spatial_dims)
        stages = parse_feature_info(feature_info)
        strides = [s.stride for s in stages]
        if not all(_is_power_of_two(s) for s in strides):
            raise ValueError(f"UNetDecoder needs stage strides that are powers of 2, got {strides}.")
        if any(b < a for a, b in zip(strides[:-1], strides[1:])):
            raise ValueError(f"UNetDecoder needs non-decreasing stage strides (shallow to deep), got {strides}.")
        if decoder_channels is None:
            decoder_channels = [min(s.channels, feature_size * s.stride, 16 * feature_size) for s in stages]
        decoder_channels = [int(c) for c in decoder_channels]
        if len(decoder_channels) != len(stages):
            raise ValueError(f"decoder_channels needs one width per stage ({len(stages)}), got {decoder_channels}.")
        if stem_channels is None:
            stem_channels = feature_size
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.feature_info = stages
        self.decoder_channels = decoder_channels
        self.feature_size = feature_size
        self.stem_channels = int(stem_channels)
        self.needs_features = True
        self.num_stages = len(stages)
        self.max_stride = max(strides)

        block = {"norm_name": norm, "act_name": act, "dropout": dropout}
        self.stem = UnetResBlock(spatial_dims, in_channels, self.stem_channels, kernel_size, 1, **block)
        self.skips = nn.ModuleList(
            [
                (
                    nn.Identity()
                    if s.channels == c
                    else UnetResBlock(spatial_dims, s.channels, c, skip_kernel_size, 1, **block)
                )
                for s, c in zip(stages, decoder_channels)
            ]
        )
        # up_blocks[k] brings stage (n-1-k) up to stage (n-2-k); the last one to the stem at stride 1
        widths = [self.stem_channels] + decoder_channels
        all_strides = [1] + strides
        ups = []
        for i in range(len(stages), 0, -1):
            ups.append(
                UpBlock(
                    spatial_dims,
                    widths[i],
                    widths[i - 1],
                    all_strides[i] // all_strides[i - 1],
                    kernel_size=kernel_size,
                    norm=norm,
                    act=act,
                    dropout=dropout,
                )
            )
        self.up_blocks = nn.ModuleList(ups)
        self.out = UnetOutBlock(spatial_dims, self.stem_channels, out_channels)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        check_decoder_inputs(x, len(features), self.num_stages, self.max_stride, "UNetDecoder")
        skips: list[torch.Tensor] = [self.stem(x)]
        for i, proj in enumerate(self.skips):
            skips.append(proj(features[i]))
        out = skips[-1]
        for k, up in enumerate(self.up_blocks):
            out = up(out, skips[self.num_stages - 1 - k])
        return self.out(out)
