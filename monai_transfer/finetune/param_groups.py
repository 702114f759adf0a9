"""Optimizer parameter groups by stage, with weight decay kept off norms and biases.

Weight decay on normalisation scales/shifts and biases only shrinks them without regularising the function the
network computes; excluding them is the practice of Goyal et al. 2017 (arXiv:1706.02677, "no bias decay") and of
BEiT / timm (Bao et al. 2022, arXiv:2106.08254).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from monai_transfer.networks.base import stage_of_key
from monai_transfer.networks.weight_decay import NORM_TYPES, no_weight_decay_names

__all__ = [
    "NORM_TYPES",
    "get_param_stages",
    "no_weight_decay_names",
    "stage_param_groups",
    "backbone_stage_names",
    "trainable_parameter_names",
]


def get_param_stages(net: nn.Module) -> dict[str, tuple[str, ...]]:
    """``net.param_stages()`` (ordered stage name -> parameter-name prefixes), or a clear error when absent."""
    fn = getattr(net, "param_stages", None)
    if not callable(fn):
        raise TypeError(
            f"{type(net).__name__} has no param_stages(); fine-tuning strategies need a TransferNet "
            "(monai_transfer.networks.create_transfer_net) or a module that lists its stages."
        )
    stages = dict(fn())
    if "head" not in stages:
        raise ValueError(f"param_stages() of {type(net).__name__} has no 'head' stage: {list(stages)}")
    return stages


def backbone_stage_names(net: nn.Module) -> list[str]:
    """The stages other than ``"head"``, shallow to deep."""
    return [s for s in get_param_stages(net) if s != "head"]


def trainable_parameter_names(net: nn.Module) -> set[str]:
    """Names of the parameters with ``requires_grad`` set."""
    return {n for n, p in net.named_parameters() if p.requires_grad}


def stage_param_groups(
    net: nn.Module,
    stage_lrs: Mapping[str, float],
    weight_decay: float = 0.0,
    stages: Mapping[str, Sequence[str]] | None = None,
) -> list[dict]:
    """Optimizer parameter groups for the given stages, two per stage (with and without weight decay).

    Args:
        net: the network; parameters are matched to stages by ``net.param_stages()`` prefixes.
        stage_lrs: stage name -> learning rate; only these stages get groups (in this order). Parameters that match
            no stage are put in stage ``"other"`` and need an ``"other"`` entry here, else a ``ValueError`` names them.
        weight_decay: decay for the decaying group; the norm/bias group always has ``weight_decay=0``.
        stages: the stage map; default ``get_param_stages(net)``.

    Returns:
        A list of dicts ``{"params", "lr", "weight_decay", "stage", "decay"}`` (empty groups dropped), ready for any
        ``torch.optim`` optimizer; ``stage`` and ``decay`` are extra keys that handlers use to find groups again.
    """
    stage_map = dict(stages) if stages is not None else get_param_stages(net)
    no_decay = no_weight_decay_names(net)
    buckets: dict[str, tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]] = {s: ([], []) for s in stage_lrs}
    unassigned: list[str] = []
    for name, p in net.named_parameters():
        stage = stage_of_key(name, stage_map)
        if stage not in buckets:
            if stage == "other" and "other" not in stage_lrs:
                unassigned.append(name)
            continue
        buckets[stage][1 if name in no_decay else 0].append(p)
    if unassigned:
        raise ValueError(
            f"parameters outside every stage of param_stages(): {unassigned[:5]}{'...' if len(unassigned) > 5 else ''}"
        )
    groups = []
    for stage, lr in stage_lrs.items():
        decay, plain = buckets[stage]
        if decay:
            groups.append({"params": decay, "lr": float(lr), "weight_decay": float(weight_decay), "stage": stage,
                           "decay": True})  # fmt: skip
        if plain:
            groups.append({"params": plain, "lr": float(lr), "weight_decay": 0.0, "stage": stage, "decay": False})
    return groups
