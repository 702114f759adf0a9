"""Small helpers the joint-embedding method specs share: running views through a module, the teacher copy, the
backbone family, and MoCo's shuffle BN across DDP ranks. The skeleton itself: :mod:`monai_transfer.ssl.methods.joint`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from monai_transfer.utils.distributed import gather_no_grad, is_distributed, rank, world_size

__all__ = [
    "backbone_family",
    "batch_shuffle_ddp",
    "batch_unshuffle_ddp",
    "forward_views",
    "frozen_copy",
    "uses_batch_statistics",
]


def uses_batch_statistics(module: nn.Module) -> bool:
    """Whether a forward of ``module`` mixes samples of the batch (a batch norm in training mode, or one without
    running statistics)."""
    return any(isinstance(m, _BatchNorm) and (m.training or not m.track_running_stats) for m in module.modules())


def forward_views(
    fn: Callable[[torch.Tensor], torch.Tensor], views: Sequence[torch.Tensor], module: nn.Module, separate: bool
) -> list[torch.Tensor]:
    """``[fn(v) for v in views]``, computed with concatenated calls where the method allows it (faster).

    Consecutive views of the same shape are concatenated into one call (DINO's multi-crop wrapper does this per
    crop resolution), unless ``separate`` is set and ``module`` has batch statistics.

    Args:
        fn: the forward to run (``backbone.forward_features``, a head).
        views: tensors ``(B_i, ...)``.
        module: the module ``fn`` runs, inspected for batch norms.
        separate: the method wants batch statistics per view (its official code forwards views one by one). The
            views are then still concatenated when ``module`` has no batch statistics (ViT, Swin, layer-norm heads),
            as the result is the same.
    """
    views = list(views)
    if len(views) <= 1 or (separate and uses_batch_statistics(module)):
        return [fn(v) for v in views]
    runs: list[list[torch.Tensor]] = []
    for v in views:
        if runs and runs[-1][0].shape[1:] == v.shape[1:]:
            runs[-1].append(v)
        else:
            runs.append([v])
    out: list[torch.Tensor] = []
    for run in runs:
        if len(run) == 1:
            out.append(fn(run[0]))
        else:
            out.extend(fn(torch.cat(run)).split([v.shape[0] for v in run]))
    return out


def frozen_copy(module: nn.Module) -> nn.Module:
    """A ``copy.deepcopy`` of ``module`` with ``requires_grad=False``: an EMA teacher, updated by ``ema_update``.

    The copy stays in the mode of ``module`` (train in training): the teachers of MoCo, BYOL and DINO use batch
    statistics in their batch norms, as in the official code.
    """
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


def backbone_family(backbone: nn.Module) -> str | None:
    """The registry family (``"resnet"``, ``"vit"``...) of a backbone built with ``create_backbone``; else ``None``."""
    name = getattr(backbone, "backbone_name", None)
    if name is None:
        return None
    from monai_transfer.networks.registry import get_backbone_config

    try:
        return get_backbone_config(name).family
    except KeyError:
        return None


# -- MoCo's shuffle BN (He et al. 2020, arXiv:1911.05722, Sec. 3.3), after the official moco/builder.py ----------------
@torch.no_grad()
def batch_shuffle_ddp(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Give each rank a random slice of the global batch, so the key encoder's batch-norm statistics are computed on
    other samples than the query encoder's (this stops the model from recognising its positive key by the
    statistics of its own sub-batch). Returns ``(x, None)`` unchanged when not distributed.

    Every rank must pass the same batch size. The permutation drawn on rank 0 is broadcast (torch's default RNG, as
    dropout and the official code).
    """
    if not is_distributed():
        return x, None
    x_all = gather_no_grad(x)
    idx_shuffle = torch.randperm(x_all.shape[0], device=x.device)
    dist.broadcast(idx_shuffle, src=0)
    idx_unshuffle = torch.argsort(idx_shuffle)
    return x_all[idx_shuffle.view(world_size(), -1)[rank()]], idx_unshuffle


@torch.no_grad()
def batch_unshuffle_ddp(x: torch.Tensor, idx_unshuffle: torch.Tensor | None) -> torch.Tensor:
    """Undo ``batch_shuffle_ddp``: rank ``r`` gets back the outputs of its own samples, in its own order."""
    if idx_unshuffle is None:
        return x
    x_all = gather_no_grad(x)
    return x_all[idx_unshuffle.view(world_size(), -1)[rank()]]
