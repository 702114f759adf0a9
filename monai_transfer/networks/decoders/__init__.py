"""Segmentation decoders over a backbone's ``forward_intermediates`` and a factory choosing one.

Decoder protocol: a decoder has ``needs_features = True`` and is called as ``decoder(x, features)`` with the input
image and the list of stage maps (shallow to deep); it returns logits at the input resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from monai_transfer.networks.decoders.unet_decoder import UNetDecoder, UpBlock, parse_feature_info
from monai_transfer.networks.decoders.unetr_decoder import UNETRDecoder

__all__ = ["UNetDecoder", "UNETRDecoder", "UpBlock", "create_decoder", "decoder_kind", "parse_feature_info"]

DECODERS: dict[str, type[nn.Module]] = {"unet": UNetDecoder, "unetr": UNETRDecoder}


def decoder_kind(feature_info: Sequence[Any]) -> str:
    """``"unetr"`` when every stage has the same stride (a plain ViT's token maps), else ``"unet"``."""
    strides = {s.stride for s in parse_feature_info(feature_info)}
    return "unetr" if len(strides) == 1 and len(feature_info) > 1 else "unet"


def create_decoder(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    feature_info: Sequence[Any],
    kind: str = "auto",
    **kwargs: Any,
) -> nn.Module:
    """Build the segmentation decoder that fits a backbone's ``feature_info``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image.
        out_channels: number of output channels.
        feature_info: the backbone's ``feature_info`` (``StageInfo``, dicts or ``(channels, stride)`` pairs, so a
            bundle config can spell it out).
        kind: ``"auto"`` (``decoder_kind(feature_info)``), ``"unet"`` (``UNetDecoder``) or ``"unetr"``
            (``UNETRDecoder``).
        kwargs: passed to the decoder (e.g. ``decoder_channels`` for UNet, ``feature_size`` for UNETR).
    """
    if kind == "auto":
        kind = decoder_kind(feature_info)
    if kind not in DECODERS:
        raise ValueError(f"decoder kind must be 'auto' or one of {sorted(DECODERS)}, got {kind!r}.")
    return DECODERS[kind](
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        feature_info=feature_info,
        **kwargs,
    )
