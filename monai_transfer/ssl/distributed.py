"""Helpers to run the SSL trainer under ``torchrun`` (one process per device).

The helpers every layer needs (``rank``, ``world_size``, ``unwrap``, ``is_main_process``, gathers) live in
:mod:`monai_transfer.utils.distributed` and are re-exported here; this module keeps the process-group set-up.

``torchrun --nproc_per_node N script.py`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them and starts the process group (NCCL on CUDA, gloo on CPU).

Batch normalisation: on CUDA, :func:`wrap_ddp` converts BatchNorm layers to ``SyncBatchNorm`` so the statistics are
those of the global batch, as in a single process. ``SyncBatchNorm`` refuses CPU tensors, so on CPU each rank
normalises with the statistics of its own slice of the batch: a CPU DDP run with BatchNorm is *not* numerically the
single-process run on the global batch (the equivalence tests use group / layer / instance norm).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from monai_transfer.utils.distributed import is_initialized, is_main_process, rank, unwrap, world_size

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

logger = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def is_distributed() -> bool:
    """Whether a process group is initialised (with any number of ranks): ``utils.distributed.is_initialized``.

    Not ``utils.distributed.is_distributed``, which also asks for more than one rank.
    """
    return is_initialized()


def init_distributed(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Start the process group from the ``torchrun`` environment; a no-op outside ``torchrun``.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.
        timeout_s: collective timeout in seconds (default: torch's).

    Returns:
        True when running with more than one rank (the process group is then initialised), else False.
        Called again after initialisation, returns the same answer without initialising twice.
    """
    if is_distributed():
        return dist.get_world_size() > 1
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        # each process drives the device of its local rank; NCCL requires it set before the first collective
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
    kwargs: dict[str, Any] = {"backend": backend}
    if timeout_s is not None:
        kwargs["timeout"] = timedelta(seconds=float(timeout_s))
    dist.init_process_group(**kwargs)
    logger.info("initialised %s process group: rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return True


def local_device(device: torch.device | str | None = None) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when ``device`` is CUDA (or ``None`` with CUDA available), else CPU."""
    device = torch.device(device) if device is not None else None
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return torch.device("cuda", _env_int("LOCAL_RANK", 0))
    return device


def wrap_ddp(method: nn.Module, device: torch.device | str, **ddp_kwargs: Any) -> nn.Module:
    """Wrap ``method`` (already on ``device``) in ``DistributedDataParallel``.

    On CUDA, BatchNorm layers become ``SyncBatchNorm`` first (in place, EMA teachers included). On CPU they are kept
    (see the module docstring: per-rank statistics). Without an initialised process group the method is returned
    unchanged, so single-process code can call this unconditionally.

    Args:
        method: the SSL method (an ``nn.Module``).
        device: the rank's device (:func:`local_device`).
        ddp_kwargs: passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``).
    """
    if not is_distributed():
        return method
    device = torch.device(device)
    if device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        ddp_kwargs.setdefault("device_ids", [device.index if device.index is not None else torch.cuda.current_device()])
    return nn.parallel.DistributedDataParallel(method, **ddp_kwargs)


def cleanup() -> None:
    """Destroy the process group if one is initialised (call at the end of a ``torchrun`` script)."""
    if is_distributed():
        dist.destroy_process_group()
