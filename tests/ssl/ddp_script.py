"""The SSLTrainer under DDP (torchrun, gloo on CPU) and in one process, for the equivalence test (test_ddp.py).

``python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_script.py OUT`` trains the toy method (group
norm, NT-Xent gathering negatives across ranks, an EMA teacher) for 3 plain-SGD steps on a global batch of 8
(4 per rank, split by SeededSampler); rank 0 writes the final weights to ``OUT.pt`` and the per-step losses
(averaged over ranks) to ``OUT.json``. ``train()`` without torchrun is the single-process reference (batch 8).
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from ignite.engine import Events

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy_method import build, toy_data, toy_views  # noqa: E402

from monai_transfer.ssl import distributed as dist_utils  # noqa: E402
from monai_transfer.ssl.data import make_ssl_dataloader  # noqa: E402
from monai_transfer.ssl.trainer import SSLTrainer  # noqa: E402

GLOBAL_BATCH, N, LR = 8, 24, 0.5


def train() -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train 3 steps (one epoch of N / GLOBAL_BATCH); return the final weights and the per-step mean losses."""
    distributed = dist_utils.init_distributed()
    world = dist_utils.world_size()
    method = build(seed=0, norm="group", gather=True)  # the same initial weights on every rank
    model = dist_utils.wrap_ddp(method, torch.device("cpu"))
    loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=GLOBAL_BATCH // world, seed=3)
    # plain SGD: an optimizer that normalises the gradient (Adam) would hide a wrong gradient scale
    optimizer = torch.optim.SGD(method.parameters(), lr=LR)
    trainer = SSLTrainer(device="cpu", max_epochs=1, train_data_loader=loader, method=model, optimizer=optimizer)
    losses: list[float] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        loss = engine.state.output["loss"].clone()
        if distributed:
            dist.all_reduce(loss)
            loss /= world
        losses.append(float(loss))

    trainer.run()
    return {k: v.clone() for k, v in method.state_dict().items()}, losses


def main() -> None:
    torch.set_num_threads(1)
    out = sys.argv[1]
    weights, losses = train()
    if dist_utils.is_main_process():
        torch.save(weights, out + ".pt")
        with open(out + ".json", "w", encoding="utf-8") as f:
            json.dump({"losses": losses, "world_size": dist_utils.world_size()}, f)
    dist_utils.cleanup()


if __name__ == "__main__":
    main()
