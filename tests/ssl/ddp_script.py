"""The SSLTrainer under DDP (torchrun, gloo on CPU) and in one process, for the equivalence test (test_ddp.py).

``python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_script.py OUT`` trains, one after the other,
the toy method (group norm, NT-Xent gathering negatives across ranks, an EMA teacher) and the real SimCLR on a small
ResNet-10 (its batch norms replaced by group norms, no head norm: per-rank BN statistics are not the global batch's
on CPU) for 3 plain-SGD steps each on a global batch of 8 (4 per rank, split by EpochSampler); rank 0 writes the
final weights to ``OUT_<name>.pt`` and the per-step losses (averaged over ranks) to ``OUT_<name>.json``.
``train(name)`` without torchrun is the single-process reference (batch 8).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy_method import build, toy_data, toy_views  # noqa: E402

from monai_transfer.engines import distributed as dist_utils  # noqa: E402
from monai_transfer.ssl.data import make_ssl_dataloader  # noqa: E402
from monai_transfer.ssl.trainer import NonFiniteLossError, SSLTrainer  # noqa: E402

GLOBAL_BATCH, N = 8, 24
NAMES = ("toy", "simclr")


def _without_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm by a per-sample GroupNorm(1, C) (statistics that do not depend on the batch split)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.GroupNorm(1, child.num_features))
        else:
            _without_batch_norm(child)
    return module


def _setup(name: str) -> tuple[nn.Module, list, object, float]:
    if name == "toy":
        return build(seed=0, norm="group", gather=True), toy_data(N), toy_views(), 0.5
    from monai_transfer.networks import create_backbone
    from monai_transfer.ssl import create_method
    from monai_transfer.ssl.views import make_views

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = _without_batch_norm(create_backbone("resnet10", spatial_dims=2, widen_factor=0.25))
        method = create_method(
            "simclr", backbone, projection_dim=16, hidden_dim=32, head_norm=None, gather_distributed=True
        )
    rng = np.random.default_rng(0)
    images = [{"image": rng.normal(0, 1, (1, 32, 32)).astype(np.float32)} for _ in range(N)]
    return method, images, make_views("simclr", 2, 24, "ct"), 0.05


def train(name: str = "toy") -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train 3 steps (one epoch of N / GLOBAL_BATCH); return the final weights and the per-step mean losses."""
    distributed = dist_utils.init_distributed()
    world = dist_utils.world_size()
    method, data, views, lr = _setup(name)  # the same initial weights on every rank
    model = dist_utils.wrap_ddp(method, torch.device("cpu"))
    loader = make_ssl_dataloader(data, views, batch_size=GLOBAL_BATCH // world, seed=3)
    # plain SGD: an optimizer that normalises the gradient (Adam) would hide a wrong gradient scale
    optimizer = torch.optim.SGD(method.parameters(), lr=lr)
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


def nonfinite_on_one_rank(out: str) -> None:
    """Rank 1 alone gets a NaN at iteration 2 (no gathering: rank 0's loss stays finite); every rank must raise
    NonFiniteLossError at that step instead of waiting forever in DDP's gradient all-reduce. Writes
    ``OUT_nan_rank<r>.json`` with what each rank saw."""
    method = build(seed=0, norm="group", gather=False)
    model = dist_utils.wrap_ddp(method, torch.device("cpu"))
    loader = make_ssl_dataloader(toy_data(N), toy_views(), batch_size=GLOBAL_BATCH // dist_utils.world_size(), seed=3)
    trainer = SSLTrainer("cpu", 1, loader, model, torch.optim.SGD(method.parameters(), lr=0.1))
    local_losses = []

    @trainer.on(Events.ITERATION_STARTED)
    def poison(engine):
        if engine.state.iteration == 2 and dist_utils.rank() == 1:
            engine.state.batch["image_v1"][0, 0, 0, 0] = float("nan")

    @trainer.on(IterationEvents.FORWARD_COMPLETED)
    def record(engine):
        local_losses.append(float(engine.state.output["loss"]))

    try:
        trainer.run()
        seen = {"error": None}
    except NonFiniteLossError as e:
        seen = {"error": str(e), "iteration": e.iteration}
    seen["local_losses"] = local_losses
    with open(f"{out}_nan_rank{dist_utils.rank()}.json", "w", encoding="utf-8") as f:
        json.dump(seen, f)


def main() -> None:
    torch.set_num_threads(1)
    out = sys.argv[1]
    for name in NAMES:
        weights, losses = train(name)
        if dist_utils.is_main_process():
            torch.save(weights, f"{out}_{name}.pt")
            with open(f"{out}_{name}.json", "w", encoding="utf-8") as f:
                json.dump({"losses": losses, "world_size": dist_utils.world_size()}, f)
    if dist_utils.world_size() > 1:
        nonfinite_on_one_rank(out)
        # the NaN run left DDP's reducer waiting for a backward that never came; destroying it at interpreter exit
        # can abort (std::terminate in a gloo thread) after the results are written. Meet, then leave without
        # finalisers: what is tested is on disk.
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    dist_utils.cleanup()


if __name__ == "__main__":
    main()
