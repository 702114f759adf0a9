"""EfficientNet-B0 backbone over MONAI's ``EfficientNetBN`` (Tan & Le, 2019, arXiv:1905.11946)."""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import EfficientNetBN

from monai_transfer.networks.base import BackboneMixin, StageInfo, check_spatial_dims

__all__ = ["EfficientNetBackbone"]


class EfficientNetBackbone(BackboneMixin, EfficientNetBN):
    """A MONAI ``EfficientNetBN`` without its classifier.

    Stages are MONAI's feature-extraction points (``extract_stacks``): the ends of the last stack at each
    resolution, at strides 2, 4, 8, 16 and 32. The pooled embedding comes after ``_conv_head`` as in the paper.

    Args:
        model_name: ``"efficientnet-b0"`` ... ``"efficientnet-b7"``.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        norm: normalisation (MONAI's default: batch norm with TensorFlow's eps and momentum).
        memory_efficient_swish: MONAI's custom-autograd swish saves memory but cannot be scripted; the plain
            swish (default here) exports to TorchScript.
    """

    def __init__(
        self,
        model_name: str = "efficientnet-b0",
        spatial_dims: int = 2,
        in_channels: int = 1,
        norm: str | tuple = ("batch", {"eps": 1e-3, "momentum": 0.01}),
        memory_efficient_swish: bool = False,
    ) -> None:
        check_spatial_dims("EfficientNetBackbone", spatial_dims)
        super().__init__(
            model_name=model_name,
            pretrained=False,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=1,
            norm=norm,
        )
        del self._fc
        self._dropout = torch.nn.Identity()
        self.set_swish(memory_efficient=memory_efficient_swish)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        # MONAI extracts after stacks ``extract_stacks - 1``; a stage's stride is the product of the stacks' strides
        stride, strides = 2, []
        for args in self._blocks_args:
            stride *= args.stride
            strides.append(stride)
        self.feature_info = [
            StageInfo(f"blocks{i - 1}", self._blocks[i - 1][-1]._bn2.num_features, strides[i - 1])
            for i in self.extract_stacks
        ]
        self.num_features = self._bn1.num_features

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self._swish(self._bn0(self._conv_stem(self._conv_stem_padding(x))))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        x = self._stem(x)
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i + 1 in self.extract_stacks:
                out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self._blocks(self._stem(x))
        x = self._swish(self._bn1(self._conv_head(self._conv_head_padding(x))))
        return torch.flatten(self._avg_pooling(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_stages(self) -> dict[str, tuple[str, ...]]:
        stages: dict[str, tuple[str, ...]] = {}
        start = 0
        for n, end in enumerate(self.extract_stacks):
            names = tuple(f"_blocks.{i}" for i in range(start, end))
            if n == 0:
                names = ("_conv_stem", "_bn0") + names
            if n == len(self.extract_stacks) - 1:
                names = names + ("_conv_head", "_bn1")
            stages[self.feature_info[n].name] = names
            start = end
        return stages


def efficientnet_b0(spatial_dims: int = 2, in_channels: int = 1, **kwargs: Any) -> EfficientNetBackbone:
    return EfficientNetBackbone("efficientnet-b0", spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
