"""SSL methods as data: a name maps to a method class, the backbones it fits and its view recipe.

>>> from monai_transfer.networks import create_backbone
>>> from monai_transfer.ssl import create_method, list_methods
>>> list_methods()[:3]
['barlow_twins', 'byol', 'dino']
>>> method = create_method("simclr", create_backbone("resnet18", spatial_dims=2))

Entries name their class by import path, so listing methods or checking a method/backbone pair imports no
method code (the ``--help`` and ``--list`` paths stay fast).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from monai_transfer.ssl.method_spec import ALL_FAMILIES, CNN_FAMILIES, MethodSpec
from monai_transfer.utils.registry import Registry

__all__ = [
    "BACKBONE_DEFAULTS",
    "CNN_FAMILIES",
    "ALL_FAMILIES",
    "MethodSpec",
    "register_method",
    "list_methods",
    "get_method_spec",
    "check_method_backbone",
    "create_method",
]

#: per backbone family, backbone options pretraining sets unless the user does (bundle-config values): a ViT has one
#: input size, the view crop
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {"vit": {"img_size": "@roi_size"}}


def _load_builtin() -> None:
    # the built-in table is data that imports only the record type, so the registry reads it on first use without
    # the table importing the registry back
    from monai_transfer.ssl.methods import BUILTIN_METHODS

    for spec in BUILTIN_METHODS:
        _REGISTRY.register(spec, overwrite=True)


_REGISTRY: Registry[MethodSpec] = Registry(
    "SSL method",
    normalize=lambda name: name.lower().replace("-", "_"),
    loader=_load_builtin,
    note=" (see `monai-transfer pretrain --list`)",
)


def register_method(spec: MethodSpec, overwrite: bool = False) -> MethodSpec:
    """Add a method. Raise ``KeyError`` if the name is taken and ``overwrite`` is False."""
    return _REGISTRY.register(spec, overwrite=overwrite)


def list_methods(backbone: str | None = None, spatial_dims: int | None = None) -> list[str]:
    """Registered method names, sorted; optionally only those fitting ``backbone`` and ``spatial_dims``."""
    names = _REGISTRY.list()
    if spatial_dims is not None:
        names = [n for n in names if spatial_dims in _REGISTRY[n].spatial_dims]
    if backbone is not None:
        from monai_transfer.networks.registry import get_backbone_config

        family = get_backbone_config(backbone).family
        names = [n for n in names if family in _REGISTRY[n].families]
    return names


def get_method_spec(name: str) -> MethodSpec:
    """The spec of a registered method (``-`` and ``_`` interchangeable); a ``KeyError`` names close ones when unknown."""
    return _REGISTRY.get(name)


def check_method_backbone(method: str, backbone: str, spatial_dims: int) -> MethodSpec:
    """Raise ``ValueError`` explaining why ``method`` cannot pretrain ``backbone`` in ``spatial_dims``; else its spec."""
    from monai_transfer.networks.registry import get_backbone_config

    spec = get_method_spec(method)
    config = get_backbone_config(backbone)
    if spatial_dims not in spec.spatial_dims:
        raise ValueError(f"SSL method {spec.name!r} supports spatial_dims {spec.spatial_dims}, got {spatial_dims}.")
    if config.family not in spec.families:
        fitting = [n for n in _backbones_of(spec.families)]
        why = f" {spec.reason}" if spec.reason else ""
        raise ValueError(
            f"SSL method {spec.name!r} does not fit backbone {backbone!r} (family {config.family!r}).{why} "
            f"Backbones it fits: {fitting}."
        )
    return spec


def _backbones_of(families: tuple[str, ...]) -> list[str]:
    from monai_transfer.networks.registry import get_backbone_config, list_backbones

    return [n for n in list_backbones() if get_backbone_config(n).family in families]


def create_method(name: str, backbone: nn.Module, **kwargs: Any) -> nn.Module:
    """Build method ``name`` around ``backbone`` (a registry backbone), checking that the pair fits.

    Args:
        name: registry name (``list_methods()``); ``-`` and ``_`` are interchangeable.
        backbone: built with ``create_backbone``; its ``backbone_name`` and ``spatial_dims`` are checked.
        kwargs: the method's own options (projection sizes, temperatures, mask ratio...).
    """
    spec = get_method_spec(name)
    backbone_name = getattr(backbone, "backbone_name", None)
    if backbone_name is not None:
        check_method_backbone(spec.name, backbone_name, int(backbone.spatial_dims))
    return spec.resolve()(backbone, **kwargs)
