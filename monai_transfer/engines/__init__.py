"""The run scaffold every run shares: device, precision (``amp``, memory layout, compilation), learning-rate schedule,
running a bundle config, the one versioned atomic checkpoint with exact resume (``RunCheckpoint``, ``EpochSampler``,
``EpochSeedHandler``) and the DDP set-up.

Pretraining, fine-tuning, evaluation and inference are MONAI bundle configs run by ``monai.bundle.ConfigWorkflow``
(the code path of ``python -m monai.bundle run``); :func:`run_config` is how the command line and the Python API run
them, after applying ``id=value`` overrides and saving the resolved config beside the outputs.
"""

from __future__ import annotations

from monai_transfer.engines.bf16_guard import guard_bf16_convs
from monai_transfer.engines.checkpoint import CheckpointLoadError, RunCheckpoint, RunExistsError, load_checkpoint
from monai_transfer.engines.device import default_device
from monai_transfer.engines.distributed import (
    cleanup,
    init_distributed,
    local_device,
    main_process_handlers,
    per_rank_batch_size,
    wrap_ddp,
)
from monai_transfer.engines.environment import environment_record
from monai_transfer.engines.lr_schedule import WarmupCosineHandler, warmup_cosine_factor
from monai_transfer.engines.precision import PrecisionInferer, monai_amp, prepare_network, resolve_precision
from monai_transfer.engines.sampling import EpochSampler, EpochSeedHandler, epoch_seed
from monai_transfer.engines.workflow import ConfigRun, parse_overrides, run_config

__all__ = [
    "default_device",
    "environment_record",
    "resolve_precision",
    "PrecisionInferer",
    "prepare_network",
    "guard_bf16_convs",
    "monai_amp",
    "WarmupCosineHandler",
    "warmup_cosine_factor",
    "ConfigRun",
    "parse_overrides",
    "run_config",
    "RunCheckpoint",
    "RunExistsError",
    "CheckpointLoadError",
    "load_checkpoint",
    "EpochSampler",
    "EpochSeedHandler",
    "epoch_seed",
    "init_distributed",
    "local_device",
    "wrap_ddp",
    "cleanup",
    "per_rank_batch_size",
    "main_process_handlers",
]
