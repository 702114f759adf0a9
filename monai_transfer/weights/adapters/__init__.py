"""Checkpoint adapters, one file per source family; importing this package registers them.

Detection order (ties in ``detect_adapter`` go to the earlier one): SwinUNETR, SAM, open_clip (BiomedCLIP),
RadImageNet, timm ViT, TorchXRayVision DenseNet, torchvision DenseNet, MedicalNet, Models Genesis, MONAI UNet, the
benchmark SSL ResNet-50s, torchvision ResNet, monai_transfer's fine-tuned TransferNet, lightly/solo-learn, MONAI-native.
"""

from __future__ import annotations

from monai_transfer.weights.adapters.base import (
    COMMON_PREFIXES,
    DEFAULTED_PATTERNS,
    HEAD_PATTERNS,
    Adapter,
    KeyFn,
    convert_state_dict,
    detect_adapter,
    get_adapter,
    list_adapters,
    matches_any,
    register_adapter,
    strip_prefixes,
)
from monai_transfer.weights.adapters.lightning_ssl import LIGHTNING_SSL
from monai_transfer.weights.adapters.medicalnet import MEDICALNET
from monai_transfer.weights.adapters.models_genesis import MODELS_GENESIS
from monai_transfer.weights.adapters.monai_bundle import MONAI
from monai_transfer.weights.adapters.monai_unet import MONAI_UNET
from monai_transfer.weights.adapters.open_clip_vit import OPEN_CLIP_TIMM_VIT
from monai_transfer.weights.adapters.radimagenet import RADIMAGENET
from monai_transfer.weights.adapters.sam_image_encoder import SAM_IMAGE_ENCODER
from monai_transfer.weights.adapters.ssl_resnet import SSL_RESNET
from monai_transfer.weights.adapters.swin_ssl import SWIN_SSL
from monai_transfer.weights.adapters.timm_vit import TIMM_VIT
from monai_transfer.weights.adapters.torchvision_models import DENSENET, RESNET
from monai_transfer.weights.adapters.torchxrayvision_densenet import TORCHXRAYVISION
from monai_transfer.weights.adapters.transfer_net import TRANSFER_NET

__all__ = [
    "Adapter",
    "KeyFn",
    "COMMON_PREFIXES",
    "DEFAULTED_PATTERNS",
    "HEAD_PATTERNS",
    "BUILTIN_ADAPTERS",
    "convert_state_dict",
    "detect_adapter",
    "get_adapter",
    "list_adapters",
    "matches_any",
    "register_adapter",
    "strip_prefixes",
]

BUILTIN_ADAPTERS: tuple[Adapter, ...] = (
    SWIN_SSL,
    SAM_IMAGE_ENCODER,
    OPEN_CLIP_TIMM_VIT,
    RADIMAGENET,
    TIMM_VIT,
    TORCHXRAYVISION,
    DENSENET,
    MEDICALNET,
    MODELS_GENESIS,
    MONAI_UNET,
    SSL_RESNET,
    RESNET,
    TRANSFER_NET,
    LIGHTNING_SSL,
    MONAI,
)

for _adapter in BUILTIN_ADAPTERS:
    register_adapter(_adapter, overwrite=True)
