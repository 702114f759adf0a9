"""A UNETR decoder for plain ViT backbones (Hatamizadeh et al., 2022, "UNETR: Transformers for 3D Medical Image
Segmentation", arXiv:2103.10504).

A ViT yields token maps that are all at the patch stride (16). UNETR turns the shallower ones into a pyramid:
with four maps at stride 16, maps 0, 1, 2 are upsampled by ``UnetrPrUpBlock`` to strides 2, 4 and 8, the deepest
map starts the up path (``UnetrUpBlock``, x2 each), and an ``UnetrBasicBlock`` on the raw image is the stride-1
skip; an ``UnetOutBlock`` gives the logits. All blocks are MONAI's, configured as in ``monai.networks.nets.UNETR``.

Key map from a MONAI ``UNETR`` checkpoint (four maps, patch 16): ``encoder1`` -> ``stem``, ``encoder2/3/4`` ->
``skips.0/1/2``, ``decoder5/4/3/2`` -> ``up_blocks.0/1/2/3``, ``out`` -> ``out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import nn

from monai_transfer.networks.base import check_spatial_dims
from monai_transfer.networks.decoders.unet_decoder import _is_power_of_two, check_decoder_inputs, parse_feature_info

__all__ = ["UNETRDecoder"]


class UNETRDecoder(nn.Module):
    """UNETR decoder over the equal-stride token maps of ``ViTBackbone.forward_intermediates``.

    With ``n`` maps at patch stride ``P = 2**k`` (``k >= n``), map ``j < n - 1`` becomes a skip at stride
    ``2**(j + 1)`` with ``feature_size * 2**(j + 1)`` channels; the deepest map is upsampled by ``P / 2**(n - 1)``
    and then by 2 at each level. For the usual four maps at stride 16 this is exactly UNETR.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image (for the stride-1 stem).
        out_channels: number of output channels (segmentation classes, background included).
        feature_info: the backbone's ``feature_info`` (all stages with the same channels and stride).
        feature_size: width of the stem; level ``l`` has ``feature_size * 2**l`` channels (16 in UNETR).
        norm: normalisation (MONAI name or ``(name, kwargs)``), instance norm as UNETR.
        conv_block: use convolution blocks after each transposed convolution of the skip pyramid (UNETR: True).
        res_block: use residual blocks (UNETR: True).

    MONAI's UNETR blocks fix their activation (leaky ReLU) and have no dropout; regularise the ViT instead
    (``backbone_kwargs={"dropout_rate": ...}``).
    """

    __constants__ = ["needs_features", "num_stages", "max_stride"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        feature_info: Sequence[Any],
        feature_size: int = 16,
        norm: str | tuple = "instance",
        conv_block: bool = True,
        res_block: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims("UNETRDecoder", spatial_dims)
        stages = parse_feature_info(feature_info)
        n = len(stages)
        hidden, patch = stages[0].channels, stages[0].stride
        if any(s.channels != hidden or s.stride != patch for s in stages):
            raise ValueError(f"UNETRDecoder needs maps of equal channels and stride (a ViT), got {stages}.")
        if n < 2:
            raise ValueError("UNETRDecoder needs at least two token maps (one skip and the deepest).")
        if not _is_power_of_two(patch) or patch < 2**n:
            raise ValueError(
                f"UNETRDecoder needs a power-of-2 patch stride of at least 2**{n} for {n} maps, got {patch}; "
                "take fewer maps (the backbone's out_indices) or a larger patch."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.feature_info = stages
        self.feature_size = feature_size
        self.needs_features = True
        self.num_stages = n
        self.max_stride = patch
        self.stem = UnetrBasicBlock(
            spatial_dims, in_channels, feature_size, kernel_size=3, stride=1, norm_name=norm, res_block=res_block
        )
        # map j -> stride 2**(j+1): (k - j - 1) x2-upsamplings, i.e. one initial transposed conv + num_layer more
        k = patch.bit_length() - 1
        self.skips = nn.ModuleList(
            [
                UnetrPrUpBlock(
                    spatial_dims,
                    hidden,
                    feature_size * 2 ** (j + 1),
                    num_layer=k - j - 2,
                    kernel_size=3,
                    stride=1,
                    upsample_kernel_size=2,
                    norm_name=norm,
                    conv_block=conv_block,
                    res_block=res_block,
                )
                for j in range(n - 1)
            ]
        )
        ups = [
            UnetrUpBlock(
                spatial_dims,
                hidden,
                feature_size * 2 ** (n - 1),
                kernel_size=3,
                upsample_kernel_size=patch // 2 ** (n - 1),
                norm_name=norm,
                res_block=res_block,
            )
        ]
        for level in range(n - 1, 0, -1):
            ups.append(
                UnetrUpBlock(
                    spatial_dims,
                    feature_size * 2**level,
                    feature_size * 2 ** (level - 1),
                    kernel_size=3,
                    upsample_kernel_size=2,
                    norm_name=norm,
                    res_block=res_block,
                )
            )
        self.up_blocks = nn.ModuleList(ups)
        self.out = UnetOutBlock(spatial_dims, feature_size, out_channels)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        check_decoder_inputs(x, len(features), self.num_stages, self.max_stride, "UNETRDecoder")
        skips: list[torch.Tensor] = [self.stem(x)]
        for j, block in enumerate(self.skips):
            skips.append(block(features[j]))
        out = features[self.num_stages - 1]
        for k, up in enumerate(self.up_blocks):
            out = up(out, skips[self.num_stages - 1 - k])
        return self.out(out)
