"""open_clip models whose vision tower is a timm ViT (``TimmModel``), such as BiomedCLIP (Zhang et al., 2023,
arXiv:2303.00915; ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).

``open_clip_pytorch_model.bin`` holds the whole CLIP model::

    visual.trunk.*        the timm ViT (read by the timm-vit key map: patch_embed, blocks, norm, cls_token, pos_embed)
    visual.head.proj.*    the image projection into the joint embedding            -> dropped
    text.*                the text tower (PubMedBERT)                               -> dropped
    logit_scale           the contrastive temperature                               -> dropped
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter
from monai_transfer.weights.adapters.timm_vit import finalize_timm_vit, map_timm_vit_key

__all__ = ["map_open_clip_key", "OPEN_CLIP_TIMM_VIT"]

_TRUNK = "visual.trunk."


def map_open_clip_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """open_clip key -> MONAI ViT key for the vision trunk; None for the text tower, projections and temperature."""
    k = key[len("module.") :] if key.startswith("module.") else key
    if not k.startswith(_TRUNK):
        return None
    return map_timm_vit_key(k[len(_TRUNK) :], value)


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {k[len("module.") :] if k.startswith("module.") else k for k in source}
    return 1.6 if _TRUNK + "patch_embed.proj.weight" in keys else 0.0


OPEN_CLIP_TIMM_VIT = Adapter(
    name="open-clip-timm-vit",
    family="vit",
    description="open_clip CLIP with a timm ViT image tower (BiomedCLIP): visual.trunk.* kept, text tower and "
    "projections dropped",
    detect=_detect,
    map_key=map_open_clip_key,
    finalize=finalize_timm_vit,
    reference="https://github.com/mlfoundations/open_clip; Zhang et al., 2023, arXiv:2303.00915",
)
