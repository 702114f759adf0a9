"""The one surface every backbone offers, whatever network it wraps.

A backbone maps an image ``(B, C, *spatial)`` to:

* ``forward_features(x)``: a pooled embedding ``(B, num_features)``;
* ``forward_intermediates(x)``: one feature map per stage, shallow to deep, each ``(B, channels, *spatial / stride)``;
* ``feature_info``: the channels and stride of each of those stages (timm's ``feature_info`` idea);
* ``param_stages()``: which parameter-name prefixes make up each stage, so that load reports, freezing and
  layer-wise learning-rate decay can speak of stages rather than of tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from monai_transfer.utils.stages import stage_of_key  # re-exported: its home is below weights and networks

__all__ = ["StageInfo", "BackboneMixin", "check_spatial_dims", "stage_of_key"]


@dataclass(frozen=True)
class StageInfo:
    """Channels and stride (relative to the input, per axis) of one stage's output map."""

    name: str
    channels: int
    stride: int

    def to_dict(self) -> dict:
        return asdict(self)


def check_spatial_dims(name: str, spatial_dims: int, supported: Sequence[int] = (2, 3)) -> None:
    """Raise a clear ``ValueError`` for an unsupported ``spatial_dims``."""
    if spatial_dims not in supported:
        raise ValueError(f"{name} supports spatial_dims in {tuple(supported)}, got {spatial_dims!r}.")


class BackboneMixin:
    """Shared behaviour of all backbones; subclasses implement the three ``_``-free methods below.

    Subclasses set ``spatial_dims`` (int), ``in_channels`` (int), ``num_features`` (int) and ``feature_info``
    (``list[StageInfo]``) in ``__init__``. They are not declared as class annotations because TorchScript reads
    those and cannot parse postponed (string) annotations.
    """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_stages(self) -> dict[str, tuple[str, ...]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def stage_names(self) -> list[str]:
        return list(self.param_stages())

    def _check_input(self, x: torch.Tensor) -> None:
        # kept TorchScript-compatible: exported backbones keep this check
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"backbone expects input (B, C={self.in_channels}, {self.spatial_dims} spatial dims), "
                f"got shape {x.shape}; adapt channels with monai_transfer.weights.adapt_input_channels"
            )
