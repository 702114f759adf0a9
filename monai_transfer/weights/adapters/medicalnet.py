"""MedicalNet 3D ResNets (Chen, Ma & Zheng, 2019, "Med3D", arXiv:1904.00625).

The released files (``resnet_10_23dataset.pth`` ... on Hugging Face ``TencentMedicalNet/MedicalNet-Resnet{depth}``)
hold ``{"state_dict": {"module.conv1.weight", ...}}``: a DataParallel prefix in front of keys that are MONAI's
``ResNet`` keys. ResNet-10/50 use shortcut type ``"B"`` (1x1x1 convolution without bias, keys
``layerN.0.downsample.0/1``); ResNet-18/34 use shortcut type ``"A"`` (parameter-free zero-padded identity, no
downsample keys), so the backbone must be built with ``shortcut_type="A"``
(``monai_transfer.weights.sources.source_backbone_kwargs``; MONAI's ``get_medicalnet_pretrained_resnet_args``).
The segmentation head ``conv_seg`` of the training network, when present, is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import HEAD_PATTERNS, Adapter, matches_any, strip_prefixes

__all__ = ["map_medicalnet_key", "MEDICALNET"]

_DROP = HEAD_PATTERNS + (r"^conv_seg\.",)


def map_medicalnet_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """MedicalNet key -> MONAI ResNet key: strip ``module.``; drop ``conv_seg`` and ``fc``."""
    k = strip_prefixes(key)
    if matches_any(k, _DROP):
        return None
    return k, value


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k): v for k, v in source.items()}
    conv1 = keys.get("conv1.weight")
    if conv1 is None or "layer1.0.conv1.weight" not in keys or conv1.dim() != 5:
        return 0.0
    return 0.9 if any(k.startswith("module.") for k in source) else 0.7


MEDICALNET = Adapter(
    name="medicalnet",
    family="resnet",
    description="MedicalNet 3D ResNet-10/18/34/50 ({'state_dict': {'module.conv1.weight', ...}})",
    detect=_detect,
    map_key=map_medicalnet_key,
    reference="Chen et al., 2019, arXiv:1904.00625; https://github.com/Tencent/MedicalNet",
)
