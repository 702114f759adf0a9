"""What a checkpoint adapter is, the adapter registry, and helpers shared by the adapters.

An adapter turns a published checkpoint layout into the MONAI keys of our backbones. Its core is a pure function
``(key, tensor) -> (key, tensor) | None``: a new name (and possibly a reshaped tensor), or ``None`` for a key it
recognises and drops on purpose (a classifier head, a projection head, a decoder, a momentum encoder). Keys it
does not recognise pass through unchanged and end up as "unexpected" in the load report. Around that core:

* ``detect(source, target) -> score``: how sure the adapter is that a checkpoint is in its layout (0: not at all,
  higher: surer), used by ``source="auto"``;
* ``bind(source, target) -> key function``: for adapters whose mapping depends on the whole checkpoint (which of
  several prefixes holds the backbone); the default returns ``map_key``;
* ``finalize(state_dict) -> state_dict``: a pure whole-dict step for conversions that combine tensors (timm's class
  token position embedding folded into ``cls_token``);
* ``defaulted``: regexes of module keys the source never provides and the module does not need.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from monai_transfer.utils.registry import Registry

__all__ = [
    "KeyFn",
    "Adapter",
    "COMMON_PREFIXES",
    "HEAD_PATTERNS",
    "DEFAULTED_PATTERNS",
    "register_adapter",
    "get_adapter",
    "list_adapters",
    "detect_adapter",
    "strip_prefixes",
    "matches_any",
    "convert_state_dict",
]

KeyFn = Callable[[str, torch.Tensor], "tuple[str, torch.Tensor] | None"]
Scorer = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], float]

# wrappers that training code adds in front of a backbone's keys: DataParallel/DDP, Lightning, SSL frameworks
COMMON_PREFIXES: tuple[str, ...] = ("module.", "model.", "backbone.", "encoder.", "_orig_mod.")

# heads that a backbone never has; dropped (and reported as dropped) by the adapters
HEAD_PATTERNS: tuple[str, ...] = (
    r"^fc\.",
    r"^classifier\.",
    r"^head\.",
    r"^heads\.",
    r"^head_dist\.",
    r"^class_layers\.out\.",
    r"^classification_head\.",
    r"^op_threshs$",
)

# module keys whose absence from a checkpoint is harmless: batch-norm counters (older PyTorch did not save them),
# relative-position indices (a function of the window size), and MONAI ViT blocks' cross-attention norm (unused
# unless the block is built with cross-attention)
DEFAULTED_PATTERNS: tuple[str, ...] = (
    r"(^|\.)num_batches_tracked$",
    r"(^|\.)relative_position_index$",
    r"(^|\.)norm_cross_attn\.(weight|bias)$",
)


def strip_prefixes(key: str, prefixes: Iterable[str] = COMMON_PREFIXES) -> str:
    """Remove any sequence of the given leading prefixes (``module.backbone.conv1.weight`` -> ``conv1.weight``)."""
    prefixes = tuple(prefixes)
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix) and len(key) > len(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def matches_any(key: str, patterns: Iterable[str]) -> bool:
    """Whether ``key`` matches one of the regexes (``re.search``)."""
    return any(re.search(p, key) for p in patterns)


def _static(fn: KeyFn | None) -> Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], KeyFn]:
    def bind(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
        if fn is None:
            raise ValueError("Adapter has neither map_key nor bind.")
        return fn

    return bind


@dataclass(frozen=True)
class Adapter:
    """A checkpoint layout and how to read it.

    Attributes:
        name: registry name, e.g. ``"torchvision-resnet"``.
        family: backbone family it produces keys for (``"resnet"``, ``"densenet"``, ``"vit"``, ``"swin"``,
            ``"any"``).
        description: one line for users.
        detect: ``(source, target) -> score``; 0 when the layout is not recognised, higher when surer. Family
            layouts score in ``(0, 1]``; layouts that wrap a family layout (an SSL checkpoint's ``backbone.``, an
            exact copy of the module's own state dict) score above 1 so that they win.
        map_key: the pure key function, when it does not depend on the checkpoint as a whole.
        bind: ``(source, target) -> key function``, when it does.
        finalize: pure ``dict -> dict`` step after renaming.
        defaulted: regexes of module keys the source never provides and the module does not need (added to
            ``DEFAULTED_PATTERNS``).
        reference: paper or URL describing the layout.
    """

    name: str
    family: str
    description: str
    detect: Scorer
    map_key: KeyFn | None = None
    bind: Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], KeyFn] | None = None
    finalize: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    defaulted: tuple[str, ...] = field(default_factory=tuple)
    reference: str = ""

    def key_fn(self, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
        """The key function for this checkpoint and target."""
        return (self.bind or _static(self.map_key))(source, target)


def convert_state_dict(
    adapter: Adapter, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a checkpoint with an adapter.

    Returns:
        ``(converted, dropped)``: the renamed tensors, and the original names of keys the adapter dropped.

    Raises:
        ValueError: two checkpoint keys map to the same name (the adapter is wrong for this checkpoint).
    """
    fn = adapter.key_fn(source, target)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in source.items():
        result = fn(key, value)
        if result is None:
            dropped.append(key)
            continue
        new_key, new_value = result
        if new_key in out:
            raise ValueError(
                f"Adapter {adapter.name!r} maps both {origin[new_key]!r} and {key!r} to {new_key!r}; "
                "the checkpoint is not in the layout this adapter reads (name another source=)."
            )
        out[new_key] = new_value
        origin[new_key] = key
    if adapter.finalize is not None:
        out = adapter.finalize(out)
    return out, dropped


_ADAPTERS: Registry[Adapter] = Registry("checkpoint adapter", note=" (or source='auto')")


def register_adapter(adapter: Adapter, overwrite: bool = False) -> Adapter:
    """Add an adapter; ``KeyError`` when the name is taken and ``overwrite`` is False."""
    return _ADAPTERS.register(adapter, overwrite=overwrite)


def get_adapter(name: str) -> Adapter:
    """The adapter registered under ``name``; ``KeyError`` naming close and known ones otherwise."""
    return _ADAPTERS.get(name)


def list_adapters() -> list[str]:
    """Names of the registered adapters, in detection-priority order."""
    return _ADAPTERS.names()


def detect_adapter(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> Adapter:
    """The adapter with the highest detection score (ties: the earlier registered); ``ValueError`` if none fits."""
    best: Adapter | None = None
    best_score = 0.0
    for adapter in _ADAPTERS.values():
        score = float(adapter.detect(source, target))
        if score > best_score:
            best, best_score = adapter, score
    if best is None:
        sample = list(source)[:8]
        raise ValueError(
            f"Could not recognise the checkpoint layout (first keys: {sample}). Name the layout with "
            f"source=one of {list(_ADAPTERS)}."
        )
    return best
