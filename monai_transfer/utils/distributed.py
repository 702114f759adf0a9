"""Helpers for losses that need tensors or statistics from every DDP rank.

``gather_with_grad`` follows the ``GatherLayer`` of solo-learn / lightly and the ``FullGatherLayer`` of the official
VICReg code (Bardes et al. 2022, arXiv:2105.04906): ``all_gather`` in the forward pass, and in the backward pass the
gradients of every rank's copy are summed (``all_reduce``) and the local slice is returned, so the gradient of the
local part is kept. All helpers are no-ops when ``torch.distributed`` is not available or not initialised.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_mean",
    "check_pair",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


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


def check_pair(name: str, z1: torch.Tensor, z2: torch.Tensor, min_batch: int = 1) -> None:
    """Raise ``ValueError`` unless ``z1`` and ``z2`` are both ``(B, D)`` with the same shape and ``B >= min_batch``."""
    if z1.ndim != 2 or z2.ndim != 2:
        raise ValueError(f"{name} expects two embeddings of shape (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if z1.shape != z2.shape:
        raise ValueError(
            f"{name} expects inputs of the same shape (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    if z1.shape[0] < min_batch:
        raise ValueError(f"{name} needs a batch size of at least {min_batch}, got {z1.shape[0]}.")
