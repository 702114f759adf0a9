"""Backbones as data: a name maps to a factory and a config record (timm's ``register_model`` idea).

>>> from monai_transfer.networks import create_backbone, list_backbones
>>> list_backbones("resnet*")
['resnet10', 'resnet18', 'resnet34', 'resnet50']
>>> net = create_backbone("resnet18", spatial_dims=3, in_channels=1)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from monai_transfer.networks.backbone_config import BackboneConfig
from monai_transfer.utils.registry import Registry

__all__ = ["register_backbone", "create_backbone", "list_backbones", "get_backbone_config"]


def _load_builtin() -> None:
    # the built-in table is data that imports only the record type, so the registry reads it lazily (importing the
    # networks stays cheap) without the table importing the registry back
    from monai_transfer.networks.backbones import BUILTIN_BACKBONES

    for config in BUILTIN_BACKBONES:
        register_backbone(config, overwrite=True)


_REGISTRY: Registry[BackboneConfig] = Registry("backbone", loader=_load_builtin)


def register_backbone(config: BackboneConfig, overwrite: bool = False) -> BackboneConfig:
    """Add a backbone to the registry. Raise ``KeyError`` if the name is taken and ``overwrite`` is False."""
    return _REGISTRY.register(config, overwrite=overwrite)


def list_backbones(pattern: str | None = None, spatial_dims: int | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell-style ``pattern`` and by ``spatial_dims``."""
    names = _REGISTRY.list(pattern)
    if spatial_dims is not None:
        names = [n for n in names if spatial_dims in _REGISTRY[n].spatial_dims]
    return names


def get_backbone_config(name: str) -> BackboneConfig:
    """The config record of a registered backbone; a ``KeyError`` lists close names when unknown."""
    return _REGISTRY.get(name)


def create_backbone(
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 1,
    pretrained: str | None = None,
    strict: bool = True,
    pretrained_source: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered backbone, optionally initialised from pretrained weights.

    Args:
        name: registry name (see ``list_backbones``).
        spatial_dims: 2 or 3 (where the network supports it).
        in_channels: number of input channels.
        pretrained: ``None`` (random init), a path to a checkpoint, or the name of a known source
            (``monai_transfer.weights.list_sources(name)``). Weights are adapted to ``spatial_dims`` and
            ``in_channels`` (inflation and channel surgery) and loaded strictly.
        strict: passed to ``load_pretrained``; a non-strict load still returns and logs its report.
        pretrained_source: the layout of a ``pretrained`` file: a source name (a published file a bundle's
            ``large_files.yml`` fetched, read with that source's adapter and architecture options) or an adapter name;
            ``None``: the source's own for a source name, else detected.
        kwargs: override the registry's default keyword arguments (for ViT: ``img_size``, ``patch_size``...).

    Returns:
        The backbone. When ``pretrained`` is given, its ``load_report`` attribute holds the ``LoadReport``.
    """
    config = get_backbone_config(name)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
    if spatial_dims not in config.spatial_dims:
        raise ValueError(f"Backbone {name!r} supports spatial_dims in {config.spatial_dims}, got {spatial_dims!r}.")
    if pretrained is not None:
        # weights sit below networks (imported lazily, to keep importing networks cheap); a published source may fix
        # some architecture options (MedicalNet ResNet-18/34 use parameter-free "A" shortcuts), which explicit kwargs
        # still override
        from monai_transfer.weights.sources import source_backbone_kwargs

        kwargs = {**source_backbone_kwargs(pretrained_source or pretrained, name), **kwargs}
    model = config.factory(spatial_dims=spatial_dims, in_channels=in_channels, **{**config.kwargs, **kwargs})
    model.backbone_name = name
    if pretrained is not None:
        from monai_transfer.weights.load import load_pretrained

        model.load_report = load_pretrained(model, pretrained, source=pretrained_source, strict=strict)
    return model
