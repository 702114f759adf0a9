"""Data loaders of a fine-tuning run: a MONAI ``DataLoader`` over a (cached) dataset, seeded, with our data checks'
own messages surfaced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import Compose

__all__ = ["make_loader"]


def make_loader(
    entries: Sequence[Mapping[str, Any]],
    transform: Compose,
    batch_size: int,
    train: bool,
    seed: int = 0,
    cache: bool = True,
    num_workers: int = 0,
) -> DataLoader:
    """A MONAI ``DataLoader`` over a (cached) dataset; training shuffles with a seeded generator and drops a last
    batch of one (batch-norm cannot train on a single pooled sample)."""
    data = [dict(e) for e in entries]
    if not data:
        raise ValueError("no entries to load")
    transform.set_random_state(seed=seed)
    try:
        ds = (
            CacheDataset(data, transform, cache_rate=1.0, num_workers=0, progress=False)
            if cache
            else Dataset(data, transform)
        )
    except Exception as e:
        # MONAI wraps a transform's error as "applying transform ..."; surface our data checks' own message
        cause: BaseException | None = e.__cause__
        while cause is not None and not (isinstance(cause, ValueError) and cause.__cause__ is None):
            cause = cause.__cause__
        if cause is not None:
            raise ValueError(str(cause)) from e
        raise
    generator = torch.Generator().manual_seed(seed)
    drop_last = train and len(data) % batch_size == 1 and len(data) > 1
    return DataLoader(
        ds,
        batch_size=min(batch_size, len(data)),
        shuffle=train,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator if train else None,
    )
