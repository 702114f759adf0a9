"""EpochSampler and EpochSeedHandler: order and augmentations are pure functions of (seed, epoch)."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, RandGaussianNoised
from torch.utils.data import DataLoader, DistributedSampler

from monai_transfer.engines import EpochSampler, EpochSeedHandler, epoch_seed
from monai_transfer.engines.sampling import epoch_permutation


def test_order_is_a_function_of_seed_and_epoch_only():
    data = list(range(20))
    a, b = EpochSampler(data, seed=3, num_replicas=1, rank=0), EpochSampler(data, seed=3, num_replicas=1, rank=0)
    for e in (1, 2, 3):
        a.set_epoch(e)
    b.set_epoch(3)  # b never saw epochs 1 and 2
    assert list(a) == list(b) == epoch_permutation(20, 3, 3).tolist()
    assert sorted(a) == data
    b.set_epoch(4)
    assert list(a) != list(b)
    c = EpochSampler(data, seed=4, num_replicas=1, rank=0)
    c.set_epoch(3)
    assert list(a) != list(c)
    assert isinstance(a, DistributedSampler)  # so MONAI's Workflow calls set_epoch at EPOCH_STARTED


@pytest.mark.parametrize("n", [16, 17])
def test_rank_batches_together_are_the_global_batch(n):
    """Two ranks with per-rank batch 2: step k of the ranks together draws the samples of step k of one process
    with batch 4 (n=16 divides evenly; n=17 pads rank 1 with the head of the order)."""
    data = list(range(n))
    one = EpochSampler(data, seed=1, num_replicas=1, rank=0)
    ranks = [EpochSampler(data, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_epoch(5)
    single = list(one)
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == (n + 1) // 2
    for k in range(n // 4):
        assert sorted(parts[0][2 * k : 2 * k + 2] + parts[1][2 * k : 2 * k + 2]) == sorted(single[4 * k : 4 * k + 4])


def test_skip_is_one_shot_and_checked():
    s = EpochSampler(list(range(10)), seed=0, num_replicas=1, rank=0)
    s.set_epoch(2)
    full = list(s)
    s.skip(4)
    assert s.pending_skip == 4 and list(s) == full[4:] and list(s) == full and len(s) == 10
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        s.skip(11)
    with pytest.raises(ValueError, match="non-negative"):
        EpochSampler(list(range(4)), seed=-1)


def test_epoch_seed_is_a_hash_of_its_words():
    seeds = {epoch_seed(0, e, s, r) for e in range(1, 20) for s in range(3) for r in range(2)}
    assert len(seeds) == 19 * 3 * 2 and all(0 <= v < 2**32 for v in seeds)
    assert epoch_seed(7, 3) == epoch_seed(7, 3, 0, 0)


def _augmented(handler: EpochSeedHandler, transform, epoch: int) -> torch.Tensor:
    handler.apply(epoch)
    return torch.stack([transform({"image": torch.zeros(1, 4, 4)})["image"] for _ in range(3)])


def test_seed_handler_makes_an_epoch_augmentations_independent_of_the_past():
    transform = Compose([RandGaussianNoised(keys="image", prob=1.0, std=1.0)])
    handler = EpochSeedHandler(seed=5, transform=transform)
    e3 = _augmented(handler, transform, 3)
    _augmented(handler, transform, 1), _augmented(handler, transform, 2)
    assert torch.equal(_augmented(handler, transform, 3), e3)  # same epoch, same draws, whatever ran before
    assert not torch.equal(_augmented(handler, transform, 4), e3)
    other = EpochSeedHandler(seed=5, transform=transform, stream=1)
    assert not torch.equal(_augmented(other, transform, 3), e3)
    with pytest.raises(TypeError, match="reseedable"):
        EpochSeedHandler(seed=0, transform=lambda x: x)


def _loader_orders(generator_seed: int) -> list[list[int]]:
    """The per-epoch orders a shuffling DataLoader (own generator) gives in a 2-epoch MONAI run."""
    generator = torch.Generator().manual_seed(generator_seed)
    loader = DataLoader(list(range(8)), batch_size=2, shuffle=True, generator=generator)
    seen: list[list[int]] = []
    net = torch.nn.Linear(1, 1)
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=2, train_data_loader=loader, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=torch.nn.MSELoss(),
        iteration_update=lambda engine, batch: seen.append(batch.tolist()) or {},
    )  # fmt: skip
    EpochSeedHandler(seed=2, loader=loader).attach(trainer)
    trainer.run()
    return [sum(seen[i : i + 4], []) for i in (0, 4)]


def test_seed_handler_reseeds_a_loaders_generator_at_epoch_started():
    first, other = _loader_orders(0), _loader_orders(999)  # the generator's own state no longer matters
    assert first == other
    assert first[0] != first[1] and sorted(first[0]) == sorted(first[1]) == list(range(8))
