"""Two CPU ranks (torchrun, gloo) train exactly like one process on the same global batch.

Gradient scale: each rank's NT-Xent is the mean over its ``2B`` local rows, against negatives gathered from all ranks.
``gather_with_grad`` sums, in its backward, the gradients that every rank's loss sends to this rank's rows, so rank
``r``'s parameter gradient is the gradient of the *sum* of the ``W`` rank losses through rank ``r``'s own forward
pass; DDP then averages over the ``W`` ranks, giving the gradient of ``(1 / W) * sum_r loss_r``, the mean over all
``2 * W * B`` rows, which is the single-process loss on the global batch. The consistency (MSE) term is a per-rank
mean of equal-sized slices, so its DDP average is the global mean too. No extra scaling is needed; the test below
uses plain SGD so a factor of ``W`` anywhere would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ddp_script import train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "ddp_script.py"), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["world_size"] == 2
    ddp_weights = torch.load(out.with_suffix(".pt"), weights_only=True)

    reference, ref_losses = train()  # one process, batch 8, the same samples and views per step
    assert len(ref_losses) == len(result["losses"]) == 3
    assert result["losses"] == pytest.approx(ref_losses, abs=1e-5)
    moved = False
    for k, v in reference.items():
        assert torch.allclose(ddp_weights[k].float(), v.float(), atol=1e-5), (k, (ddp_weights[k] - v).abs().max())
        moved |= k.startswith("projector") and not torch.equal(v, train.__globals__["build"](seed=0).state_dict()[k])
    assert moved  # the steps changed the weights (the comparison is not between two initialisations)
    assert int(ddp_weights["num_updates"]) == 3
