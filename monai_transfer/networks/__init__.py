"""Backbones (a registry of thin wrappers over MONAI networks), heads, decoders and ``TransferNet``."""

from __future__ import annotations

from monai_transfer.networks.base import BackboneMixin, StageInfo
from monai_transfer.networks.registry import (
    BackboneConfig,
    create_backbone,
    get_backbone_config,
    list_backbones,
    register_backbone,
)

__all__ = [
    "BackboneConfig",
    "BackboneMixin",
    "StageInfo",
    "create_backbone",
    "get_backbone_config",
    "list_backbones",
    "register_backbone",
]
