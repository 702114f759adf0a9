"""The key renames the weight doctor tries, as data: every registered checkpoint adapter plus two layouts no adapter
owns on its own.

The adapters (``monai_transfer.weights.adapters``) already know how torchvision, timm, MONAI, SwinUNETR,
MedicalNet, lightly and solo-learn name a backbone's tensors; the doctor reuses their key functions rather than a
second copy of their tables, read at call time so that adapters registered later are tried too. The two additions:

* **lightly's ``nn.Sequential(*list(resnet.children())[:-1])``** (Susmelj et al., 2020) inside a prefix other than
  ``backbone.`` (the ``lightning-ssl`` adapter reads it only there): child indices -> torchvision names, from the
  adapter's own ``TORCHVISION_RESNET_CHILDREN``.
* **MMPretrain/MMSelfSup ``ResNetV1d``** (``avg_down=True``, He et al., 2019, arXiv:1812.01187): ``downsample.0`` is an
  ``AvgPool`` without weights, so the convolution and norm sit at ``downsample.1``/``downsample.2`` instead of
  torchvision's ``downsample.0``/``downsample.1``. Plain MMPretrain ``ResNet`` names (``layer1.0.conv1``,
  ``layer1.0.bn1``, ``downsample.0``) are torchvision's and need no rename.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from monai_transfer.weights.adapters import KeyFn, get_adapter, list_adapters
from monai_transfer.weights.adapters.lightning_ssl import TORCHVISION_RESNET_CHILDREN

__all__ = ["Reader", "readers", "COPY_MARKERS", "is_copy_key"]

Binder = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], KeyFn]
Finalize = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]

# wrapper components that mark a second copy of the backbone that training keeps but evaluation does not use: the
# momentum/EMA encoder of MoCo, BYOL, lightly (``backbone_momentum``), solo-learn (``momentum_backbone``),
# MMSelfSup (``momentum_encoder``), MoCo's key encoder; and the student of a teacher-student pair (DINO evaluates the
# teacher). The same order of preference as the ``lightning-ssl`` adapter's ``BACKBONE_PREFIXES``.
COPY_MARKERS = re.compile(r"(^|[._])(momentum\w*|\w*_momentum|encoder_k|key_encoder|ema|\w*_ema|student\w*)($|[._])")

_CHILD = re.compile(r"^(\d+)\.(.+)$")
_AVG_DOWN = re.compile(r"\.downsample\.([12])\.")


@dataclass(frozen=True)
class Reader:
    """One way of renaming a checkpoint's keys (below a prefix) into a backbone's.

    Attributes:
        name: short name shown in the report (an adapter's registry name for the adapters).
        description: one line for users.
        bind: ``(source, target) -> key function`` (``None`` from the key function: a head, by the layout's own
            convention).
        finalize: optional whole-dict step after renaming (timm's class position folded into ``cls_token``).
    """

    name: str
    description: str
    bind: Binder
    finalize: Finalize | None = None


def _fixed(fn: KeyFn) -> Binder:
    return lambda source, target: fn


def _as_is(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    return key, value


def resnet_children_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """lightly's ``nn.Sequential`` child index -> torchvision ResNet name (``4.0.conv1`` -> ``layer1.0.conv1``)."""
    m = _CHILD.match(key)
    if m and int(m[1]) < len(TORCHVISION_RESNET_CHILDREN):
        return f"{TORCHVISION_RESNET_CHILDREN[int(m[1])]}.{m[2]}", value
    return key, value


def avg_down_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """MMPretrain ``ResNetV1d`` shortcut -> torchvision's (``downsample.1`` -> ``downsample.0``, ``2`` -> ``1``)."""
    return _AVG_DOWN.sub(lambda m: f".downsample.{int(m[1]) - 1}.", key), value


_OWN: tuple[Reader, ...] = (
    Reader("as-is", "the backbone's own names", _fixed(_as_is)),
    Reader("resnet-children", "lightly's nn.Sequential of torchvision ResNet children", _fixed(resnet_children_key)),
    Reader("mmpretrain-avg-down", "MMPretrain ResNetV1d shortcuts (downsample.1/2 -> 0/1)", _fixed(avg_down_key)),
)


def readers() -> tuple[Reader, ...]:
    """The doctor's own readers first (simplest first), then every registered adapter in its detection order."""
    adapters = [get_adapter(name) for name in list_adapters()]
    return _OWN + tuple(Reader(a.name, a.description, a.key_fn, a.finalize) for a in adapters)


def is_copy_key(wrapper: str) -> bool:
    """Whether a key's wrapper part (what precedes the backbone's own name) marks a momentum/EMA/student copy."""
    return bool(COPY_MARKERS.search(wrapper))
