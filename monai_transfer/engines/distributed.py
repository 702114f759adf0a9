"""DDP set-up for every run under ``torchrun`` (one process per device): process group, device, wrapping, handlers.

The helpers every layer needs (``rank``, ``world_size``, ``unwrap``, ``is_main_process``, gathers, ``barrier``) live in
:mod:`monai_transfer.utils.distributed` and are re-exported here; this module holds the run scaffold's set-up.

``torchrun --nproc_per_node N`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and starts the process group (NCCL on CUDA, gloo on CPU).

Batch normalisation: on CUDA, :func:`wrap_ddp` converts BatchNorm layers to ``SyncBatchNorm`` so the statistics are
those of the global batch, as in a single process. ``SyncBatchNorm`` refuses CPU tensors (and DDP refuses CPU modules
holding it), so on CPU each rank normalises with the statistics of its own slice of the batch: a CPU DDP run with
BatchNorm is *not* numerically the single-process run on the global batch (a warning says so; the equivalence tests
use group, layer or instance norm).

Bundle configs: :func:`per_rank_batch_size` and :func:`main_process_handlers` are written to be ``_target_``
components of a ``multi_gpu_train.json`` (see :mod:`monai_transfer.bundle.templates.multi_gpu`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from monai_transfer.utils.distributed import barrier, is_initialized, is_main_process, rank, unwrap, world_size

__all__ = [
    "init_distributed",
    "local_device",
    "wrap_ddp",
    "unwrap",
    "is_main_process",
    "is_distributed",
    "rank",
    "world_size",
    "barrier",
    "cleanup",
    "per_rank_batch_size",
    "main_process_handlers",
    "validation_sampler",
    "MAIN_PROCESS_ONLY",
]

logger = logging.getLogger(__name__)

#: Handlers that only write outputs (logs, event files, checkpoints, progress bars): under DDP they run on rank 0.
#: Fully qualified class names of MONAI and ignite, matched against each handler's class and its bases (no import
#: needed). Our own writers say so themselves (a ``main_process_only = True`` class attribute), so this layer names
#: nothing above it. Handlers that take part in collectives (MONAI's ``MetricsSaver``, ``ValidationHandler`` with
#: sharded validation, metric handlers) and handlers that change the training (schedules, early stopping) stay on
#: every rank.
MAIN_PROCESS_ONLY: tuple[str, ...] = (
    "monai.handlers.stats_handler.StatsHandler",
    "monai.handlers.tensorboard_handlers.TensorBoardHandler",
    "monai.handlers.mlflow_handler.MLFlowHandler",
    "monai.handlers.clearml_handlers.ClearMLHandler",
    "monai.handlers.checkpoint_saver.CheckpointSaver",
    "ignite.handlers.tqdm_logger.ProgressBar",
)


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


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def wrap_ddp(module: nn.Module, device: torch.device | str | None = None, **ddp_kwargs: Any) -> nn.Module:
    """Wrap ``module`` (already on ``device``) in ``DistributedDataParallel``.

    On CUDA, BatchNorm layers become ``SyncBatchNorm`` first (in place: the parameters and running statistics are the
    same tensors, so an optimizer built before keeps working). On CPU they are kept (see the module docstring:
    per-rank statistics, logged as a warning). Without an initialised process group the module is returned
    unchanged, so single-process code can call this unconditionally.

    Args:
        module: the network (or SSL method).
        device: the rank's device (:func:`local_device`); default: the device of the module's first parameter.
        ddp_kwargs: passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``).
    """
    if not is_distributed():
        return module
    if device is None:
        first = next(module.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        ddp_kwargs.setdefault("device_ids", [device.index if device.index is not None else torch.cuda.current_device()])
    elif _has_batchnorm(module) and dist.get_world_size() > 1:
        logger.warning(
            "DDP on %s: BatchNorm layers normalise with each rank's own slice of the batch (SyncBatchNorm is CUDA "
            "only), so the result differs from one process on the global batch", device,
        )  # fmt: skip
    return nn.parallel.DistributedDataParallel(module, **ddp_kwargs)


def cleanup() -> None:
    """Destroy the process group if one is initialised (call at the end of a ``torchrun`` script)."""
    if is_distributed():
        dist.destroy_process_group()


def per_rank_batch_size(global_batch_size: int, num_replicas: int | None = None) -> int:
    """The batch each rank loads so that one step sees ``global_batch_size`` samples over all ranks.

    Raises:
        ValueError: ``global_batch_size`` is not a positive multiple of the number of ranks (a silent rounding would
            change the effective batch, hence the learning rate it was tuned for).
    """
    n = world_size() if num_replicas is None else int(num_replicas)
    b = int(global_batch_size)
    if b < 1 or b % n:
        raise ValueError(
            f"the global batch size {b} must be a positive multiple of the number of ranks ({n}); "
            f"choose a batch size divisible by {n} or another number of processes"
        )
    return b // n


def _qualnames(obj: Any) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__}


def main_process_handlers(
    handlers: Iterable[Any] | None, main_only: Sequence[str] | None = None
) -> list[Any] | None:
    """``handlers`` on rank 0; on the other ranks, without the ones that only write outputs.

    Args:
        handlers: ignite/MONAI handlers (a bundle's ``train#handlers`` or ``validate#handlers``); ``None`` stays
            ``None``.
        main_only: fully qualified class names (a handler matches through any of its bases) dropped on ranks > 0;
            default: :data:`MAIN_PROCESS_ONLY` and the handlers whose class sets ``main_process_only = True``.
    """
    if handlers is None:
        return None
    handlers = list(handlers)
    if is_main_process():
        return handlers
    if main_only is None:
        names = set(MAIN_PROCESS_ONLY)
        return [h for h in handlers if not (_qualnames(h) & names or getattr(type(h), "main_process_only", False))]
    names = set(main_only)
    return [h for h in handlers if not (_qualnames(h) & names)]


def validation_sampler(dataset: Any) -> Any:
    """Under DDP, MONAI's ``DistributedSampler`` over ``dataset`` without shuffling or padding (each case is
    evaluated once; MONAI's metric handlers gather the ranks' cases); with one process ``None`` (the loader's order)."""
    if world_size() <= 1:
        return None
    from monai.data import DistributedSampler

    return DistributedSampler(dataset, shuffle=False, even_divisible=False)
