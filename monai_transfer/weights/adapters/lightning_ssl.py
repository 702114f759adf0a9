"""Self-supervised training checkpoints of lightly and solo-learn (PyTorch Lightning), and MoCo-style files.

These hold the whole SSL model under ``{"state_dict": ...}``: the backbone under ``backbone.`` and, beside it,
projection/prediction heads, momentum (EMA) copies, queues, prototypes and online linear classifiers. The adapter
keeps the backbone and drops everything else (reported as dropped):

* **solo-learn** (da Costa et al., 2022, JMLR 23(56)): ``backbone.conv1.weight`` ... (a torchvision ResNet whose
  ``fc`` is an identity), ``projector.*``, ``predictor.*``, ``momentum_backbone.*``, ``classifier.*``.
* **lightly** (Susmelj et al., 2020): ``backbone.*`` and often a torchvision ResNet wrapped as
  ``nn.Sequential(*list(resnet.children())[:-1])``, so that its keys are ``backbone.0.weight`` (``conv1``),
  ``backbone.1.*`` (``bn1``), ``backbone.4.0.conv1.weight`` (``layer1.0.conv1``) ...; the child indices are mapped
  back to torchvision's names (conv1, bn1, relu, maxpool, layer1..layer4, avgpool). ``projection_head.*``,
  ``prediction_head.*``, ``backbone_momentum.*``/``projection_head_momentum.*`` are dropped.
* **MoCo** (He et al., 2020, arXiv:1911.05722): ``module.encoder_q.*`` is the backbone; ``encoder_k``, ``queue``
  are dropped. **DINO-style** Lightning modules with ``teacher_backbone.``/``student_backbone.``: the teacher is kept.

Inside the backbone prefix the keys are read by the matching family adapter (torchvision ResNet or DenseNet, timm
ViT, SwinUNETR), or kept as they are (a MONAI backbone trained by ``monai_transfer.ssl``; a ``TransferNet`` whose
``head.*`` sits beside ``backbone.*``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import HEAD_PATTERNS, Adapter, KeyFn, matches_any, strip_prefixes
from monai_transfer.weights.adapters.swin_ssl import SWIN_SSL, map_swin_key
from monai_transfer.weights.adapters.timm_vit import finalize_timm_vit, map_timm_vit_key
from monai_transfer.weights.adapters.torchvision_models import is_densenet_layout, map_densenet_key

__all__ = ["BACKBONE_PREFIXES", "TORCHVISION_RESNET_CHILDREN", "LIGHTNING_SSL"]

# where the backbone lives, in order of preference (the teacher of a DINO-style model is the one evaluated)
BACKBONE_PREFIXES: tuple[str, ...] = ("backbone.", "teacher_backbone.", "encoder_q.", "student_backbone.")
_OUTER = ("module.", "model.", "_orig_mod.")
TORCHVISION_RESNET_CHILDREN: tuple[str, ...] = (
    "conv1",
    "bn1",
    "relu",
    "maxpool",
    "layer1",
    "layer2",
    "layer3",
    "layer4",
    "avgpool",
    "fc",
)
_SEQ = re.compile(r"^(\d+)\.(.+)$")


def _backbone_prefix(source: Mapping[str, torch.Tensor]) -> str | None:
    keys = [strip_prefixes(k, _OUTER) for k in source]
    for prefix in BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            return prefix
    return None


def _inner_keys(source: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in source.items():
        k = strip_prefixes(k, _OUTER)
        if k.startswith(prefix):
            out[k[len(prefix) :]] = v
    return out


def _is_sequential_resnet(inner: Mapping[str, torch.Tensor]) -> bool:
    return "0.weight" in inner and "4.0.conv1.weight" in inner


def _unsequence(k: str) -> str:
    m = _SEQ.match(k)
    if m and int(m[1]) < len(TORCHVISION_RESNET_CHILDREN):
        return f"{TORCHVISION_RESNET_CHILDREN[int(m[1])]}.{m[2]}"
    return k


def _plain(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    return None if matches_any(key, HEAD_PATTERNS) else (key, value)


def _bind(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
    prefix = _backbone_prefix(source)
    if prefix is None:
        raise ValueError(f"No backbone prefix ({', '.join(BACKBONE_PREFIXES)}) in this checkpoint.")
    inner = _inner_keys(source, prefix)
    sequential = _is_sequential_resnet(inner)
    if sequential:
        inner = {_unsequence(k): v for k, v in inner.items()}
    if is_densenet_layout(inner):
        family = map_densenet_key
    elif "patch_embed.proj.weight" in inner and "blocks.0.attn.qkv.weight" in inner:
        family = map_timm_vit_key
    elif SWIN_SSL.detect(inner, target):
        family = map_swin_key
    else:
        family = _plain

    def map_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        k = strip_prefixes(key, _OUTER)
        if not k.startswith(prefix):
            return None  # projection/prediction heads, momentum copies, queues, classifiers: not the backbone
        k = k[len(prefix) :]
        if sequential:
            k = _unsequence(k)
        return family(k, value)

    return map_key


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    prefix = _backbone_prefix(source)
    if prefix is None:
        return 0.0
    inner = _inner_keys(source, prefix)
    # above the family adapters, which would keep the SSL heads as unexpected keys
    return 1.5 if inner else 0.0


LIGHTNING_SSL = Adapter(
    name="lightning-ssl",
    family="any",
    description="lightly / solo-learn / MoCo SSL checkpoints: backbone.* kept (Sequential children renamed), heads dropped",
    detect=_detect,
    bind=_bind,
    finalize=finalize_timm_vit,
    reference="lightly: https://github.com/lightly-ai/lightly; solo-learn: da Costa et al., 2022, JMLR 23(56)",
)
