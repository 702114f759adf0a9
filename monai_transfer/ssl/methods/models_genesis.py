"""Models Genesis: learn by restoring corrupted images (Zhou, Sodha, Pang, Gotway and Liang, "Models Genesis",
Medical Image Analysis 67:101840, 2021, arXiv:2004.07882; MICCAI 2019, arXiv:1908.06912).

The data pipeline corrupts each image (non-linear intensity transformation, local pixel shuffling, in- or
out-painting); an encoder-decoder restores the original, trained with the mean squared error (the paper's L2).
``export_encoder`` returns the encoder; the restoration decoder stays with the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_transfer.networks.decoders import create_decoder
from monai_transfer.ssl.base import SSLMethod
from monai_transfer.ssl.reconstruction_heads import check_pyramid_backbone

__all__ = ["ModelsGenesis"]


class ModelsGenesis(SSLMethod):
    """Image restoration pretraining of a CNN or Swin encoder with a UNet decoder over its feature pyramid.

    Batch keys: ``image_v1`` (the corrupted input) and ``image`` (the restoration target), both ``(B, C, *roi)``
    with ``roi`` divisible by the backbone's deepest stride.

    Args:
        backbone: a registry backbone with a feature pyramid (CNN or Swin).
        sigmoid: squash the restoration into [0, 1], as the paper's network (its inputs are scaled to [0, 1]); set
            False for targets outside [0, 1].
        decoder_feature_size: ``feature_size`` of the ``UNetDecoder`` (its widths follow the strides from it).
        decoder_norm: normalisation of the decoder blocks (instance, as SwinUNETR's decoder; it needs a deepest map
            of more than one voxel in training, use ``"batch"`` for smaller inputs).
        decoder_kwargs: further ``UNetDecoder`` options (``decoder_channels``, ``act``, ``dropout`` ...).

    ``forward`` returns ``{"loss", "reconstruction"}`` (the MSE, detached).

    Note:
        The paper's decoder is the 3D U-Net's own; here it is ``monai_transfer.networks.decoders.UNetDecoder``, the
        decoder that fine-tuning attaches, so any registry CNN or Swin encoder can be pretrained. The decoder ends in
        the 1x1 convolution to ``C`` channels.
    """

    method_name = "models_genesis"

    def __init__(
        self,
        backbone: nn.Module,
        sigmoid: bool = True,
        decoder_feature_size: int = 16,
        decoder_norm: str | tuple = "instance",
        decoder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_pyramid_backbone(backbone, "ModelsGenesis")
        super().__init__(backbone)
        self.view_keys = ("image_v1", "image")
        self.sigmoid = bool(sigmoid)
        channels = int(backbone.in_channels)
        self.decoder = create_decoder(
            int(backbone.spatial_dims),
            channels,
            channels,
            backbone.feature_info,
            kind="unet",
            feature_size=decoder_feature_size,
            norm=decoder_norm,
            **(decoder_kwargs or {}),
        )

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """The restored image ``(B, C, *roi)`` of a corrupted one."""
        out = self.decoder(x, self.backbone.forward_intermediates(x))
        return torch.sigmoid(out) if self.sigmoid else out

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        corrupted, target = batch["image_v1"], batch["image"]
        if corrupted.shape != target.shape:
            raise ValueError(
                f"ModelsGenesis needs image_v1 and image of the same shape, got {tuple(corrupted.shape)} and "
                f"{tuple(target.shape)}."
            )
        loss = F.mse_loss(self.restore(corrupted).float(), target.float())
        return {"loss": loss, "reconstruction": loss.detach()}
