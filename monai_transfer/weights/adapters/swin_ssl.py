"""SwinUNETR encoders: the self-supervised weights of Tang et al. (2022, arXiv:2111.14791) and SwinUNETR
checkpoints (Hatamizadeh et al., 2022, arXiv:2201.01266).

Layouts read:

* ``model_swinvit.pt`` (MONAI-extra-test-data release 0.8.1): ``{"state_dict": {"module.patch_embed.proj.weight",
  "module.layers1.0.blocks.0.norm1.weight", ..., "module.layers1.0.blocks.0.mlp.fc1.weight",
  "module.layers1.0.downsample.reduction.weight", ..., "module.norm.weight"}}``, the names MONAI's
  ``SwinUNETR.load_from`` reads. ``mlp.fc1/fc2`` become MONAI's ``mlp.linear1/linear2``; the final ``norm`` (not
  part of MONAI's ``SwinTransformer``) is dropped.
* a SwinUNETR state dict (a MONAI bundle's ``models/model.pt``, a fine-tuned checkpoint): keys under ``swinViT.``
  (or ``swin_vit.`` in older code) are the encoder; the UNETR decoder (``encoder1..10``, ``decoder1..5``, ``out``)
  is dropped.
* the ``encoder.layersN.0.0.`` layout read by ``monai.networks.nets.swin_unetr.filter_swinunetr`` (Valanarasu et
  al., 2023, arXiv:2307.16896): ``encoder.layers1.0.0.blocks...`` -> ``layers1.0.blocks...``; ``encoder.norm``,
  ``encoder.mask_token`` and the reconstruction head ``out`` are dropped.

The SSL heads of the pretraining network (``rotation_*``, ``contrastive_*``, ``conv``) are dropped as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import HEAD_PATTERNS, Adapter, matches_any, strip_prefixes

__all__ = ["map_swin_key", "SWIN_SSL"]

_PREFIXES = ("module.", "model.", "swinViT.", "swin_vit.", "encoder.", "backbone.", "_orig_mod.")
_DROP = HEAD_PATTERNS + (
    r"^norm\.",
    r"^mask_token$",
    r"^(encoder\d+|decoder\d+|out)\.",
    r"^(rotation_pre|rotation_head|contrastive_pre|contrastive_head|conv)\.",
)
_NESTED = re.compile(r"^layers(\d+)\.0\.0\.")
_SWIN_KEY = re.compile(r"^layers\d+\.0\.(?:0\.)?blocks\.\d+\.attn\.relative_position_bias_table$")


def map_swin_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """SwinUNETR(-SSL) key -> ``SwinBackbone`` key."""
    k = strip_prefixes(key, _PREFIXES)
    k = _NESTED.sub(r"layers\1.0.", k)
    if matches_any(k, _DROP):
        return None
    k = k.replace(".mlp.fc1.", ".mlp.linear1.").replace(".mlp.fc2.", ".mlp.linear2.")
    return k, value


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    return 1.0 if any(_SWIN_KEY.match(strip_prefixes(k, _PREFIXES)) for k in source) else 0.0


SWIN_SSL = Adapter(
    name="swinunetr",
    family="swin",
    description="SwinUNETR encoder: SSL model_swinvit.pt, swinViT./swin_vit. prefixes, encoder.layersN.0.0. layout",
    detect=_detect,
    map_key=map_swin_key,
    reference="Tang et al., 2022, arXiv:2111.14791; Hatamizadeh et al., 2022, arXiv:2201.01266",
)
