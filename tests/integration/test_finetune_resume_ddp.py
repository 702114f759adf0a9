"""Fine-tuning under ``torchrun`` (2 gloo ranks on the CPU) gives the single-process result on the global batch, and
a DDP run killed with SIGKILL resumes bit-identically.

The toy bundle config of ``tests/engines/finetune_toy.py`` (ResNet-10 with group norm, plain SGD, 3 epochs of 4 steps,
global batch 4) runs once in one process and once with ``multi_gpu_overrides`` merged over it under
``torchrun --standalone --nproc_per_node 2`` (2 samples per rank and step).

Tolerance: the final weights agree within ``atol=1e-5``. They cannot be bit-identical: DDP all-reduces the mean of
each rank's half-batch gradient and divides by 2, where one process takes the mean over the whole batch, so the
floating-point sums run in another order (an ulp or so per step). Measured on this run: at most 1.2e-7 absolute
difference over all weights after 12 SGD steps (with AdamW instead, 8.9e-6: Adam divides by the root of the second
moment, which amplifies differences in tiny gradients). The bound is about 100x the measured SGD difference, far
below the size of one step (lr 1e-2). The validation metric (AUROC over the sharded validation set, gathered across
ranks) is the single-process one exactly.

What makes the runs comparable: the same initial weights (``create_transfer_net(seed=)``), the same data order
(``EpochSampler`` splits the seeded order of each epoch so that the ranks' batches of a step together are the
single-process batch), no dropout and no augmentation (random streams are per rank), and group norm (BatchNorm on
CPU normalises each rank's slice; ``SyncBatchNorm`` is CUDA only).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "engines"
ARGS = ["--norm", '["group", {"num_groups": 4}]', "--dropout", "0", "--no-augment", "--optimizer", "torch.optim.SGD"]
ATOL = 1e-5


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TOY), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")  # fmt: skip
    env.pop("MT_TEST_KILL_AT_EPOCH", None)
    return env


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path):
    script = str(TOY / "finetune_toy.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp_cmd = [*torchrun, script, str(tmp_path / "ddp"), str(tmp_path / "ddp.pt"), "--multi-gpu", *ARGS]
    ddp = subprocess.Popen(ddp_cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    single = subprocess.run([sys.executable, script, str(tmp_path / "one"), str(tmp_path / "one.pt"), *ARGS], cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    out, _ = ddp.communicate(timeout=300)
    assert ddp.returncode == 0, out[-4000:]
    assert single.returncode == 0, single.stderr[-3000:]

    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    ref = torch.load(tmp_path / "one.pt", weights_only=True)
    assert got["world_size"] == 2 and ref["world_size"] == 1
    assert got["iteration"] == ref["iteration"] == 12  # 16 samples, global batch 4: 4 steps an epoch on both
    assert got["best_metric"] == ref["best_metric"]  # validation sharded, the metric gathered: the same value

    from monai_transfer.networks import create_transfer_net

    initial = create_transfer_net("resnet10", task="classification", spatial_dims=2, in_channels=1, num_classes=2,
                                  backbone_kwargs={"norm": ("group", {"num_groups": 4}), "widen_factor": 0.25},
                                  head_kwargs={"dropout": 0.0}, seed=0).state_dict()  # fmt: skip
    assert got["weights"].keys() == ref["weights"].keys() == initial.keys()
    worst, moved = 0.0, 0.0
    for k, v in ref["weights"].items():
        worst = max(worst, float((got["weights"][k].double() - v.double()).abs().max()))
        moved = max(moved, float((v.double() - initial[k].double()).abs().max()))
    assert worst <= ATOL, f"DDP and single-process weights differ by {worst:.3g}"
    assert moved > 100 * ATOL  # the runs trained: not a comparison of two initialisations

    # only rank 0 wrote: one best model, one run checkpoint, holding the bare network's keys
    ckpt = torch.load(tmp_path / "ddp" / "models" / "last.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2 and ckpt["finished"] is True
    assert not any(k.startswith("module.") for k in ckpt["network"])
    best = torch.load(tmp_path / "ddp" / "models" / "model.pt", weights_only=True)
    assert best.keys() == initial.keys()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_killed_ddp_run_resumes_with_bit_identical_weights(tmp_path):
    """2 gloo ranks, batch norm, a dropout head, AdamW and random augmentations: SIGKILLed at the start of epoch 2 and
    resumed with ``resume=auto`` under torchrun, the run ends bit-identical to the uninterrupted one (each rank gets
    its own RNG streams back from ``rng_ranks``)."""
    script = str(TOY / "finetune_toy.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

    def launch(name: str, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
        env = _env()
        if kill_at is not None:
            env["MT_TEST_KILL_AT_EPOCH"] = str(kill_at)
        cmd = [*torchrun, script, str(tmp_path / name), str(tmp_path / f"{name}.pt"), "--multi-gpu", *args]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    full = launch("full")
    assert full.returncode == 0, full.stderr[-4000:]
    killed = launch("cut", kill_at=2)
    assert killed.returncode != 0  # torchrun reports the SIGKILLed ranks
    assert torch.load(tmp_path / "cut" / "models" / "last.pt", weights_only=True)["engine"]["epoch"] == 1
    resumed = launch("cut", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    ref, got = torch.load(tmp_path / "full.pt", weights_only=True), torch.load(tmp_path / "cut.pt", weights_only=True)
    assert got["resumed_from"] and sorted(got["losses"]) == list(range(5, 13))
    assert got["losses"] == {i: ref["losses"][i] for i in range(5, 13)}
    for k, v in ref["weights"].items():
        assert torch.equal(got["weights"][k], v), k
