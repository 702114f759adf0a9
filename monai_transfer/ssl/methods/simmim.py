"""SimMIM: masked image modelling with a one-layer head (Xie, Zhang, Cao, Lin, Bao, Yao, Dai and Hu, "SimMIM: A
Simple Framework for Masked Image Modeling", CVPR 2022, arXiv:2111.09886), for Swin and CNN encoders in 2D and 3D.

Masked patches are replaced by a learned mask token, the encoder runs on the whole image, a 1x1 convolution and a
pixel shuffle predict the raw pixels from the deepest map, and the loss is the L1 error on the masked pixels only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.networks.nets.swin_unetr import SwinTransformer
from torch import nn

from monai_transfer.ssl.base import SSLMethod
from monai_transfer.ssl.reconstruction_heads import SimMIMHead, check_mask, check_pyramid_backbone, expand_mask

__all__ = ["SimMIM"]


class SimMIM(SSLMethod):
    """SimMIM pretraining of a Swin or CNN backbone.

    Batch keys: ``image`` ``(B, C, *roi)`` and ``mask`` ``(B, 1, *grid)`` (1 = masked patch, ``grid = roi //
    mask_patch_size``; the paper masks 60 % of 32-pixel patches).

    Where the mask token goes:

    * **Swin** (the paper): a learned ``embed_dim`` vector replaces the masked tokens at the patch-embedding output,
      before the first Swin stage. The mask patch size must be a multiple of the Swin patch size.
    * **CNN** (ResNet, DenseNet, EfficientNet, SegResNet): a convolution has no tokens, so the mask token is a learned
      per-channel value that replaces the masked pixels of the input. This is the adaptation of the dense CNN
      masked-image-modelling baselines (masked pixels set to a constant; here a learned one), not the paper's
      token: the CNN sees the mask boundaries, which a sparse encoder would not.

    Args:
        backbone: a registry backbone with a feature pyramid (CNN or Swin).
        feature_index: the stage the head reads (``-1``: the deepest, as the paper). A shallower stage makes the
            head smaller (fewer pixels per feature) but leaves the deeper stages without gradient (under DDP, wrap
            with ``find_unused_parameters=True``).

    ``forward`` returns ``{"loss", "reconstruction"}`` (the masked-pixel L1, detached).
    """

    method_name = "simmim"

    def __init__(self, backbone: nn.Module, feature_index: int = -1) -> None:
        check_pyramid_backbone(backbone, "SimMIM")
        super().__init__(backbone)
        self.view_keys = ("image", "mask")
        self.spatial_dims = int(backbone.spatial_dims)
        self.in_channels = int(backbone.in_channels)
        info = list(backbone.feature_info)
        if not -len(info) <= feature_index < len(info):
            raise ValueError(f"feature_index must index one of the {len(info)} stages, got {feature_index}.")
        self.feature_index = feature_index % len(info)
        self.stride = int(info[self.feature_index].stride)
        self.token_space = "patch_embedding" if isinstance(backbone, SwinTransformer) else "input"
        one = [1] * self.spatial_dims
        if self.token_space == "patch_embedding":
            self.patch_stride = int(info[0].stride)
            self.mask_token = nn.Parameter(torch.zeros([1, int(info[0].channels)] + one))
            nn.init.trunc_normal_(self.mask_token, std=0.02)  # as the paper's mask token
        else:
            self.patch_stride = 1
            self.mask_token = nn.Parameter(torch.zeros([1, self.in_channels] + one))
        self.head = SimMIMHead(self.spatial_dims, int(info[self.feature_index].channels), self.in_channels, self.stride)

    # -- parts ---------------------------------------------------------------------------------------------------
    def pixel_mask(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The patch mask ``(B, 1, *grid)`` at image resolution ``(B, 1, *roi)``, as a float in the image's dtype."""
        patch = check_mask(mask, image, "SimMIM")
        return expand_mask((mask > 0.5).to(image.dtype), patch)

    def _encode_masked(self, image: torch.Tensor, mask: torch.Tensor, pixel_mask: torch.Tensor) -> list[torch.Tensor]:
        if self.token_space == "input":
            x = image * (1 - pixel_mask) + self.mask_token.to(image.dtype) * pixel_mask
            return self.backbone.forward_intermediates(x)
        patch = [r // g for r, g in zip(image.shape[2:], mask.shape[2:])]
        if any(p % self.patch_stride for p in patch):
            raise ValueError(
                f"SimMIM with a Swin encoder needs mask patches {patch} that are multiples of the Swin patch size "
                f"{self.patch_stride}: the mask token replaces whole patch tokens."
            )
        token_mask = expand_mask((mask > 0.5).to(image.dtype), [p // self.patch_stride for p in patch])

        def replace_masked(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            m = token_mask.to(out.dtype)
            return out * (1 - m) + self.mask_token.to(out.dtype) * m

        # a hook for this call only: the backbone's own forward (checks, v2 blocks, normalisation) stays in charge,
        # and the exported encoder carries no trace of the method
        handle = self.backbone.patch_embed.register_forward_hook(replace_masked)
        try:
            return self.backbone.forward_intermediates(image)
        finally:
            handle.remove()

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The reconstructed image ``(B, C, *roi)`` from the masked input."""
        for s in image.shape[2:]:
            if s % self.stride:
                raise ValueError(
                    f"SimMIM needs image sizes divisible by the stride {self.stride} of the stage the head reads, "
                    f"got {tuple(image.shape[2:])}."
                )
        features = self._encode_masked(image, mask, self.pixel_mask(image, mask))
        return self.head(features[self.feature_index])

    def reconstruction_loss(self, pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L1 over the masked pixels, divided by the masked count and the channels (the paper's normalisation).

        Args:
            pred: ``(B, C, *roi)`` from ``predict``.
            image: the target ``(B, C, *roi)``.
            mask: the patch mask ``(B, 1, *grid)``.
        """
        if pred.shape != image.shape:
            raise ValueError(f"SimMIM prediction {tuple(pred.shape)} and image {tuple(image.shape)} differ in shape.")
        m = self.pixel_mask(image, mask).float()
        l1 = (pred.float() - image.float()).abs()
        return (l1 * m).sum() / (m.sum() + 1e-5) / self.in_channels

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        image, mask = batch["image"], batch["mask"]
        loss = self.reconstruction_loss(self.predict(image, mask), image, mask)
        return {"loss": loss, "reconstruction": loss.detach()}
