"""Kept so that existing imports work: the DDP helpers live in :mod:`monai_transfer.utils.distributed` (every layer
uses them) and ``check_pair`` in :mod:`monai_transfer.losses.checks`."""

from __future__ import annotations

from monai_transfer.losses.checks import check_pair
from monai_transfer.utils.distributed import (
    all_reduce_mean,
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    rank,
    world_size,
)

__all__ = [
    "all_reduce_mean",
    "check_pair",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
]
