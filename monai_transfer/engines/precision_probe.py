"""The paired probe behind ``amp: auto`` on CPU: how much faster bfloat16 autocast runs this network, and whether
its gradients still agree with float32.

The probe runs on a deep copy of the network in evaluation mode (batch norms use their running statistics, dropout is
off: a batch of one sample works, and fp32 and bfloat16 see the same function), inside ``torch.random.fork_rng`` with
its own generator: the caller's network, its statistics and every random stream are left as they were. The bfloat16
side runs with the small-input convolution guard (:mod:`monai_transfer.engines.bf16_guard`) a run would use.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from monai_transfer.engines.bf16_guard import guard_bf16_convs

__all__ = ["GRAD_TOLERANCE", "OUTPUT_TOLERANCE", "compare_numerics", "probe_autocast", "summarise_rounds"]

#: the largest relative error of a weight's gradient (convolution and linear weights: tensors of 2 dimensions or more)
#: under bfloat16 autocast, against float32, that counts as rounding. Measured on this project's development CPU at
#: initialisation (evaluation mode, docs/benchmarks.md): healthy networks reach 0.16 (ResNet-18 2D), 0.38 (ResNet-50
#: 2D at 224^2) and 0.01 (ViT-S/16); the wrong oneDNN kernels of bf16_guard give 0.6 to 1.4, or inf and NaN. Norm and
#: bias gradients are sums that cancel, so their relative error says little: only their finiteness is checked
GRAD_TOLERANCE = 0.55
#: the same for the network's output (healthy: under 0.01)
OUTPUT_TOLERANCE = 0.1


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, Mapping) else out if isinstance(out, (list, tuple)) else ()
    for v in values:
        try:
            return _first_tensor(v)
        except TypeError:
            continue
    raise TypeError(f"the network returned no tensor ({type(out).__name__})")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    if not torch.isfinite(a).all():
        return float("inf")
    n = float(b.norm())
    d = float((a - b).norm())
    return d / n if n > 0 else d


def compare_numerics(
    net: torch.nn.Module,
    x: torch.Tensor,
    call: Callable[[torch.nn.Module, torch.Tensor], Any],
    dev: torch.device,
    dtype: torch.dtype,
    backward: bool,
) -> dict[str, Any]:
    """One pass in float32 and one under autocast on the same input: the relative error of the output and (with
    ``backward``) of the gradient of each weight (2 dimensions or more) whose float32 norm is at least 1e-3 of the
    largest one (smaller gradients are rounding-dominated and say nothing); every gradient must be finite.

    Returns:
        ``{"output_error", "grad_error", "worst_parameter", "ok"}`` (``ok``: within :data:`OUTPUT_TOLERANCE` and
        :data:`GRAD_TOLERANCE`, everything finite).
    """
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    runs = []
    for amp in (False, True):
        with torch.autocast(dev.type, dtype=dtype, enabled=amp), torch.set_grad_enabled(backward):
            out = _first_tensor(call(net, x))
        if backward:
            (out.float() * torch.linspace(-1, 1, out.numel(), device=dev).view_as(out)).sum().backward()
        grads = {n: p.grad.detach().float().clone() for n, p in params if p.grad is not None}
        net.zero_grad(set_to_none=True)
        runs.append((out.detach().float(), grads))
    (out32, g32), (out16, g16) = runs
    result: dict[str, Any] = {"output_error": round(_rel(out16, out32), 5), "grad_error": None, "worst_parameter": None}
    ok = result["output_error"] <= OUTPUT_TOLERANCE
    if backward and g32:
        largest = max(float(g.norm()) for g in g32.values())
        errors = {
            n: _rel(g16[n], g) for n, g in g32.items() if n in g16 and g.ndim >= 2 and float(g.norm()) >= 1e-3 * largest
        }
        errors.update({n: float("inf") for n in g32 if n not in g16 or not torch.isfinite(g16[n]).all()})
        if errors:
            worst = max(errors, key=lambda n: errors[n])
            result.update(grad_error=round(errors[worst], 5), worst_parameter=worst)
            ok = ok and errors[worst] <= GRAD_TOLERANCE
    result["ok"] = bool(ok)
    return result


def probe_autocast(
    network: torch.nn.Module,
    shape: Sequence[int],
    device: torch.device | str = "cpu",
    rounds: int = 5,
    warmup: int = 2,
    dtype: torch.dtype = torch.bfloat16,
    forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None,
    backward: bool = True,
    budget_s: float = 10.0,
) -> dict[str, Any]:
    """Paired timing of one forward+backward pass (forward only with ``backward=False``: evaluation and inference)
    in fp32 and under ``torch.autocast(device, dtype)``, then :func:`compare_numerics` on the same batch.

    The two modes alternate and swap order every round, so that slow drift hits both alike; the speed-up is the
    median over rounds of (fp32 time / autocast time) in the same round, with its quartiles
    (:func:`summarise_rounds`; ``amp: auto`` decides on the lower quartile). Timed rounds stop early once they have taken
    ``budget_s`` seconds (two rounds at least), so that a large 3D network costs a run seconds, not minutes.

    Returns:
        ``{"fp32_ms", "autocast_ms", "speedup", "speedup_iqr", "rounds", "shape", "backward", "numerics"}``.
    """
    dev = torch.device(device)
    net = copy.deepcopy(getattr(network, "module", network)).to(dev).eval()
    if dev.type == "cpu" and dtype == torch.bfloat16:
        guard_bf16_convs(net)  # as a run in bfloat16 would have it (a no-op in float32)
    for p in net.parameters():
        p.requires_grad_(True)
    call = forward or (lambda m, x: m(x))
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(tuple(int(s) for s in shape), generator=g).to(dev)

        def step(amp: bool) -> float:
            sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
            sync()
            t = time.perf_counter()
            with torch.autocast(dev.type, dtype=dtype, enabled=amp), torch.set_grad_enabled(backward):
                out = _first_tensor(call(net, x))
            if backward:
                out.float().mean().backward()
            sync()
            elapsed = time.perf_counter() - t
            net.zero_grad(set_to_none=True)
            return elapsed

        for _ in range(max(int(warmup), 0)):
            step(False), step(True)
        fp32, amp = [], []
        for r in range(max(int(rounds), 1)):
            order = (False, True) if r % 2 == 0 else (True, False)
            times = {mode: step(mode) for mode in order}
            fp32.append(times[False]), amp.append(times[True])
            if r >= 1 and sum(fp32) + sum(amp) > budget_s:
                break
        numerics = compare_numerics(net, x, call, dev, dtype, backward)
    return {**summarise_rounds(fp32, amp), "shape": list(shape), "backward": bool(backward), "numerics": numerics}


def summarise_rounds(fp32_s: Sequence[float], autocast_s: Sequence[float]) -> dict[str, Any]:
    """The probe's statistics from its paired rounds (seconds per step, round ``i`` of each list run back to back).

    Returns:
        ``{"fp32_ms", "autocast_ms", "speedup", "speedup_iqr", "rounds"}``: median step times, the median of the
        per-round speed-ups (fp32 time / autocast time, same round) and their lower and upper quartiles
        (:func:`statistics.quantiles`, exclusive method; one round gives its own ratio for all three).
    """
    if len(fp32_s) != len(autocast_s) or not fp32_s:
        raise ValueError(f"paired rounds needed, got {len(fp32_s)} fp32 and {len(autocast_s)} autocast times")
    ratios = [f / max(a, 1e-9) for f, a in zip(fp32_s, autocast_s)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "fp32_ms": round(1000 * statistics.median(fp32_s), 2),
        "autocast_ms": round(1000 * statistics.median(autocast_s), 2),
        "speedup": round(statistics.median(ratios), 3),
        "speedup_iqr": [round(q[0], 3), round(q[2], 3)],
        "rounds": len(ratios),
    }
