"""MONAI-native checkpoints: a MONAI bundle's ``models/model.pt``, files written by ``save_pretrained``, and the
``state_dict()`` of any MONAI network that contains one of our backbones.

The backbone's keys are MONAI's own, so the only question is under which prefix they sit in the checkpoint
(``swinViT.`` in a SwinUNETR bundle, none in a DenseNet121 classification bundle, ``backbone.`` in a TransferNet).
The adapter tries every prefix made of up to three leading key components and keeps the one under which the most
module keys are found (ties: more matching shapes, then the shorter prefix). Keys outside that prefix (decoders,
other networks), classifier heads under it (``class_layers.out``, ``fc``, ``classification_head`` ...) and the decoders
that MONAI's encoder-decoder networks keep beside their encoder under the same prefix (SegResNet's ``up_layers``,
``up_samples``, ``conv_final``: the model zoo's ``brats_mri_segmentation`` and ``wholeBody_ct_segmentation``) are
dropped and reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import HEAD_PATTERNS, Adapter, KeyFn, matches_any

__all__ = ["best_prefix", "DECODER_PATTERNS", "MONAI"]

#: decoders that sit beside the encoder's keys in MONAI networks (SegResNet, SegResNetDS): never backbone keys
DECODER_PATTERNS: tuple[str, ...] = (r"^up_layers\.", r"^up_samples\.", r"^conv_final\.")


def _candidates(keys: list[str], depth: int = 3) -> set[str]:
    out = {""}
    for k in keys:
        parts = k.split(".")
        for i in range(1, min(depth, len(parts) - 1) + 1):
            out.add(".".join(parts[:i]) + ".")
    return out


def best_prefix(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """The prefix under which most module keys appear in the checkpoint, and how many do."""
    best, best_score = "", (-1, -1, 0)
    for prefix in _candidates(list(source)):
        names = shapes = 0
        for k, v in source.items():
            if not k.startswith(prefix):
                continue
            t = target.get(k[len(prefix) :])
            if t is not None:
                names += 1
                shapes += int(tuple(t.shape) == tuple(v.shape))
        score = (names, shapes, -len(prefix))
        if score > best_score:
            best, best_score = prefix, score
    return best, best_score[0]


def _bind(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
    prefix, _ = best_prefix(source, target)

    def map_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        if not key.startswith(prefix):
            return None
        k = key[len(prefix) :]
        if k not in target and (matches_any(k, HEAD_PATTERNS) or matches_any(k, DECODER_PATTERNS)):
            return None
        return k, value

    return map_key


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    if not target:
        return 0.0
    prefix, found = best_prefix(source, target)
    exact = (
        prefix == ""
        and found == len(target)
        and len(source) == len(target)
        and all(tuple(source[prefix + k].shape) == tuple(v.shape) for k, v in target.items())
    )
    # the module's own state dict, exactly: surer than any family guess; otherwise a fallback below them
    return 1.2 if exact else 0.55 * found / len(target)


MONAI = Adapter(
    name="monai",
    family="any",
    description="MONAI-native keys under the best-matching prefix (bundles' models/model.pt, save_pretrained files)",
    detect=_detect,
    bind=_bind,
    reference="https://docs.monai.io/en/stable/bundle_intro.html",
)
