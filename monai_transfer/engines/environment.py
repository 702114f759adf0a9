"""What a result's numbers depend on besides its settings and data: the machine and the library versions.

A run is reproducible to the last digit only on the same machine with the same threads, the same precision decision
and the same versions: the same CPU model runs the same kernels (oneDNN and torch choose them by the CPU's
instruction sets, and the number of threads sets how sums are split), so floating-point sums come out in the same
order. Another CPU model, another thread count or another torch picks other kernels and gives other, equally valid
numbers (differences of about 1e-6 per step that training compounds into different scores). :func:`environment_record`
is what every ``result.json`` (fine-tuning, pretraining, evaluation) and every study row carries, so that two results
can be told comparable to the digit, or not, from their files alone.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

__all__ = ["PRECISION_FLAGS", "THREAD_ENV", "cpu_flags", "cpu_model", "environment_record", "same_environment"]

#: the CPU flags that decide which kernels run and whether ``amp: auto`` may pick bfloat16 on CPU
PRECISION_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                   "amx_int8")  # fmt: skip
#: environment variables that set thread counts or precision choices (recorded when set)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MONAI_TRANSFER_BF16", "CUBLAS_WORKSPACE_CONFIG")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none, as on macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except Exception:  # noqa: BLE001 - an absent optional library is recorded as None
            return None
    return str(getattr(mod, "__version__", None) or "") or None


def _cpu_capability() -> str | None:
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    try:
        return str(get()) if get is not None else None
    except Exception:  # noqa: BLE001 - only a record
        return None


def environment_record() -> dict[str, Any]:
    """The machine and versions a result was computed with (JSON-ready).

    Returns:
        ``{"cpu": {"model", "machine", "logical_cpus", "flags", "torch_capability"}, "threads": {"torch",
        "interop", <THREAD_ENV variables that are set>}, "gpu": name or None, "versions": {"python", "torch",
        "monai", "numpy", "monai_transfer"}, "platform"}``. ``flags`` are those of :data:`PRECISION_FLAGS` the CPU
        has; ``torch_capability`` is the instruction set torch's own CPU kernels dispatch to (``AVX512``,
        ``AVX2``...).
    """
    flags = cpu_flags()
    threads: dict[str, Any] = {"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads()}
    threads.update({k: os.environ[k] for k in THREAD_ENV if k in os.environ})
    gpu = None
    if torch.cuda.is_available():
        try:
            gpu = torch.cuda.get_device_name(torch.cuda.current_device())
        except Exception:  # noqa: BLE001 - only a record
            gpu = "cuda (name unavailable)"
    return {
        "cpu": {
            "model": cpu_model(),
            "machine": platform.machine(),
            "logical_cpus": os.cpu_count(),
            "flags": [f for f in PRECISION_FLAGS if f in flags],
            "torch_capability": _cpu_capability(),
        },
        "threads": threads,
        "gpu": gpu,
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "monai": _version("monai"),
            "numpy": _version("numpy"),
            "monai_transfer": _version("monai_transfer"),
        },
        "platform": platform.platform(),
    }


def same_environment(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The fields in which two :func:`environment_record` results differ in a way that changes numbers (CPU model,
    flags and kernel dispatch, GPU, torch threads, library versions); empty when results of the same settings and data
    should agree to the digit. A missing record (a result written before records existed) differs in ``"record"``.
    """
    if not a or not b:
        return ["record"]
    fields = [("cpu", "model"), ("cpu", "flags"), ("cpu", "torch_capability"), ("gpu",), ("threads", "torch"),
              *[("versions", k) for k in ("torch", "monai", "numpy", "monai_transfer", "python")]]  # fmt: skip

    def get(rec: dict[str, Any], path: tuple[str, ...]) -> Any:
        for key in path:
            rec = rec.get(key) if isinstance(rec, dict) else None  # type: ignore[assignment]
        return rec

    return [".".join(p) for p in fields if get(a, p) != get(b, p)]
