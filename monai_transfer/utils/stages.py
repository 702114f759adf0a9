"""Parameter stages: which named group of key prefixes a state-dict key belongs to.

Backbones name their stages with ``param_stages()`` (``{"stem": ("conv1", "bn1"), "layer1": ("layer1",), ...}``);
load reports (``weights``), freezing and layer-wise learning-rate decay (``finetune``) all speak of stages through
:func:`stage_of_key`, which therefore sits below all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["stage_of_key"]


def stage_of_key(key: str, stages: Mapping[str, Sequence[str]]) -> str:
    """Name of the stage a parameter/buffer key belongs to (``"other"`` when no prefix matches)."""
    for stage, prefixes in stages.items():
        for prefix in prefixes:
            if key == prefix or key.startswith(prefix + "."):
                return stage
    return "other"
