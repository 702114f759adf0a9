"""EpochSampler(sample_seeds=True) and SeededViewDataset: determinism, rank split, skip, views independent of workers
and order."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.transforms import Compose, Lambdad
from toy_method import toy_data, toy_views

from monai_transfer.engines.sampling import EpochSampler
from monai_transfer.ssl.data import (
    SeededViewDataset,
    epoch_permutation,
    make_ssl_dataloader,
    sample_seed,
)


def _seeded(data, seed, num_replicas, rank, drop_last=True):
    # pretraining's sampler: indices with their sample seeds, the uneven tail dropped
    return EpochSampler(data, seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last, sample_seeds=True)


def test_order_and_seeds_depend_only_on_seed_and_epoch():
    data = list(range(20))
    a, b = _seeded(data, seed=3, num_replicas=1, rank=0), _seeded(data, seed=3, num_replicas=1, rank=0)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert [i for i, _ in a] != [i for i, _ in b]
    assert sorted(i for i, _ in b) == list(range(20))
    assert all(s == sample_seed(3, 3, i) for i, s in b)
    c = _seeded(data, seed=4, num_replicas=1, rank=0)
    c.set_epoch(2)
    assert [i for i, _ in a] != [i for i, _ in c]


def test_sample_seed_is_a_hash():
    seeds = {sample_seed(0, e, i) for e in range(3) for i in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**32 for s in seeds)
    with pytest.raises(ValueError):
        sample_seed(-1, 0, 0)


@pytest.mark.parametrize("drop_last, n, expected_per_rank", [(True, 10, 3), (False, 10, 4)])
def test_rank_split_is_disjoint_and_matches_the_global_order(drop_last, n, expected_per_rank):
    data = list(range(n))
    parts = []
    for r in range(3):
        s = _seeded(data, seed=1, num_replicas=3, rank=r, drop_last=drop_last)
        s.set_epoch(5)
        parts.append(list(s))
        assert len(s) == expected_per_rank == len(parts[-1])
    order = epoch_permutation(n, 1, 5).tolist()
    if drop_last:
        flat = sorted(i for p in parts for i, _ in p)
        assert flat == sorted(order[:9])  # disjoint, the uneven tail dropped
    # the k-th item of every rank together are positions [3k, 3k + 3) of the global order (per-step global batch)
    for k in range(expected_per_rank):
        assert [parts[r][k][0] for r in range(3)] == (order * 2)[3 * k : 3 * k + 3]
        # a sample's seed does not depend on the rank that draws it
        assert all(parts[r][k][1] == sample_seed(1, 5, parts[r][k][0]) for r in range(3))


def test_skip_drops_the_first_samples_once():
    s = _seeded(list(range(12)), seed=0, num_replicas=2, rank=1)
    s.set_epoch(1)
    full = list(s)
    s.skip(4)
    assert s.pending_skip == 4 and len(s) == 6  # len stays the full epoch (ignite's epoch_length)
    assert list(s) == full[4:]
    assert list(s) == full  # one-shot
    with pytest.raises(ValueError, match="skip"):
        s.skip(7)


def test_dataset_views_are_a_pure_function_of_index_and_seed():
    ds = SeededViewDataset(toy_data(4), toy_views())
    a = ds[(2, 123)]
    ds[(1, 5)]  # another draw in between must not matter
    b = ds[(2, 123)]
    assert torch.equal(torch.as_tensor(a["image_v1"]), torch.as_tensor(b["image_v1"]))
    c = ds[(2, 124)]
    assert not torch.equal(torch.as_tensor(a["image_v1"]), torch.as_tensor(c["image_v1"]))
    with pytest.raises(TypeError, match="index, sample_seed"):
        ds[2]
    with pytest.raises(TypeError, match="reseedable"):
        SeededViewDataset(toy_data(2), lambda d: d)


def test_cache_transform_runs_once_and_the_cache_is_not_modified():
    calls = []

    def load(d):
        calls.append(1)
        return {"image": torch.as_tensor(d["image"]) * 2}

    data = toy_data(3)
    ds = SeededViewDataset(data, Compose([toy_views(), Lambdad("image", lambda x: x.mul_(0))]), cache_transform=load)
    assert len(calls) == 3
    before = ds._cache[0]["image"].clone()
    out = ds[(0, 7)]
    assert torch.equal(ds._cache[0]["image"], before) and float(out["image"].abs().sum()) == 0.0
    assert len(calls) == 3


def _batches(num_workers: int, epoch: int) -> list[dict]:
    loader = make_ssl_dataloader(
        toy_data(12), toy_views(), batch_size=4, seed=11, num_workers=num_workers, num_replicas=1, rank=0
    )
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_views_do_not_depend_on_the_number_of_workers():
    serial, parallel = _batches(0, 2), _batches(2, 2)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        for key in ("image_v1", "image_v2"):
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key]))
    assert not torch.equal(torch.as_tensor(_batches(0, 3)[0]["image_v1"]), torch.as_tensor(serial[0]["image_v1"]))


def test_loader_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    _batches(0, 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_monai_workflow_sets_the_epoch():
    from monai.engines import Trainer

    class Recorder(Trainer):
        def _iteration(self, engine, batch):
            return None

    loader = make_ssl_dataloader(toy_data(8), toy_views(), batch_size=4, seed=0, num_replicas=1, rank=0)
    trainer = Recorder(device="cpu", max_epochs=3, data_loader=loader)
    epochs = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: epochs.append(loader.sampler.epoch))
    trainer.run()
    assert epochs == [1, 1, 2, 2, 3, 3]
