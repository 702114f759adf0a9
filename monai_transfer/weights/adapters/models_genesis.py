"""Models Genesis' 3D U-Net (Zhou et al., 2019, MICCAI; arXiv:1908.06912): ``Genesis_Chest_CT.pt``.

The published file is ``{"state_dict": {"module.down_tr64.ops.0.conv1.weight", ...}}`` (saved from a
``DataParallel``). The encoder's names are ours (``monai_transfer.networks.backbones.genesis_unet``); ``module.`` is
removed and the decoder (``up_tr256``, ``up_tr128``, ``up_tr64``, ``out_tr``) is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter, strip_prefixes

__all__ = ["map_genesis_key", "MODELS_GENESIS"]

_DECODER = re.compile(r"^(up_tr\d+|out_tr)\.")


def map_genesis_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """Models Genesis key -> encoder key (``module.`` removed), or None for the decoder."""
    k = strip_prefixes(key, ("module.",))
    return None if _DECODER.match(k) else (k, value)


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k, ("module.",)) for k in source}
    return 1.0 if "down_tr64.ops.0.conv1.weight" in keys else 0.0


MODELS_GENESIS = Adapter(
    name="models-genesis",
    family="genesis_unet",
    description="Models Genesis 3D U-Net (Genesis_Chest_CT.pt): module. removed, decoder (up_tr*, out_tr) dropped",
    detect=_detect,
    map_key=map_genesis_key,
    reference="Zhou et al., 2019, arXiv:1908.06912; https://github.com/MrGiovanni/ModelsGenesis",
)
