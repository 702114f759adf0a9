"""``amp: auto|on|off``, channels-last and compile: the decision, its cache, and that nothing else changes with it.

Behaviour only, never time: the probe's timing is replaced by a fixed speed-up wherever a decision is checked. The
session's conftest makes the CPU read as one without bfloat16; the tests here that need bfloat16 say so.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from monai_transfer.engines import precision as P
from monai_transfer.engines.precision import PrecisionInferer, prepare_network, resolve_precision


def _tiny(dims: int = 2) -> torch.nn.Module:
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    bn = torch.nn.BatchNorm2d if dims == 2 else torch.nn.BatchNorm3d
    pool = torch.nn.AdaptiveAvgPool2d(1) if dims == 2 else torch.nn.AdaptiveAvgPool3d(1)
    return torch.nn.Sequential(conv(1, 4, 3, padding=1), bn(4), torch.nn.ReLU(), torch.nn.Dropout(0.5), pool,
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))  # fmt: skip


@pytest.fixture
def bf16_cpu(monkeypatch, tmp_path):
    """A CPU with bfloat16 instructions, a fresh cache, and a probe that counts its calls and reports ``speedup``."""
    monkeypatch.setattr(P, "cpu_bf16_support", lambda: (True, "test CPU with avx512_bf16"))
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "cache"))
    calls = {"n": 0, "speedup": 2.0, "iqr": None}

    def fake_probe(network, shape, device="cpu", rounds=5, forward=None, backward=True, **kw):
        calls["n"] += 1
        iqr = calls["iqr"] or [0.95 * calls["speedup"], 1.05 * calls["speedup"]]
        return {"fp32_ms": 2.0, "autocast_ms": 1.0, "speedup": calls["speedup"], "speedup_iqr": iqr,
                "rounds": rounds, "shape": list(shape), "backward": backward}  # fmt: skip

    monkeypatch.setattr(P, "probe_autocast", fake_probe)
    return calls


@pytest.mark.parametrize("amp,expected", [("on", True), (True, True), ("off", False), (False, False)])
def test_forced_amp_on_cpu_needs_no_probe(bf16_cpu, amp, expected):
    d = resolve_precision(amp, "cpu", _tiny(), 2, 1, 16, 4)
    assert d["amp"] is expected and d["dtype"] == ("bfloat16" if expected else None)
    assert d["requested"] == ("on" if expected else "off") and bf16_cpu["n"] == 0 and d["reason"]


def test_bad_choice_is_an_error():
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_precision("fast", "cpu")
    with pytest.raises(ValueError, match="channels_last"):
        resolve_precision("off", "cpu", channels_last="sometimes")


def test_cuda_auto_is_monai_amp_float16(bf16_cpu):
    d = resolve_precision("auto", torch.device("cuda"), _tiny(), 2)
    assert (d["amp"], d["dtype"], d["device"]) == (True, "float16", "cuda") and bf16_cpu["n"] == 0
    assert P.monai_amp(d) and P.amp_dtype(d) == torch.float16
    assert not resolve_precision("off", "cuda")["amp"]


def test_cpu_without_bf16_is_fp32_without_probe(monkeypatch, tmp_path):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(P, "cpu_bf16_support", lambda: (False, "CPU has no avx512_bf16 or amx_bf16 flag"))
    monkeypatch.setattr(P, "probe_autocast", lambda *a, **k: pytest.fail("probed a CPU without bfloat16"))
    d = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)
    assert not d["amp"] and "no avx512_bf16" in d["reason"] and d["probe"] is None
    assert not (tmp_path / "precision.json").exists()


@pytest.mark.parametrize("speedup,expected", [(1.5, True), (1.05, False), (0.4, False)])
def test_auto_picks_bf16_only_above_the_margin(bf16_cpu, speedup, expected):
    bf16_cpu["speedup"] = speedup
    d = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, margin=1.1)
    assert d["amp"] is expected and d["probe"]["speedup"] == speedup and f"{speedup:.2f}x" in d["reason"]
    # MONAI's engines autocast "cuda" only: on CPU the decision goes through PrecisionInferer, not their amp
    assert not P.monai_amp(d) and P.amp_dtype(d) == (torch.bfloat16 if expected else None)


def _rounds(ratios: list[float]) -> dict:
    """A probe summary from constructed paired timings: bfloat16 steps of 100 ms, fp32 steps ``ratio`` times longer,
    in a shuffled round order (the statistics must not depend on it)."""
    from monai_transfer.engines.precision_probe import summarise_rounds

    order = [2, 0, 4, 1, 3][: len(ratios)] if len(ratios) == 5 else list(range(len(ratios)))
    return summarise_rounds([0.1 * ratios[i] for i in order], [0.1] * len(ratios))


@pytest.mark.parametrize("ratios,median,q1,expected", [
    ([1.00, 1.10, 1.20, 1.30, 1.40], 1.20, 1.05, False),  # median over the margin, lower quartile under it: fp32
    ([1.08, 1.16, 1.20, 1.30, 1.40], 1.20, 1.12, True),  # lower quartile over the margin: bfloat16
    ([0.70, 0.70, 1.03, 1.04, 1.04], 1.03, 0.70, False),  # issue 21's second 3D run
    ([1.10, 1.10, 1.10, 1.10, 1.10], 1.10, 1.10, True),  # at the margin exactly: reaches it
])  # fmt: skip
def test_bf16_decision_reads_the_lower_quartile(ratios, median, q1, expected):
    probe = _rounds(ratios)
    assert probe["rounds"] == len(ratios) and probe["fp32_ms"] == pytest.approx(100 * median, abs=0.01)
    assert probe["speedup"] == pytest.approx(median) and probe["speedup_iqr"][0] == pytest.approx(q1)
    on, why = P.bf16_decision(probe)
    assert on is expected
    assert f"median {median:.2f}x" in why and f"quartiles [{q1:.2f}, {probe['speedup_iqr'][1]:.2f}]" in why
    assert "lower quartile must reach the margin 1.1x" in why and f"over {len(ratios)} rounds" in why


def test_bf16_rule_is_one_constant(monkeypatch):
    probe = _rounds([1.00, 1.10, 1.20, 1.30, 1.40])  # median 1.20, lower quartile 1.05
    assert P.BF16_RULE == {"statistic": "lower quartile", "margin": 1.1}
    assert P.bf16_decision(probe)[0] is False and P.bf16_decision(probe, margin=1.0)[0] is True
    monkeypatch.setattr(P, "BF16_RULE", {"statistic": "median", "margin": 1.1})  # the old rule, as data
    assert P.bf16_decision(probe)[0] is True
    monkeypatch.setattr(P, "BF16_RULE", {"statistic": "lower quartile", "margin": 1.06})
    assert P.bf16_decision(probe)[0] is False and P.bf16_decision(_rounds([1.07] * 5))[0] is True


def test_summarise_rounds_needs_paired_rounds():
    from monai_transfer.engines.precision_probe import summarise_rounds

    with pytest.raises(ValueError, match="paired rounds"):
        summarise_rounds([0.1, 0.2], [0.1])
    one = summarise_rounds([0.2], [0.1])
    assert one["speedup"] == 2.0 and one["speedup_iqr"] == [2.0, 2.0] and one["rounds"] == 1


@pytest.mark.parametrize("q1,expected", [(1.05, False), (1.12, True)])
def test_auto_decides_on_the_probes_lower_quartile_and_says_so(bf16_cpu, q1, expected):
    bf16_cpu.update(speedup=1.2, iqr=[q1, 1.3])
    d = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)
    assert d["amp"] is expected and d["dtype"] == ("bfloat16" if expected else None)
    assert f"median 1.20x the fp32 speed, quartiles [{q1:.2f}, 1.30]" in d["reason"]
    assert d["probe"]["speedup_iqr"] == [q1, 1.3]
    assert d["reason"].startswith("amp=auto: " + ("bfloat16 autocast" if expected else "fp32"))


def test_noisy_probe_is_neither_trusted_nor_cached(bf16_cpu, tmp_path):
    bf16_cpu.update(speedup=1.4, iqr=[0.7, 3.0])  # rounds that disagree: other work on the machine
    d = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)
    assert not d["amp"] and "not cached" in d["reason"]  # the lower quartile below 1: fp32, never a slower run
    assert not (tmp_path / "cache" / "precision.json").exists()
    resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)
    assert bf16_cpu["n"] == 2  # probed again


def test_cache_miss_then_hit_per_configuration(bf16_cpu, tmp_path):
    net = _tiny()
    first = resolve_precision("auto", "cpu", net, 2, 1, 16, 4)
    again = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)  # same architecture, other weights: a hit
    assert bf16_cpu["n"] == 1 and "cached probe" in again["reason"] and again["amp"] == first["amp"]
    resolve_precision("auto", "cpu", net, 2, 1, 24, 4)  # another input size: another entry
    resolve_precision("auto", "cpu", net, 2, 1, 16, 4, training=False)  # forward only: another entry
    assert bf16_cpu["n"] == 3
    cache = json.loads((tmp_path / "cache" / "precision.json").read_text())
    assert len(cache) == 3 and all(P.machine_key() in k for k in cache)
    assert not [f for f in os.listdir(tmp_path / "cache") if f != "precision.json"]  # no temporary file left
    resolve_precision("auto", "cpu", net, 2, 1, 16, 4, use_cache=False)
    assert bf16_cpu["n"] == 4


def test_cache_write_is_atomic(bf16_cpu, tmp_path, monkeypatch):
    resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)
    path = tmp_path / "cache" / "precision.json"
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    d = resolve_precision("auto", "cpu", _tiny(), 2, 1, 32, 4)  # a failed write costs a warning, not the run
    assert d["amp"] and path.read_text() == before
    assert not [f for f in os.listdir(path.parent) if f != "precision.json"]


def test_corrupt_cache_is_ignored_with_a_warning(bf16_cpu, tmp_path, caplog):
    path = tmp_path / "cache" / "precision.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"truncated": ')
    with caplog.at_level(logging.WARNING, logger=P.__name__):
        d = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4)
    assert d["amp"] and bf16_cpu["n"] == 1
    assert any("ignoring the precision cache" in r.getMessage() for r in caplog.records)
    assert len(json.loads(path.read_text())) == 1  # rewritten whole


def test_probe_leaves_network_and_random_streams_alone():
    net = _tiny().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    out = P.probe_autocast(net, (2, 1, 8, 8), "cpu", rounds=1, warmup=1)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout and seeded runs draw the same numbers after it
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # BN statistics, weights
    assert all(p.grad is None for p in net.parameters())
    assert out["rounds"] == 1 and out["speedup"] > 0 and out["shape"] == [2, 1, 8, 8]


def test_inferer_autocasts_on_cpu_and_returns_float32():
    from monai.inferers import SimpleInferer

    net = _tiny().eval()
    seen = []
    net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.randn(2, 1, 8, 8)
    bf16 = {"amp": True, "dtype": "bfloat16", "device": "cpu", "channels_last": True}
    y = PrecisionInferer(SimpleInferer(), bf16)(x, net)
    assert seen == [torch.bfloat16] and y.dtype == torch.float32
    assert net[0].weight.dtype == torch.float32  # autocast casts the operands, the weights stay float32
    y32 = PrecisionInferer(SimpleInferer(), {"amp": False, "device": "cpu"})(x, net)
    assert seen[-1] == torch.float32 and torch.allclose(y, y32, atol=0.05)
    # the wrapped inferer's attributes read through (roi_size, overlap of a sliding window)
    from monai.inferers import SlidingWindowInferer

    assert PrecisionInferer(SlidingWindowInferer(roi_size=[8, 8]), bf16).roi_size == [8, 8]


@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last_layout(dims):
    net = prepare_network(_tiny(dims), {"channels_last": True}, dims)
    fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
    assert net[0].weight.is_contiguous(memory_format=fmt)
    d = resolve_precision("off", "cpu", channels_last="auto")
    assert d["channels_last"] is False and "auto" in d["layout_reason"]


def test_compile_failure_warns_once_and_runs_eager(caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    net = _tiny().eval()
    x = torch.randn(2, 1, 8, 8)
    expected = net(x)
    prepare_network(net, {"compile": True}, 2, backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger=P.__name__):
        first, second = net(x), net(x)
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler here" in warnings[0].getMessage()
    assert torch.allclose(first, expected) and torch.allclose(second, expected)
    assert set(net.state_dict()) == set(_tiny().state_dict())  # the checkpoint keys stay the eager ones


def _cnn(dims: int) -> torch.nn.Module:
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    return torch.nn.Sequential(*[conv(1 if i == 0 else 4, 4, 3, padding=1) for i in range(8)])


@pytest.mark.parametrize("dims,device,speedup,expected", [
    (2, "cpu", 2.0, True),  # the one case measured to pay: a 2D CNN in bfloat16 on CPU
    (2, "cpu", 1.0, False),  # fp32: even
    (3, "cpu", 2.0, False),  # 3D: lost in fp32, even in bfloat16
    (2, "cuda", 2.0, False),  # not measured on a GPU
])  # fmt: skip
def test_channels_last_auto_follows_the_measurements(bf16_cpu, dims, device, speedup, expected):
    bf16_cpu["speedup"] = speedup
    d = resolve_precision("auto", device, _cnn(dims), dims, 1, 8, 2)
    assert d["channels_last"] is expected and d["layout_reason"].startswith("channels_last=auto")
    assert resolve_precision("auto", device, _cnn(dims), dims, 1, 8, 2, channels_last="on")["channels_last"]


def test_resumed_run_keeps_its_recorded_decision(bf16_cpu, tmp_path):
    record = tmp_path / "run" / "checkpoints" / "precision.json"
    first = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, record=record, resume="never")
    assert first["amp"] and json.loads(record.read_text())["amp"] is True
    bf16_cpu["speedup"] = 0.5  # the machine got busy: a new probe would now say fp32
    kept = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, record=record, resume="auto", use_cache=False)
    assert kept["amp"] is True and "kept from" in kept["reason"] and bf16_cpu["n"] == 1
    again = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, record=record, resume="overwrite", use_cache=False)
    assert again["amp"] is False and json.loads(record.read_text())["amp"] is False  # a new run decides anew
    forced = resolve_precision("on", "cpu", _tiny(), 2, 1, 16, 4, record=record, resume="auto")
    assert forced["requested"] == "on" and "kept from" not in forced["reason"]  # another request: not the record's


def test_refused_run_leaves_the_record_of_the_run_it_protects(bf16_cpu, tmp_path):
    record = tmp_path / "precision.json"
    resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, record=record)
    (tmp_path / "last.pt").write_bytes(b"a checkpoint")  # the run exists: resume "never" will be refused
    bf16_cpu["speedup"] = 0.5
    resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, record=record, resume="never", use_cache=False)
    assert json.loads(record.read_text())["amp"] is True


def test_failing_probe_means_fp32_and_the_run_goes_on(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(P, "cpu_bf16_support", lambda: (True, "test CPU with avx512_bf16"))
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))

    def broken(*a, **k):
        raise RuntimeError("no kernel for this shape")

    monkeypatch.setattr(P, "probe_autocast", broken)
    with caplog.at_level(logging.WARNING):
        d = resolve_precision("auto", "cpu", _tiny(3), 3, 1, 8, 2)
    assert not d["amp"] and "probe of this network" in d["reason"] and "no kernel for this shape" in d["reason"]
    assert "probe" in caplog.text


class _WrongGradientInBF16(torch.autograd.Function):
    """Identity whose backward returns garbage when the forward ran under autocast (a broken kernel, simulated)."""

    @staticmethod
    def forward(ctx, x, broken):
        ctx.broken = broken
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return (torch.randn_like(grad) * grad.abs().max() if ctx.broken else grad), None


class _BrokenInBF16(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = _WrongGradientInBF16.apply(self.body(x), torch.is_autocast_enabled("cpu"))
        return self.head(x.mean((2, 3)))


def test_bf16_that_disagrees_with_fp32_is_not_chosen_however_fast(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "cpu_bf16_support", lambda: (True, "test CPU with avx512_bf16"))
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))
    d = resolve_precision("auto", "cpu", _BrokenInBF16(), 2, 1, 16, 4, margin=0.0)  # any speed would do
    assert not d["amp"] and "disagrees with fp32" in d["reason"] and "body.0.weight" in d["reason"]
    assert d["probe"]["numerics"]["ok"] is False
    healthy = resolve_precision("auto", "cpu", _tiny(), 2, 1, 16, 4, margin=0.0, use_cache=False)
    assert healthy["probe"]["numerics"]["ok"] is True  # real bfloat16 rounding passes


def test_probe_runs_batch_norm_networks_on_one_tiny_sample():
    # a batch of one reaching 1x1x1 breaks batch norm in training mode; the probe runs in evaluation mode
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, stride=2, padding=1), torch.nn.BatchNorm3d(4), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 4, 3, stride=2, padding=1), torch.nn.BatchNorm3d(4))  # fmt: skip
    out = P.probe_autocast(net, (1, 1, 4, 4, 4), rounds=2, warmup=0)
    assert out["rounds"] >= 1 and out["numerics"]["ok"] in (True, False) and out["numerics"]["grad_error"] is not None
    assert net.training  # the caller's network is untouched


def test_a_probe_that_rules_bf16_out_of_inference_is_not_a_console_warning(monkeypatch, tmp_path, caplog):
    # issue 21: every README `infer` printed the probe's fallback as a warning; inference then runs in fp32, which is
    # always correct, so it goes to the log's INFO and precision.json, and stays a warning for training
    monkeypatch.setattr(P, "cpu_bf16_support", lambda: (True, "test CPU with avx512_bf16"))
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path))

    def broken(*a, **k):
        raise RuntimeError("no kernel for this shape")

    monkeypatch.setattr(P, "probe_autocast", broken)
    with caplog.at_level(logging.INFO, logger=P.logger.name):
        infer = resolve_precision("auto", "cpu", _tiny(3), 3, 1, 8, 2, training=False)
    assert not infer["amp"] and "no kernel for this shape" in infer["reason"]
    assert [r.levelno for r in caplog.records if "no kernel" in r.getMessage()] == [logging.INFO]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=P.logger.name):
        resolve_precision("auto", "cpu", _tiny(3), 3, 1, 8, 2, training=True)
    assert [r.levelno for r in caplog.records if "no kernel" in r.getMessage()] == [logging.WARNING]
