"""The record a registered backbone keeps (timm's ``PretrainedCfg`` idea): its factory, family and dimensions.

Apart from the registry so that the built-in table (:mod:`monai_transfer.networks.backbones`) and the registry
(:mod:`monai_transfer.networks.registry`) both import it and neither imports the other at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["BackboneConfig"]


@dataclass(frozen=True)
class BackboneConfig:
    """The record kept for a registered backbone.

    Attributes:
        name: registry name, e.g. ``"resnet18"``.
        factory: callable ``(spatial_dims, in_channels, **kwargs) -> backbone``.
        family: architecture family (``"resnet"``, ``"vit"``, ...), used by weight adapters.
        spatial_dims: the spatial dimensions the wrapped MONAI network supports.
        num_features: size of the pooled embedding.
        kwargs: default keyword arguments passed to the factory.
        wraps: the MONAI network that the backbone wraps, for the docs.
        description: one line for ``list_backbones`` users.
    """

    name: str
    factory: Callable[..., nn.Module]
    family: str
    spatial_dims: tuple[int, ...]
    num_features: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    wraps: str = ""
    description: str = ""
