"""torchvision ResNet and DenseNet checkpoints (``https://download.pytorch.org/models/...``).

* ResNet (He et al., 2016, arXiv:1512.03385): torchvision's names are MONAI's (``conv1``, ``bn1``,
  ``layerN.M.conv1``, ``layerN.M.downsample.0/1``); only the classifier ``fc`` is dropped.
* DenseNet (Huang et al., 2017, arXiv:1608.06993): torchvision's ``denselayerN.norm1`` (and the pre-0.4 names
  ``denselayerN.norm.1`` still found in its published files) become MONAI's ``denselayerN.layers.norm1``; the
  ``classifier`` is dropped. Transition layers and ``norm0``/``norm5`` already agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import HEAD_PATTERNS, Adapter, matches_any, strip_prefixes

__all__ = ["map_resnet_key", "map_densenet_key", "is_resnet_layout", "is_densenet_layout", "RESNET", "DENSENET"]

_DENSE_OLD = re.compile(r"^(.*denselayer\d+)\.(norm|conv)\.([12])\.(.+)$")
_DENSE_NEW = re.compile(r"^(.*denselayer\d+)\.((?:norm|conv)[12])\.(.+)$")
_DENSE_ANY = re.compile(r"denselayer\d+\.(?:norm|conv)\.?[12]\.")


def map_resnet_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """torchvision ResNet key -> MONAI ResNet key (identity after prefixes; ``fc`` dropped)."""
    k = strip_prefixes(key)
    if matches_any(k, HEAD_PATTERNS):
        return None
    return k, value


def map_densenet_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """torchvision DenseNet key -> MONAI DenseNet key (``denselayerN.norm1`` -> ``denselayerN.layers.norm1``)."""
    k = strip_prefixes(key)
    if matches_any(k, HEAD_PATTERNS):
        return None
    m = _DENSE_OLD.match(k)
    if m:
        return f"{m[1]}.layers.{m[2]}{m[3]}.{m[4]}", value
    m = _DENSE_NEW.match(k)
    if m:
        return f"{m[1]}.layers.{m[2]}.{m[3]}", value
    return k, value


def is_resnet_layout(keys: Mapping[str, torch.Tensor]) -> bool:
    return "conv1.weight" in keys and "layer1.0.conv1.weight" in keys


def is_densenet_layout(keys: Mapping[str, torch.Tensor]) -> bool:
    return "features.conv0.weight" in keys and any(_DENSE_ANY.search(k) for k in keys)


def _stripped(source: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {strip_prefixes(k): v for k, v in source.items()}


def _detect_resnet(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = _stripped(source)
    if not is_resnet_layout(keys):
        return 0.0
    if keys["conv1.weight"].dim() != 4:  # a 3D ResNet: MedicalNet's layout, read by its own adapter
        return 0.3
    return 0.8 if "fc.weight" in keys else 0.6


def _detect_densenet(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    return 0.8 if is_densenet_layout(_stripped(source)) else 0.0


RESNET = Adapter(
    name="torchvision-resnet",
    family="resnet",
    description="torchvision ResNet-18/34/50 (ImageNet); keys already MONAI's, fc dropped",
    detect=_detect_resnet,
    map_key=map_resnet_key,
    reference="He et al., 2016, arXiv:1512.03385; https://pytorch.org/vision/stable/models/resnet.html",
)

DENSENET = Adapter(
    name="torchvision-densenet",
    family="densenet",
    description="torchvision DenseNet-121 (ImageNet); denselayerN.norm1 -> denselayerN.layers.norm1, classifier dropped",
    detect=_detect_densenet,
    map_key=map_densenet_key,
    reference="Huang et al., 2017, arXiv:1608.06993; https://pytorch.org/vision/stable/models/densenet.html",
)
