"""Is CPU bfloat16 autocast exact enough for each convolution shape, and does the guard cover the shapes where not?

For every configuration (2D/3D, convolution or transposed convolution, channels, input size, kernel, stride) one
layer runs forward and backward on the same random batch in float32 and under ``torch.autocast("cpu",
dtype=torch.bfloat16)``; the relative error ||g_bf16 - g_fp32|| / ||g_fp32|| of the output, the input gradient and
the weight gradient is taken, worst of ``--repeats`` batches. bfloat16 rounding alone gives about 0.003. A
configuration fails when an error is above ``--tolerance`` (default 0.05) or not finite. Then the same is run with
``monai_transfer.engines.bf16_guard.guard_bf16_convs`` applied, which sends inputs smaller than the kernel to
float32.

    python benchmarks/bf16_conv_check.py                # the default grid, 2 threads
    python benchmarks/bf16_conv_check.py --threads 1 --repeats 5

Prints every failing configuration, then a summary: configurations run, failing without the guard, failing with it.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import platform

import torch
from torch import nn

from monai_transfer.engines.bf16_guard import guard_bf16_convs, input_below_kernel


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    n = float(b.norm())
    d = float((a - b).norm())
    return d / n if n > 0 else d


def _errors(layer: nn.Module, x: torch.Tensor) -> list[float]:
    """Relative errors (output, input gradient, weight gradient) of bfloat16 autocast against float32."""
    res = []
    for amp in (False, True):
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = layer(xx)
        weights = torch.linspace(-1, 1, y.numel()).view_as(y)  # a loss whose gradient differs per output voxel
        (y.float() * weights).sum().backward()
        res.append((y.detach().float(), xx.grad.clone(), layer.weight.grad.clone()))
        layer.weight.grad = None
    return [_rel(res[1][i], res[0][i]) for i in range(3)]


def _layer(dims: int, transposed: bool, ch: int, k: int, stride: int) -> nn.Module:
    if transposed:
        cls = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        return cls(ch, ch, k, stride=stride, padding=(k - 1) // 2, output_padding=stride - 1 if k % 2 else 0,
                   bias=False)  # fmt: skip
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return cls(ch, ch, k, stride=stride, padding=k // 2, bias=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
          f"batch {args.batch}, {args.repeats} batches per configuration, tolerance {args.tolerance}")  # fmt: skip
    grid = itertools.product((2, 3), (False, True), (32, 128), (1, 2, 3, 4, 5, 6), (1, 3, 5), (1, 2))
    n = failing = failing_guarded = 0
    print("| dims | layer | channels | input | kernel | stride | out err | dx err | dW err | guarded dW err | guard |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dims, transposed, ch, size, k, stride in grid:
        if transposed and (k == 1 or stride == 1):
            continue
        if dims == 3 and k == 5 and ch > 32:
            continue
        layer = _layer(dims, transposed, ch, k, stride)
        guarded = guard_bf16_convs(copy.deepcopy(layer))
        worst, worst_g = [0.0] * 3, [0.0] * 3
        for _ in range(args.repeats):
            x = torch.randn(args.batch, ch, *([size] * dims))
            worst = [max(w, e) if e == e else float("inf") for w, e in zip(worst, _errors(layer, x))]
            worst_g = [max(w, e) if e == e else float("inf") for w, e in zip(worst_g, _errors(guarded, x))]
        n += 1
        bad, bad_g = max(worst) > args.tolerance, max(worst_g) > args.tolerance
        failing += bad
        failing_guarded += bad_g
        if bad or bad_g:
            fp32 = "float32" if input_below_kernel(x, layer.kernel_size) else "bfloat16"
            print(f"| {dims}D | {'transposed' if transposed else 'conv'} | {ch} | {size} | {k} | {stride} | "
                  f"{worst[0]:.3g} | {worst[1]:.3g} | {worst[2]:.3g} | {worst_g[2]:.3g} | {fp32} |", flush=True)  # fmt: skip
    print(f"\n{n} configurations: {failing} fail in bfloat16 without the guard, {failing_guarded} with it")


if __name__ == "__main__":
    main()
