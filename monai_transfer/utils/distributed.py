"""DDP helpers shared by every layer: rank, world size, gathers and reductions across ranks, barrier, unwrap.

Losses gather embeddings or statistics from every rank; SSL methods gather keys for queues; the data layer shards by
rank; the run scaffold writes outputs on rank 0 only. Process-group *set-up* (``init_distributed``, ``wrap_ddp``)
belongs to the run scaffold, not here.

``gather_with_grad`` follows the ``GatherLayer`` of solo-learn / lightly and the ``FullGatherLayer`` of the official
VICReg code (Bardes et al. 2022, arXiv:2105.04906): ``all_gather`` in the forward pass, and in the backward pass the
gradients of every rank's copy are summed (``all_reduce``) and the local slice is returned, so the gradient of the
local part is kept. All helpers are no-ops when ``torch.distributed`` is not available or not initialised.

Two predicates, not to be confused: :func:`is_initialized` (a process group exists, any number of ranks) and
:func:`is_distributed` (a process group with more than one rank: the collectives would do something).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_reduce_mean",
    "barrier",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "is_initialized",
    "is_main_process",
    "rank",
    "unwrap",
    "world_size",
]


def is_initialized() -> bool:
    """Whether ``torch.distributed`` is available and a process group is initialised (with any number of ranks)."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Rank 0, or not distributed: the process that writes outputs."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (``torch.distributed.barrier``); a no-op without an initialised process group."""
    if is_initialized():
        dist.barrier()


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` (or ``module`` itself)."""
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


class _GatherLayer(torch.autograd.Function):
    """``all_gather`` whose backward sums the gradients over ranks and returns the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        all_grads = torch.stack(grads)
        dist.all_reduce(all_grads)
        return all_grads[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping the gradient of the local part.

    Args:
        x: tensor ``(B, ...)``; every rank must pass the same shape.

    Returns:
        ``(world_size * B, ...)``, rank ``r``'s rows at ``[r * B, (r + 1) * B)``; ``x`` itself when not distributed.
    """
    if not is_distributed():
        return x
    return torch.cat(_GatherLayer.apply(x), dim=0)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (no gradient); ``x`` unchanged when not distributed."""
    if not is_distributed():
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 without gradient (e.g. keys for a MoCo queue)."""
    if not is_distributed():
        return x.detach()
    with torch.no_grad():
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.detach().contiguous())
    return torch.cat(out, dim=0)
