"""Data order and augmentation as pure functions of ``(seed, epoch)``: what makes a resumed run exact.

A run resumed at an epoch boundary sees the same batches and the same augmentations as the uninterrupted run when
nothing about epoch ``e`` depends on what happened before it:

* :class:`EpochSampler` shuffles with a generator seeded by ``(seed, epoch)`` and splits the order across DDP ranks
  (strided, as ``torch.utils.data.DistributedSampler``, so the per-rank batches of one step together are exactly
  the global batch one process draws). It subclasses ``DistributedSampler`` so that MONAI's ``Workflow`` calls
  ``set_epoch(engine.state.epoch)`` at every ``EPOCH_STARTED``, in one process as under ``torchrun``. It yields plain
  indices, so it works with any map-style dataset (MONAI's ``Dataset``, ``CacheDataset``...); with
  ``sample_seeds=True`` it yields ``(index, sample_seed(seed, epoch, index))`` pairs instead, for a dataset that
  reseeds each item's random views itself (``monai_transfer.ssl.data.SeededViewDataset``, pretraining).
* :class:`EpochSeedHandler` re-seeds the random transforms (``Compose.set_random_state`` reaches every random
  transform inside) with :func:`epoch_seed` ``(seed, epoch)`` at every ``EPOCH_STARTED``, and optionally the
  ``DataLoader``'s own generator (which draws the workers' base seed, so MONAI's ``DataLoader`` re-seeds each worker's
  transforms from it).

Global random number generators are never read here. In a bundle config::

    "train#sampler": {"_target_": "monai_transfer.engines.EpochSampler", "data_source": "@train#dataset",
                      "seed": "@seed"},
    "train#dataloader#sampler": "@train#sampler", "train#dataloader#shuffle": false,
    "train#handlers": [..., {"_target_": "monai_transfer.engines.EpochSeedHandler", "seed": "@seed",
                             "transform": "@train#preprocessing"}]

Workers: with ``num_workers > 0`` each worker process holds its own copy of the transforms; MONAI's ``DataLoader``
re-seeds them per worker from the loader's base seed, which is exact on resume when the base seed is exact (torch's
global generator is restored by :class:`~monai_transfer.engines.RunCheckpoint`, or give ``loader=`` here to re-seed a
loader's own generator per epoch). ``persistent_workers=True`` keeps the workers' random state across epochs and is
therefore *not* exact on resume.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from torch.utils.data import DistributedSampler

from monai_transfer.utils.distributed import rank as _rank
from monai_transfer.utils.distributed import world_size as _world_size

__all__ = ["MAX_SEED", "check_seed", "sample_seed", "epoch_seed", "epoch_permutation", "EpochSampler",
           "EpochSeedHandler"]  # fmt: skip

logger = logging.getLogger(__name__)

MAX_SEED = 2**32  # MONAI's Randomizable.set_random_state accepts seeds in [0, 2**32)
_EPOCH_STREAM = 0x45504F43  # "EPOC": a 5-word entropy never collides with the 2- and 3-word ones below


def check_seed(seed: Any) -> int:
    """``seed`` as an ``int`` when it is a non-negative integer, else ``ValueError``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s random views in ``epoch``: a hash of the three numbers, in ``[0, 2**32)``.

    NumPy's ``SeedSequence`` mixes the words, so nearby seeds, epochs and indices give unrelated streams.
    """
    return int(np.random.SeedSequence([check_seed(seed), int(epoch), int(index)]).generate_state(1, np.uint32)[0])


def epoch_seed(seed: int, epoch: int, stream: int = 0, rank: int = 0) -> int:
    """The seed of the random transforms in ``epoch`` (``stream``: one per seeded object; ``rank``: the DDP rank)."""
    words = [check_seed(seed), int(epoch), int(stream), int(rank), _EPOCH_STREAM]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint32)[0])


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of the ``n`` samples in ``epoch`` (identity when not shuffling)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    # a 2-word entropy ([seed, epoch]) never collides with the 3-word one of sample_seed
    return np.random.default_rng([check_seed(seed), int(epoch)]).permutation(n).astype(np.int64)


class EpochSampler(DistributedSampler):
    """Deterministic, rank-split, resumable sampler: the order of epoch ``e`` is a pure function of ``(seed, e)``.

    Like ``DistributedSampler``: every rank gets ``num_samples`` indices of the epoch's permutation, rank ``r`` the
    positions ``r, r + num_replicas, ...``; with ``drop_last`` the tail that does not divide evenly is dropped,
    otherwise the order is padded with its head. With one replica it is a seeded ``RandomSampler`` whose order does
    not depend on how many epochs ran before (so a resumed run draws the same batches).

    ``set_epoch`` takes the 1-based epoch MONAI's ``Workflow`` passes at ``EPOCH_STARTED``. ``skip(n)`` drops the
    first ``n`` samples of the next pass only (resuming in the middle of an epoch).

    Args:
        data_source: the dataset (only its length is used).
        seed: base seed of the order.
        num_replicas: number of ranks; default: the process group's size (1 when not distributed).
        rank: this rank; default: the process group's rank (0 when not distributed).
        shuffle: shuffle per epoch (``False``: dataset order).
        drop_last: drop the tail that does not divide evenly across ranks instead of padding (single process:
            nothing is dropped either way; the loader's own ``drop_last`` decides about the last batch). Pretraining
            passes ``True`` (SSL losses want full batches).
        sample_seeds: yield ``(index, sample_seed(seed, epoch, index))`` pairs instead of indices, so that every
            sample's views are a pure function of (seed, epoch, index) (``SeededViewDataset``).
    """

    def __init__(
        self,
        data_source: Sized,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        sample_seeds: bool = False,
    ) -> None:
        num_replicas = _world_size() if num_replicas is None else int(num_replicas)
        rank = _rank() if rank is None else int(rank)
        super().__init__(
            data_source, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=check_seed(seed),
            drop_last=drop_last,
        )  # fmt: skip
        self._skip = 0
        self.sample_seeds = bool(sample_seeds)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (MONAI's ``Workflow`` calls this with ``engine.state.epoch``, 1-based)."""
        self.epoch = int(epoch)

    def skip(self, n: int) -> None:
        """Drop the first ``n`` samples (of this rank) in the next pass only; used when resuming mid-epoch."""
        n = int(n)
        if not 0 <= n <= self.num_samples:
            raise ValueError(f"skip must be in [0, {self.num_samples}] (samples per rank per epoch), got {n}.")
        self._skip = n

    @property
    def pending_skip(self) -> int:
        """Samples the next pass will drop."""
        return self._skip

    def indices(self, epoch: int | None = None) -> list[int]:
        """This rank's dataset indices for ``epoch`` (default: the current one), before any skip."""
        epoch = self.epoch if epoch is None else int(epoch)
        order = epoch_permutation(len(self.dataset), self.seed, epoch, self.shuffle).tolist()
        if self.drop_last:
            order = order[: self.total_size]
        elif len(order) < self.total_size:
            pad = self.total_size - len(order)
            order += (order * (pad // max(len(order), 1) + 1))[:pad]
        return order[self.rank : self.total_size : self.num_replicas]

    def _take_skip(self) -> int:
        skip, self._skip = self._skip, 0  # one-shot: the following epochs are whole
        return skip

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int]]:  # type: ignore[override]
        if self.sample_seeds:
            return self._seeded()
        skip = self._take_skip()
        return iter(self.indices()[skip:])

    def _seeded(self) -> Iterator[tuple[int, int]]:
        # a generator: the skip and the epoch are taken when the first item is drawn, not when iter() is called
        skip = self._take_skip()
        epoch = self.epoch
        for index in self.indices(epoch)[skip:]:
            yield index, sample_seed(self.seed, epoch, index)

    def __len__(self) -> int:
        # the full per-epoch length, also after skip(): ignite and MONAI take epoch_length from len(loader)
        return self.num_samples


class EpochSeedHandler:
    """Re-seed random transforms (and optionally a loader's generator) at every ``EPOCH_STARTED``.

    The seed of epoch ``e`` is :func:`epoch_seed` ``(seed, e, stream, rank)``, so the augmentations of an epoch do not
    depend on the epochs before it and a run resumed at an epoch boundary draws the same ones. Under DDP each rank
    gets its own seed (the ranks' samples are not augmented alike); the augmentations then depend on the number of
    ranks, unlike the data order. Attach it to the trainer (in a bundle: one of ``train#handlers``).

    Args:
        seed: base seed (the run's ``seed``).
        transform: an object with ``set_random_state(seed=...)`` (a MONAI ``Compose`` or ``Randomizable``), the one
            the training dataset applies; ``None``: no transform is re-seeded.
        loader: a ``DataLoader`` whose own ``generator`` (when it has one) is re-seeded per epoch; it draws the
            workers' base seed (MONAI's ``DataLoader`` re-seeds each worker's transforms from it).
        stream: distinguishes several handlers with the same ``seed`` (each gets unrelated seeds).

    Raises:
        TypeError: ``transform`` cannot be re-seeded.
    """

    def __init__(self, seed: int, transform: Any = None, loader: Any = None, stream: int = 0) -> None:
        self.seed = check_seed(seed)
        if transform is not None and not hasattr(transform, "set_random_state"):
            raise TypeError(
                f"transform must be reseedable (a monai.transforms.Compose or Randomizable with set_random_state), "
                f"got {type(transform).__name__}."
            )
        self.transform = transform
        self.loader = loader
        self.stream = int(stream)

    def attach(self, engine: Engine) -> None:
        """Register at ``EPOCH_STARTED``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def seed_for(self, epoch: int) -> int:
        """The seed used in ``epoch`` (1-based) on this rank."""
        return epoch_seed(self.seed, epoch, self.stream, _rank())

    def apply(self, epoch: int) -> int:
        """Re-seed for ``epoch`` now; returns the seed."""
        s = self.seed_for(epoch)
        if self.transform is not None:
            self.transform.set_random_state(seed=s)
        generator = getattr(self.loader, "generator", None)
        if generator is not None:
            generator.manual_seed(s)
        return s

    def __call__(self, engine: Engine) -> None:
        s = self.apply(int(engine.state.epoch))
        logger.debug("epoch %d: transforms re-seeded with %d", engine.state.epoch, s)
