"""Backbones (a registry of thin wrappers over MONAI networks), heads, decoders and ``TransferNet``."""

from __future__ import annotations

from monai_transfer.networks.backbone_config import BackboneConfig
from monai_transfer.networks.base import BackboneMixin, StageInfo
from monai_transfer.networks.decoders import UNetDecoder, UNETRDecoder, create_decoder
from monai_transfer.networks.export import export_model, export_onnx, export_torchscript
from monai_transfer.networks.heads import ClassificationHead
from monai_transfer.networks.registry import (
    create_backbone,
    get_backbone_config,
    list_backbones,
    register_backbone,
)
from monai_transfer.networks.transfer_net import TransferNet, create_transfer_net

__all__ = [
    "BackboneConfig",
    "BackboneMixin",
    "StageInfo",
    "create_backbone",
    "get_backbone_config",
    "list_backbones",
    "register_backbone",
    "ClassificationHead",
    "TransferNet",
    "UNETRDecoder",
    "UNetDecoder",
    "create_decoder",
    "create_transfer_net",
    "export_model",
    "export_onnx",
    "export_torchscript",
]
