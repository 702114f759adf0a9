"""The environment record every result carries: CPU model and precision flags, threads, library versions."""

from __future__ import annotations

import json

import pytest
import torch

from monai_transfer.engines import environment as E
from monai_transfer.engines.environment import environment_record, same_environment


def test_record_names_cpu_threads_and_versions():
    import monai
    import numpy

    import monai_transfer

    rec = environment_record()
    assert json.loads(json.dumps(rec)) == rec  # JSON as it is, for result.json and study rows
    assert rec["cpu"]["model"] == E.cpu_model() and rec["cpu"]["model"]
    assert set(rec["cpu"]["flags"]) <= set(E.PRECISION_FLAGS)
    assert rec["threads"]["torch"] == torch.get_num_threads() and rec["threads"]["interop"] >= 1
    assert rec["versions"] == {"python": rec["versions"]["python"], "torch": torch.__version__,
                               "monai": monai.__version__, "numpy": numpy.__version__,
                               "monai_transfer": monai_transfer.__version__}  # fmt: skip
    assert rec["gpu"] is None or isinstance(rec["gpu"], str)


def test_flags_are_the_cpus_precision_flags(monkeypatch):
    monkeypatch.setattr(E, "cpu_flags", lambda: {"sse2", "avx2", "avx512f", "amx_bf16", "amx_tile", "fma"})
    assert environment_record()["cpu"]["flags"] == ["avx2", "fma", "avx512f", "amx_tile", "amx_bf16"]
    monkeypatch.setattr(E, "cpu_flags", lambda: set())  # no /proc/cpuinfo (macOS): no flags, still a record
    assert environment_record()["cpu"]["flags"] == []


def test_threads_follow_torch_and_the_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MONAI_TRANSFER_BF16", "0")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        torch.set_num_threads(1)
        threads = environment_record()["threads"]
    finally:
        torch.set_num_threads(before)
    assert threads["torch"] == 1 and threads["OMP_NUM_THREADS"] == "1" and threads["MONAI_TRANSFER_BF16"] == "0"
    assert "MKL_NUM_THREADS" not in threads


def test_same_environment_names_what_differs():
    a = environment_record()
    assert same_environment(a, json.loads(json.dumps(a))) == []
    b = json.loads(json.dumps(a))
    b["cpu"]["model"] = "Intel(R) Xeon(R) Platinum 8480+"
    b["cpu"]["flags"] = [*a["cpu"]["flags"], "amx_bf16"]
    b["threads"]["torch"] = a["threads"]["torch"] + 1
    b["versions"]["torch"] = "0.0"
    b["platform"] = "another kernel"  # the kernel release does not change numbers
    assert same_environment(a, b) == ["cpu.model", "cpu.flags", "threads.torch", "versions.torch"]
    assert same_environment(a, None) == ["record"]


def test_precision_reads_the_cpu_from_the_environment_module():
    from monai_transfer.engines import precision as P

    assert P.cpu_model is E.cpu_model and P.cpu_flags is E.cpu_flags


@pytest.mark.parametrize("text,model", [("model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n", "AMD EPYC")])
def test_cpu_model_and_flags_from_cpuinfo(monkeypatch, tmp_path, text, model):
    import builtins

    info = tmp_path / "cpuinfo"
    info.write_text(text)
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(info if f == "/proc/cpuinfo" else f, *a, **k))
    assert E.cpu_model() == model and E.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    assert environment_record()["cpu"]["flags"] == ["avx2", "avx512_bf16"]
