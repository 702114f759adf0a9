"""DenseNet-121 backbone over MONAI's ``DenseNet121`` (Huang et al., 2017, arXiv:1608.06993).

Parameter names are MONAI's (``features.denseblockN.denselayerM.layers.conv1``); torchvision and TorchXRayVision
checkpoints map onto them with a regex (see ``monai_transfer.weights.adapters``).
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import DenseNet

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["DenseNetBackbone"]


class DenseNetBackbone(BackboneMixin, DenseNet):
    """A MONAI ``DenseNet`` whose ``class_layers`` keep only the activation and pooling (no classifier).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        init_features, growth_rate, block_config, bn_size, act, norm, dropout_prob: as in MONAI's ``DenseNet``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        init_features: int = 64,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        bn_size: int = 4,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
        dropout_prob: float = 0.0,
    ) -> None:
        check_spatial_dims("DenseNetBackbone", spatial_dims)
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=1,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=block_config,
            bn_size=bn_size,
            act=act,
            norm=norm,
            dropout_prob=dropout_prob,
        )
        del self.class_layers.out  # the classifier belongs to a head, not to the backbone
        del self.class_layers.flatten
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        channels = [init_features]
        c = init_features
        for i, n in enumerate(block_config):
            c = c + n * growth_rate
            channels.append(c)
            if i < len(block_config) - 1:
                c = c // 2
        self._blocks = [f"denseblock{i + 1}" for i in range(len(block_config))]
        self.feature_info = [StageInfo("stem", channels[0], 2)] + [
            StageInfo(name, channels[i + 1], 4 * 2**i) for i, name in enumerate(self._blocks)
        ]
        self.num_features = channels[-1]

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        out: list[torch.Tensor] = []
        for name, module in self.features.named_children():
            x = module(x)
            if name == "relu0":
                out.append(x)
            elif name.startswith("denseblock") and name != self._blocks[-1]:
                out.append(x)
        # the deepest map is what the classifier sees: norm5 then the activation of class_layers
        out.append(self.class_layers.relu(x))
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.class_layers.pool(self.forward_intermediates(x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {"stem": ("features.conv0", "features.norm0")}
        for i, name in enumerate(self._blocks):
            parts = [f"features.{name}"]
            if i > 0:
                parts.insert(0, f"features.transition{i}")
            if i == len(self._blocks) - 1:
                parts.append("features.norm5")
            stages[name] = tuple(parts)
        return stages


def densenet121(spatial_dims: int = 2, in_channels: int = 1, **kwargs: Any) -> DenseNetBackbone:
    return DenseNetBackbone(spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
