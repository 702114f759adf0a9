"""Exact, resumable data for SSL pretraining: every sample's random views are a pure function of (seed, epoch, index).

* :class:`~monai_transfer.engines.EpochSampler` with ``sample_seeds=True`` (and ``drop_last=True``: SSL losses want
  full batches) shuffles with a generator seeded by ``(seed, epoch)``, splits the order across DDP ranks (strided, as
  ``torch.utils.data.DistributedSampler``) and yields ``(index, sample_seed)`` pairs with
  ``sample_seed = sample_seed(seed, epoch, index)``. MONAI's ``Workflow`` calls ``set_epoch(engine.state.epoch)`` at
  every ``EPOCH_STARTED``. ``skip(n)`` drops the first ``n`` samples of the next pass, which is how a run resumed in the
  middle of an epoch continues with the batches it has not seen.
* :class:`SeededViewDataset` reseeds the view transform (``Compose.set_random_state`` propagates to every random
  transform) with the item's own seed before applying it, so the views do not depend on the worker that builds them,
  the number of workers, the rank, or where the run was resumed.
* An optional deterministic ``cache_transform`` (loading, orientation, intensity scaling) runs once up front, as in
  MONAI's ``CacheDataset``; only the random part runs per item.

Global random number generators are never read: the loader gets its own ``torch.Generator`` (otherwise
``DataLoader`` draws a worker base seed from torch's global generator at every epoch, which would shift the random
stream of dropout in the model between an uninterrupted and a resumed run).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data.utils import list_data_collate
from torch.utils.data import DataLoader, Dataset

from monai_transfer.engines.sampling import MAX_SEED, EpochSampler, check_seed, epoch_permutation, sample_seed

__all__ = ["sample_seed", "epoch_permutation", "SeededViewDataset", "make_ssl_dataloader"]

_MAX_SEED = MAX_SEED
_check_seed = check_seed


class SeededViewDataset(Dataset):
    """Apply a random view transform reseeded per item: ``dataset[(index, seed)]``.

    Args:
        data: the items (usually dicts such as ``{"image": path}``), read-only.
        transform: the random part (a MONAI ``Compose`` or any object with ``set_random_state(seed=...)``).
        cache_transform: deterministic part applied once to every item at construction (``CacheDataset``-like;
            the cached results are deep-copied before the random part runs, so they are never modified).
            ``None``: ``transform`` does all the work on the raw items.

    Raises:
        TypeError: ``transform`` has no ``set_random_state``; an item is requested by a plain integer.
    """

    def __init__(self, data: Sequence[Any], transform: Callable, cache_transform: Callable | None = None) -> None:
        if not hasattr(transform, "set_random_state"):
            raise TypeError(
                f"transform must be reseedable (a monai.transforms.Compose or Randomizable with set_random_state), "
                f"got {type(transform).__name__}."
            )
        self.data = data
        self.transform = transform
        self.cache_transform = cache_transform
        self._cache: list[Any] | None = None
        if cache_transform is not None:
            self._cache = [cache_transform(item) for item in data]
        # reseeding and applying must not interleave between threads (thread-based loaders share the transform)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def __getstate__(self) -> dict[str, Any]:  # worker processes get their own lock
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def item(self, index: int, seed: int) -> Any:
        """The views of item ``index`` drawn with ``seed``."""
        if self._cache is not None:
            item = copy.deepcopy(self._cache[index])
        else:
            item = self.data[index]
            item = dict(item) if isinstance(item, Mapping) else item
        with self._lock:
            self.transform.set_random_state(seed=int(seed) % _MAX_SEED)
            return self.transform(item)

    def __getitem__(self, key: tuple[int, int]) -> Any:  # type: ignore[override]
        if not isinstance(key, (tuple, list)) or len(key) != 2:
            raise TypeError(
                f"SeededViewDataset items are requested as (index, sample_seed) (from an EpochSampler with "
                f"sample_seeds=True), got {key!r}; "
                f"use dataset.item(index, seed) to draw one directly."
            )
        return self.item(int(key[0]), int(key[1]))


def make_ssl_dataloader(
    data: Sequence[Any],
    transform: Callable,
    batch_size: int,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = True,
    shuffle: bool = True,
    cache_transform: Callable | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    collate_fn: Callable | None = None,
    **loader_kwargs: Any,
) -> DataLoader:
    """A ``DataLoader`` over :class:`SeededViewDataset` with a seeded ``EpochSampler`` (exact and resumable).

    Args:
        data: the items (dicts), read-only.
        transform: the random view transform (reseeded per item).
        batch_size: per rank (the global batch is ``batch_size * num_replicas``).
        seed: base seed of the order and the views.
        num_workers: loader processes; the views are the same for any value.
        drop_last: drop the last incomplete batch (and the sampler's uneven tail); SSL losses want full batches.
        shuffle: shuffle per epoch.
        cache_transform: deterministic part cached once (see :class:`SeededViewDataset`).
        num_replicas, rank: default: from the process group.
        pin_memory, persistent_workers: as in ``DataLoader``.
        collate_fn: default MONAI's ``list_data_collate`` (MetaTensor aware).
        loader_kwargs: other ``DataLoader`` arguments (``prefetch_factor``, ``timeout``...).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    dataset = SeededViewDataset(data, transform, cache_transform=cache_transform)
    sampler = EpochSampler(dataset, seed=seed, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                           drop_last=drop_last, sample_seeds=True)  # fmt: skip
    # a private generator: DataLoader would otherwise draw its worker base seed from torch's global generator
    loader_kwargs.setdefault("generator", torch.Generator().manual_seed(_check_seed(seed)))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=int(num_workers),
        drop_last=drop_last,
        collate_fn=list_data_collate if collate_fn is None else collate_fn,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        **loader_kwargs,
    )
