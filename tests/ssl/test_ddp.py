"""Two CPU ranks (torchrun, gloo) train exactly like one process on the same global batch.

Gradient scale (no extra factor needed): each rank's NT-Xent is the mean over its ``2B`` local rows, against negatives gathered from all ranks.
``gather_with_grad`` sums, in its backward, the gradients that every rank's loss sends to this rank's rows, so rank
``r``'s parameter gradient is the gradient of the *sum* of the ``W`` rank losses through rank ``r``'s own forward
pass; DDP then averages over the ``W`` ranks, giving the gradient of ``(1 / W) * sum_r loss_r``, the mean over all
``2 * W * B`` rows, which is the single-process loss on the global batch. The consistency (MSE) term is a per-rank
mean of equal-sized slices, so its DDP average is the global mean too. No extra scaling is needed; the test below
uses plain SGD so a factor of ``W`` anywhere would show.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ddp_script import NAMES, _setup, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path):
    """The toy method and SimCLR (ResNet-10 with group norms), each 3 SGD steps, in one torchrun launch."""
    out = tmp_path / "ddp"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "ddp_script.py"),
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for name in NAMES:
        result = json.loads(Path(f"{out}_{name}.json").read_text())
        assert result["world_size"] == 2
        ddp_weights = torch.load(f"{out}_{name}.pt", weights_only=True)

        reference, ref_losses = train(name)  # one process, batch 8, the same samples and views per step
        assert len(ref_losses) == len(result["losses"]) == 3
        assert result["losses"] == pytest.approx(ref_losses, abs=1e-5), name
        initial = _setup(name)[0].state_dict()
        moved = False
        for k, v in reference.items():
            assert torch.allclose(ddp_weights[k].float(), v.float(), atol=1e-5), (name, k)
            moved |= v.is_floating_point() and not torch.allclose(v, initial[k], atol=1e-3)
        assert moved, name  # the steps changed the weights: not a comparison of two initialisations
    assert int(torch.load(f"{out}_toy.pt", weights_only=True)["num_updates"]) == 3

    # a NaN on rank 1 only: both ranks stop at iteration 2 with NonFiniteLossError (no hang in DDP's all-reduce)
    seen = [json.loads(Path(f"{out}_nan_rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["iteration"] for s in seen] == [2, 2], seen
    assert all("iteration 2" in s["error"] for s in seen)
    assert math.isfinite(seen[0]["local_losses"][-1]) and math.isnan(seen[1]["local_losses"][-1])


def test_single_process_helpers(monkeypatch):
    from toy_method import build

    from monai_transfer.engines import distributed as dist_utils

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist_utils.init_distributed() is False and not dist_utils.is_distributed()
    assert dist_utils.is_main_process() and dist_utils.world_size() == 1 and dist_utils.rank() == 0
    method = build(norm="batch")
    assert dist_utils.wrap_ddp(method, "cpu") is method  # no process group: unchanged, BatchNorm kept
    assert isinstance(method.backbone.norm, torch.nn.BatchNorm2d)
    assert dist_utils.unwrap(torch.nn.DataParallel(method)) is method
    assert dist_utils.local_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert dist_utils.local_device("cuda") == torch.device("cuda", 3)
    dist_utils.cleanup()  # a no-op without a process group
