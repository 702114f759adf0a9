"""The self-supervised ImageNet ResNet-50s of the transfer benchmarks (Ericsson et al., 2021, arXiv:2011.13377;
Hosseinzadeh Taher et al., 2021, arXiv:2108.05930), as their authors published them.

Every one is a torchvision ResNet-50 under a method-specific wrapper, beside heads that a backbone never has:

=============================  =====================================  =============================================
publisher (methods)            backbone keys                          dropped
=============================  =====================================  =============================================
MoCo v1/v2, PCL v1/v2          ``{"state_dict": module.encoder_q.*}``  ``encoder_q.fc`` (projection), ``encoder_k.*``
                                                                      (momentum encoder), ``queue``, ``queue_ptr``
SwAV, DeepCluster-v2, SeLa-v2  ``module.*`` (top level)               ``projection_head.*``, ``prototypes.*``
PyContrast (InsDis, PIRL,      ``{"model": module.encoder.*}``        ``head.*``, ``head_jig.*`` (PIRL's jigsaw head)
InfoMin)
=============================  =====================================  =============================================

Barlow Twins (a plain torchvision state dict without ``fc``) and the converted BYOL / SimCLR files (torchvision keys
under ``state_dict``) are read by ``torchvision-resnet``. Keys that are none of the above stay unexpected: nothing
unknown is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter, strip_prefixes

__all__ = ["SSL_RESNET_DROPPED", "map_ssl_resnet_key", "SSL_RESNET"]

# where the ResNet sits inside each publisher's model (after DataParallel's "module.")
_WRAPPERS = ("encoder_q.", "encoder.")
#: the heads and training-only state of the published files, dropped and reported as dropped
SSL_RESNET_DROPPED: tuple[str, ...] = (
    r"^fc\.",
    r"^encoder_k\.",
    r"^queue(_ptr)?$",
    r"^projection_head\.",
    r"^prototypes\.",
    r"^head\.",
    r"^head_jig\.",
)


def map_ssl_resnet_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """Published SSL ResNet-50 key -> torchvision/MONAI ResNet key, or None for a head it drops."""
    k = strip_prefixes(key, ("module.", "_orig_mod."))
    if any(re.search(p, k) for p in SSL_RESNET_DROPPED):
        return None
    k = strip_prefixes(k, _WRAPPERS)
    if any(re.search(p, k) for p in SSL_RESNET_DROPPED):  # encoder_q.fc: MoCo's projection head
        return None
    return k, value


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k, ("module.", "_orig_mod.")) for k in source}
    inner = {strip_prefixes(k, _WRAPPERS) for k in keys}
    if "conv1.weight" not in inner or "layer1.0.conv1.weight" not in inner:
        return 0.0
    heads = any(re.search(p, k) for k in keys for p in SSL_RESNET_DROPPED[1:])
    return 0.9 if heads else 0.0  # above torchvision-resnet, which would keep these heads as unexpected


SSL_RESNET = Adapter(
    name="ssl-resnet50",
    family="resnet",
    description="MoCo/PCL (encoder_q), SwAV/DeepCluster-v2/SeLa-v2 (module.), PyContrast InsDis/PIRL/InfoMin "
    "(encoder) ResNet-50s; heads, momentum encoders and queues dropped",
    detect=_detect,
    map_key=map_ssl_resnet_key,
    reference="Ericsson et al., 2021, arXiv:2011.13377; Hosseinzadeh Taher et al., 2021, arXiv:2108.05930",
)
