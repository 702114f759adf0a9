"""RadImageNet's PyTorch files (Mei et al., 2022, Radiology: AI 4(5):e210315; ``RadImageNet_pytorch/ResNet50.pt``,
``DenseNet121.pt``): torchvision networks saved from the publisher's ``Backbone`` module, whose ``backbone`` is
``nn.Sequential(*children)``, so the keys are child indices::

    ResNet50.pt       backbone.0.weight (conv1), backbone.1.* (bn1), backbone.4.0.conv1.weight (layer1.0.conv1) ...
    DenseNet121.pt    backbone.0.conv0.weight (features.conv0), backbone.0.denseblock1.denselayer1.norm1.* ...

The indices are mapped back to torchvision's names (as lightly's ``Sequential`` backbones are), then read as
torchvision's ResNet or DenseNet.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter, KeyFn, strip_prefixes
from monai_transfer.weights.adapters.lightning_ssl import TORCHVISION_RESNET_CHILDREN
from monai_transfer.weights.adapters.torchvision_models import map_densenet_key, map_resnet_key

__all__ = ["RADIMAGENET"]

_PREFIX = "backbone."


def _inner(source: Mapping[str, torch.Tensor]) -> set[str]:
    return {strip_prefixes(k, ("module.",))[len(_PREFIX) :] for k in source if k.startswith(_PREFIX)}


def _is_densenet(inner: set[str]) -> bool:
    return "0.conv0.weight" in inner


def _bind(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
    densenet = _is_densenet(_inner(source))

    def map_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        k = strip_prefixes(key, ("module.",))
        if not k.startswith(_PREFIX):
            return k, value  # not the publisher's layout: left for the report to call unexpected
        index, _, rest = k[len(_PREFIX) :].partition(".")
        if densenet:
            return map_densenet_key(f"features.{rest}" if index == "0" else k, value)
        if index.isdigit() and int(index) < len(TORCHVISION_RESNET_CHILDREN):
            return map_resnet_key(f"{TORCHVISION_RESNET_CHILDREN[int(index)]}.{rest}", value)
        return k, value

    return map_key


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    inner = _inner(source)
    # above lightning-ssl, which reads the ResNet the same way but not the DenseNet
    return 1.6 if _is_densenet(inner) else 0.0


RADIMAGENET = Adapter(
    name="radimagenet",
    family="any",
    description="RadImageNet PyTorch ResNet-50 / DenseNet-121 (backbone.<child index>.*): indices renamed to "
    "torchvision's",
    detect=_detect,
    bind=_bind,
    reference="Mei et al., 2022, Radiology: AI 4(5):e210315; https://github.com/BMEII-AI/RadImageNet",
)
