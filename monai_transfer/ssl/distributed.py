"""Helpers to run the SSL trainer under ``torchrun`` (one process per device).

The process-group set-up moved to :mod:`monai_transfer.engines.distributed` (the run scaffold every run shares) and
is re-exported here, with the helpers of :mod:`monai_transfer.utils.distributed`; see there for the BatchNorm caveat
on CPU.
"""

from __future__ import annotations

from monai_transfer.engines.distributed import (
    cleanup,
    init_distributed,
    is_distributed,
    is_main_process,
    local_device,
    rank,
    unwrap,
    world_size,
    wrap_ddp,
)

__all__ = [
    "init_distributed",
    "local_device",
    "wrap_ddp",
    "unwrap",
    "is_main_process",
    "is_distributed",
    "rank",
    "world_size",
    "cleanup",
]
