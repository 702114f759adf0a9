"""Builders of a pretraining bundle config: the device, the backbone and the SSL method.

The initial weights are drawn from generators seeded by the config's ``seed`` (one stream for the backbone, one for the
method's heads), never from torch's global generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from monai_transfer.ssl.checks import check_method_kwargs, method_options
from monai_transfer.utils.distributed import world_size

__all__ = ["run_device", "build_backbone", "build_method"]


def run_device(device: str | torch.device | None = None) -> torch.device:
    """The device of this process: ``device`` (default CUDA when available, else CPU); under ``torchrun`` with more
    than one rank, CUDA becomes ``cuda:LOCAL_RANK``."""
    from monai_transfer.engines.device import default_device
    from monai_transfer.engines.distributed import local_device

    return local_device(device) if world_size() > 1 else default_device(device)


def _seeded(seed: int, stream: int) -> int:
    # independent streams for the backbone (0) and the method's heads (1), both a pure function of the config's seed
    return int(np.random.SeedSequence([int(seed), 0x53534C, int(stream)]).generate_state(1, np.uint32)[0])


def build_backbone(
    name: str,
    spatial_dims: int,
    in_channels: int = 1,
    seed: int = 0,
    pretrained: str | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """``create_backbone(name, ...)`` with its initial weights drawn from a generator seeded by ``seed``.

    Torch's global generator is forked, so building the network leaves no trace on it.
    """
    from monai_transfer.networks import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seeded(seed, 0))
        try:
            return create_backbone(name, spatial_dims, in_channels, pretrained=pretrained, **kwargs)
        except TypeError as e:  # an option the network does not take: name it, without a traceback
            raise ValueError(f"backbone_kwargs: backbone {name!r} does not take {sorted(kwargs)}: {e}") from None


def build_method(
    name: str,
    backbone: torch.nn.Module,
    seed: int = 0,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """The SSL method ``name`` around ``backbone``, its heads drawn from a generator seeded by ``seed``, on ``device``.

    Under ``torchrun`` with more than one rank, a method whose loss can gather negatives or batch statistics across
    ranks does so (``gather_distributed=True`` unless given): the loss then equals the single-process one.

    Raises:
        ValueError: an option the method does not take or of the wrong type (:func:`check_method_kwargs`).
    """
    from monai_transfer.ssl.registry import create_method

    check_method_kwargs(name, kwargs)
    _, params, _ = method_options(name)
    if world_size() > 1 and "gather_distributed" in params:
        kwargs.setdefault("gather_distributed", True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seeded(seed, 1))
        method = create_method(name, backbone, **kwargs)
    return method.to(torch.device(device)) if device is not None else method
