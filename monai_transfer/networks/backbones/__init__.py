"""Built-in backbones, as data: :data:`BUILTIN_BACKBONES` is registered by ``monai_transfer.networks.registry`` on its
first lookup (this package does not import the registry)."""

from __future__ import annotations

from monai_transfer.networks.backbone_config import BackboneConfig
from monai_transfer.networks.backbones.densenet import DenseNetBackbone, densenet121
from monai_transfer.networks.backbones.efficientnet import EfficientNetBackbone, efficientnet_b0
from monai_transfer.networks.backbones.genesis_unet import GenesisUNetEncoder, genesis_unet_encoder
from monai_transfer.networks.backbones.resnet import ResNetBackbone, resnet_factory
from monai_transfer.networks.backbones.sam_vit import SAMImageEncoder, sam_vit_b_encoder
from monai_transfer.networks.backbones.segresnet import SegResNetBackbone, segresnet_encoder
from monai_transfer.networks.backbones.segresnet_ds import SegResEncoderBackbone, segresnet_ds_encoder
from monai_transfer.networks.backbones.swin import SwinBackbone, swin_unetr_encoder
from monai_transfer.networks.backbones.unet import UNetEncoder, unet_encoder
from monai_transfer.networks.backbones.vit import ViTBackbone, vit_factory

__all__ = [
    "DenseNetBackbone",
    "EfficientNetBackbone",
    "GenesisUNetEncoder",
    "ResNetBackbone",
    "SAMImageEncoder",
    "SegResNetBackbone",
    "SegResEncoderBackbone",
    "SwinBackbone",
    "UNetEncoder",
    "ViTBackbone",
    "BUILTIN_BACKBONES",
]

BUILTIN_BACKBONES: tuple[BackboneConfig, ...] = (
    BackboneConfig(
        "resnet10",
        resnet_factory(10),
        "resnet",
        (2, 3),
        512,
        wraps="monai.networks.nets.ResNet",
        description="ResNet-10 (MedicalNet's smallest)",
    ),
    BackboneConfig(
        "resnet18",
        resnet_factory(18),
        "resnet",
        (2, 3),
        512,
        wraps="monai.networks.nets.ResNet",
        description="ResNet-18",
    ),
    BackboneConfig(
        "resnet34",
        resnet_factory(34),
        "resnet",
        (2, 3),
        512,
        wraps="monai.networks.nets.ResNet",
        description="ResNet-34",
    ),
    BackboneConfig(
        "resnet50",
        resnet_factory(50),
        "resnet",
        (2, 3),
        2048,
        wraps="monai.networks.nets.ResNet",
        description="ResNet-50",
    ),
    BackboneConfig(
        "densenet121",
        densenet121,
        "densenet",
        (2, 3),
        1024,
        wraps="monai.networks.nets.DenseNet121",
        description="DenseNet-121",
    ),
    BackboneConfig(
        "efficientnet_b0",
        efficientnet_b0,
        "efficientnet",
        (2, 3),
        1280,
        wraps="monai.networks.nets.EfficientNetBN",
        description="EfficientNet-B0",
    ),
    BackboneConfig(
        "vit_small_patch16",
        vit_factory("small"),
        "vit",
        (2, 3),
        384,
        wraps="monai.networks.nets.ViT",
        description="ViT-S/16",
    ),
    BackboneConfig(
        "vit_base_patch16",
        vit_factory("base"),
        "vit",
        (2, 3),
        768,
        wraps="monai.networks.nets.ViT",
        description="ViT-B/16",
    ),
    BackboneConfig(
        "vit_small_patch14",
        vit_factory("small", 14),
        "vit",
        (2, 3),
        384,
        wraps="monai.networks.nets.ViT",
        description="ViT-S/14 (DINOv2's)",
    ),
    BackboneConfig(
        "vit_base_patch14",
        vit_factory("base", 14),
        "vit",
        (2, 3),
        768,
        wraps="monai.networks.nets.ViT",
        description="ViT-B/14 (DINOv2's)",
    ),
    BackboneConfig(
        "swin_unetr",
        swin_unetr_encoder,
        "swin",
        (2, 3),
        768,
        wraps="monai.networks.nets.swin_unetr.SwinTransformer",
        description="SwinUNETR encoder, feature_size 48",
    ),
    BackboneConfig(
        "segresnet",
        segresnet_encoder,
        "segresnet",
        (2, 3),
        128,
        wraps="monai.networks.nets.SegResNet",
        description="SegResNet encoder, init_filters 16",
    ),
    BackboneConfig(
        "segresnet_ds",
        segresnet_ds_encoder,
        "segresnet_ds",
        (2, 3),
        512,
        wraps="monai.networks.nets.segresnet_ds.SegResEncoder",
        description="SegResNetDS encoder, init_filters 32, five stages (1, 2, 2, 4, 4): CT-FM's",
    ),
    BackboneConfig(
        "genesis_unet3d",
        genesis_unet_encoder,
        "genesis_unet",
        (2, 3),
        512,
        wraps="Models Genesis 3D U-Net encoder (MONAI layers)",
        description="Models Genesis 3D U-Net encoder (down_tr64 ... down_tr512)",
    ),
    BackboneConfig(
        "unet",
        unet_encoder,
        "unet",
        (2, 3),
        256,
        wraps="monai.networks.nets.UNet",
        description="UNet encoder (down units + bottleneck), channels (16, 32, 64, 128, 256)",
    ),
    BackboneConfig(
        "sam_vit_b",
        sam_vit_b_encoder,
        "sam",
        (2,),
        256,
        wraps="Segment Anything ViT-B image encoder (windowed attention, relative positions, neck)",
        description="SAM / MedSAM ViT-B/16 image encoder, img_size 1024",
    ),
)
