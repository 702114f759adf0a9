"""MoCo v2 across two CPU processes (gloo): Shuffle BN helpers and the shared queue."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
B = 4  # per rank


def _worker(r: int, init_file: str) -> None:
    from monai_transfer.losses.distributed import gather_no_grad
    from monai_transfer.networks import create_backbone
    from monai_transfer.ssl import create_method
    from monai_transfer.ssl.methods._common import batch_shuffle_ddp, batch_unshuffle_ddp

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        # the shuffled slices partition the global batch, and unshuffling returns each rank's own rows in order
        torch.manual_seed(r)  # rank 0's permutation is broadcast, so the seeds may differ
        full = torch.arange(WORLD * B, dtype=torch.float32).unsqueeze(1)
        local = full[r * B : (r + 1) * B]
        shuffled, idx_unshuffle = batch_shuffle_ddp(local)
        assert sorted(gather_no_grad(shuffled).flatten().tolist()) == full.flatten().tolist()
        assert torch.equal(batch_unshuffle_ddp(shuffled * 10, idx_unshuffle), local * 10)

        # MoCo v2: the keys of both ranks enter both queues, each key in its sample's place. The key encoder's batch
        # norms use running statistics here, so a key depends on its sample alone and the single-process keys of
        # the global batch are the reference for the shuffled, unshuffled, gathered ones.
        torch.manual_seed(0)
        backbone = create_backbone("resnet10", spatial_dims=2, widen_factor=0.25)
        method = create_method(
            "moco_v2", backbone, hidden_dim=32, projection_dim=16, queue_size=32, gather_distributed=True
        ).train()
        method.teacher_backbone.eval()
        method.teacher_projector.eval()
        x = torch.randn(WORLD * B, 1, 32, 32, generator=torch.Generator().manual_seed(1))
        method({"image_v1": x[r * B : (r + 1) * B], "image_v2": x.flip(-1)[r * B : (r + 1) * B]})["loss"].backward()
        with torch.no_grad():
            keys = method.teacher_projector(method.teacher_backbone.forward_features(x.flip(-1)))
        queue = method.criterion.queue
        assert int(method.criterion.queue_ptr) == WORLD * B
        assert torch.allclose(queue[: WORLD * B], torch.nn.functional.normalize(keys, dim=1), atol=1e-5)
        assert torch.equal(*gather_no_grad(queue[None]))  # the same queue on both ranks
    finally:
        dist.destroy_process_group()


@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_moco_v2_shuffle_bn_and_queue_across_two_gloo_ranks() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"),), nprocs=WORLD, join=True)
