"""Backbone cost table: parameters, forward+backward time per sample and peak memory, 2D and 3D.

Each (backbone, spatial_dims) runs in its own subprocess so that peak memory is that configuration's alone.
On CPU, "peak MiB" is the process's peak resident set size (it includes PyTorch itself, about 0.5 GiB) and
"growth MiB" is how far that peak rose above the level right after the model was built, i.e. the memory
for activations and gradients of the training steps. On a GPU both are ``torch.cuda.max_memory_allocated``. Times are the median over ``--repeats`` steps after ``--warmup`` steps.

    python benchmarks/backbones.py                      # every backbone, 2D 224^2 and 3D 96^3, batch 1
    python benchmarks/backbones.py --pattern 'resnet*' --dims 2 --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SIZES = {2: 224, 3: 96}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run_one(name: str, spatial_dims: int, batch: int, warmup: int, repeats: int, device: str) -> dict:
    import torch

    from monai_transfer.networks import create_backbone

    torch.manual_seed(0)
    size = SIZES[spatial_dims]
    kwargs = {"img_size": size} if name.startswith("vit") else {}
    model = create_backbone(name, spatial_dims=spatial_dims, in_channels=1, **kwargs).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 1, *([size] * spatial_dims), device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.forward_features(x).float().pow(2).mean().backward()

    base = _rss_mib()
    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mib()
    return {
        "backbone": name,
        "dims": spatial_dims,
        "input": "x".join([str(size)] * spatial_dims),
        "params_m": params / 1e6,
        "ms_per_sample": 1000 * statistics.median(times) / batch,
        # CPU: the peak RSS of the whole process (model, optimizer-free grads, activations); GPU: allocator peak
        "peak_mib": peak,
        "peak_growth_mib": peak - base if device == "cpu" else peak,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pattern", default=None, help="shell pattern over backbone names (default: all)")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "DIMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.one:
        row = run_one(args.one[0], int(args.one[1]), args.batch, args.warmup, args.repeats, device)
        print(json.dumps(row))
        return

    from monai_transfer.networks import get_backbone_config, list_backbones

    rows = []
    header = f"{'backbone':<20}{'dims':>5}{'input':>12}{'params (M)':>12}{'fwd+bwd ms/sample':>20}{'peak MiB':>11}{'growth MiB':>12}"
    print(f"device={device} batch={args.batch} median of {args.repeats} steps after {args.warmup} warm-up step(s)")
    print(header)
    print("-" * len(header))
    for name in list_backbones(args.pattern):
        for dims in args.dims:
            if dims not in get_backbone_config(name).spatial_dims:
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "--one", name, str(dims), "--batch", str(args.batch),
                   "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--device", device]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name:<20}{dims:>5}  failed: {proc.stderr.strip().splitlines()[-1]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{name:<20}{dims:>5}{row['input']:>12}{row['params_m']:>12.2f}{row['ms_per_sample']:>20.1f}"
                  f"{row['peak_mib']:>11.0f}{row['peak_growth_mib']:>12.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
