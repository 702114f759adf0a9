"""MONAI ``UNet`` checkpoints (the model zoo's ``spleen_ct_segmentation`` and any bundle built on ``UNet``) into the
flat encoder of ``monai_transfer.networks.backbones.unet``.

``UNet`` nests each level in a ``SkipConnection``: level ``n`` sits under ``model.`` followed by ``n`` times
``1.submodule.``; there ``0.`` is the down unit, ``2.`` the up unit, and the innermost level holds the bottleneck
itself::

    model.0.*                                               -> down_layers.0.*
    model.1.submodule.0.*                                   -> down_layers.1.*
    model.1.submodule.1.submodule.1.submodule.0.*           -> down_layers.3.*
    model.1.submodule.1.submodule.1.submodule.1.submodule.* -> bottom.*
    model.2.*, model.1.submodule.2.* ...                    -> dropped (the decoder)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter, strip_prefixes

__all__ = ["map_monai_unet_key", "MONAI_UNET"]

_LEVEL = "1.submodule."


def map_monai_unet_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """MONAI UNet key -> encoder key (``down_layers.n.*`` / ``bottom.*``), or None for the decoder."""
    k = strip_prefixes(key, ("module.", "_orig_mod."))
    if not k.startswith("model."):
        return k, value  # not a UNet key: left for the report to call unexpected
    k, level = k[len("model.") :], 0
    while k.startswith(_LEVEL):
        k, level = k[len(_LEVEL) :], level + 1
    if k.startswith("0."):
        return f"down_layers.{level}.{k[2:]}", value
    if k.startswith("2."):
        return None
    return f"bottom.{k}", value


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k, ("module.", "_orig_mod.")) for k in source}
    nested = any(k.startswith("model.1.submodule.0.") for k in keys) and any(k.startswith("model.0.") for k in keys)
    return 1.0 if nested else 0.0


MONAI_UNET = Adapter(
    name="monai-unet",
    family="unet",
    description="MONAI UNet (model.0, model.1.submodule.0 ...): nested levels -> down_layers.n / bottom, decoder dropped",
    detect=_detect,
    map_key=map_monai_unet_key,
    reference="https://docs.monai.io/en/stable/networks.html#unet",
)
