"""ResNet-10/18/34/50 backbones over MONAI's ``ResNet`` (He et al., 2016, arXiv:1512.03385).

The parameter names are MONAI's, which are also torchvision's and MedicalNet's (Chen et al., 2019,
arXiv:1904.00625), so published checkpoints of all three load with at most a prefix change.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets import ResNet
from torch import nn

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["ResNetBackbone", "RESNET_LAYOUTS"]

# depth -> (block, layers); the published layouts of torchvision and MedicalNet
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def _apply_block_norm(net: nn.Module, norm: str | tuple, spatial_dims: int) -> None:
    """Give the residual stages the requested norm.

    MONAI 1.6's ``ResNet`` applies ``norm`` to the stem only: ``_make_layer`` is called without it, so the blocks
    keep batch norm. Replacing each block norm in place keeps the state-dict keys of the MONAI layout.
    """
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for name, module in list(getattr(net, stage).named_modules()):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                parent_name, _, attr = name.rpartition(".")
                parent = getattr(net, stage).get_submodule(parent_name) if parent_name else getattr(net, stage)
                setattr(
                    parent, attr, get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=module.num_features)
                )


class ResNetBackbone(BackboneMixin, ResNet):
    """A MONAI ``ResNet`` without its classifier, exposing the backbone surface.

    Args:
        depth: 10, 18, 34 or 50.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        shortcut_type: ``"B"`` (1x1 conv + norm, torchvision layout) or ``"A"`` (parameter-free, MedicalNet's
            ResNet-18/34 layout).
        bias_downsample: whether the shortcut convolution has a bias (MedicalNet ResNet-10/50: no; torchvision: no).
        conv1_t_size: first convolution kernel size; conv1_t_stride: its stride (2 in torchvision and MedicalNet).
        widen_factor, no_max_pool, act, norm: as in ``monai.networks.nets.ResNet``.
    """

    def __init__(
        self,
        depth: int = 18,
        spatial_dims: int = 2,
        in_channels: int = 1,
        shortcut_type: str = "B",
        bias_downsample: bool = False,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 2,
        no_max_pool: bool = False,
        widen_factor: float = 1.0,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        check_spatial_dims("ResNetBackbone", spatial_dims)
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"ResNetBackbone depth must be one of {sorted(RESNET_LAYOUTS)}, got {depth!r}.")
        block, layers = RESNET_LAYOUTS[depth]
        super().__init__(
            block=block,
            layers=list(layers),
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=conv1_t_size,
            conv1_t_stride=conv1_t_stride,
            no_max_pool=no_max_pool,
            shortcut_type=shortcut_type,
            widen_factor=widen_factor,
            feed_forward=False,
            bias_downsample=bias_downsample,
            act=act,
            norm=norm,
        )
        if norm != "batch":
            _apply_block_norm(self, norm, spatial_dims)
        self.depth = depth
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        expansion = 4 if block == "bottleneck" else 1
        widths = [int(w * widen_factor) for w in (64, 128, 256, 512)]
        s0 = conv1_t_stride
        s1 = s0 if no_max_pool else s0 * 2
        self.feature_info = [
            StageInfo("stem", widths[0], s0),
            StageInfo("layer1", widths[0] * expansion, s1),
            StageInfo("layer2", widths[1] * expansion, s1 * 2),
            StageInfo("layer3", widths[2] * expansion, s1 * 4),
            StageInfo("layer4", widths[3] * expansion, s1 * 8),
        ]
        self.num_features = self.feature_info[-1].channels

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        x = self.act(self.bn1(self.conv1(x)))
        out = [x]
        if not self.no_max_pool:
            x = self.maxpool(x)
        # written out rather than looped over a tuple of modules, which TorchScript cannot compile
        x = self.layer1(x)
        out.append(x)
        x = self.layer2(x)
        out.append(x)
        x = self.layer3(x)
        out.append(x)
        x = self.layer4(x)
        out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_intermediates(x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        return {
            "stem": ("conv1", "bn1"),
            "layer1": ("layer1",),
            "layer2": ("layer2",),
            "layer3": ("layer3",),
            "layer4": ("layer4",),
        }


def resnet_factory(depth: int):
    def build(spatial_dims: int = 2, in_channels: int = 1, **kwargs: Any) -> ResNetBackbone:
        return ResNetBackbone(depth=depth, spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)

    build.__name__ = f"resnet{depth}"
    return build
