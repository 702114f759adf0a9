"""Mixed precision, memory layout and compilation of a run, decided once at start-up and recorded in its result.

``amp`` is ``"auto"`` (default), ``"on"`` or ``"off"`` (``True``/``False``/``None`` are read as on/off/auto):

* CUDA: ``auto`` is AMP as MONAI does it (float16 autocast and a ``GradScaler``).
* CPU: bfloat16 autocast pays on some networks and loses on others (on a Xeon with AMX a 2D ResNet-18 step ran 1.9x
  faster and a 3D one 2.8x slower), so ``auto`` measures: a short paired probe runs a few forward+backward passes of
  the run's own network on a synthetic batch of the run's input size, fp32 and bfloat16 autocast alternating, and
  picks bfloat16 only when the probe's *lower quartile* of per-round speed-ups reaches ``margin`` (1.1x;
  :data:`BF16_RULE`): a median at the margin flips between runs with the machine's load. The reason records the
  median and both quartiles. The result is cached per machine (CPU model and flags, torch version, threads) and
  configuration (network architecture, input shape) in a small JSON file, ``$MONAI_TRANSFER_CACHE/precision.json``
  (default ``~/.cache/monai_transfer``), written atomically. A CPU without bfloat16 instructions (no ``avx512_bf16`` /
  ``amx_bf16``) gets fp32 without a probe.

The probe (:mod:`monai_transfer.engines.precision_probe`) runs on a deep copy of the network in evaluation mode
inside ``torch.random.fork_rng`` with its own generator, so seeded runs and exact resume see the same random streams
with or without it. It also compares the bfloat16 output and gradients with fp32 on its batch: a disagreement beyond
rounding (a wrong kernel) means fp32, whatever the speed. A failing probe means fp32 too, with the error in the
reason. Autocast keeps the weights (master weights) and the optimizer state in float32: only the operations' inputs
are cast; in bfloat16 on CPU, convolutions whose input is smaller than their kernel run in fp32
(:mod:`monai_transfer.engines.bf16_guard`: oneDNN's bfloat16 weight gradients are wrong there), and the SSL losses
compute in fp32 (:mod:`monai_transfer.losses.float32`).

A run decides once, and with ``record`` writes the decision next to its checkpoint: a resumed run reuses it (a probe
under other load could decide otherwise, and precision must not change within a run). ``MONAI_TRANSFER_BF16=0``
makes ``auto`` treat the CPU as one without bfloat16: fp32 everywhere, as the test suite runs.

``channels_last`` (``auto``/``on``/``off``) converts the network (and each input) to channels-last memory
(``channels_last_3d`` for volumes); ``auto`` turns it on only where it was measured to pay: a 2D CNN in bfloat16 on
CPU (1.15x on the development CPU; it lost in 3D, and 2D fp32 is not yet switched; no GPU was measured, so off there).
``compile`` (``on``/``off``, default off, see docs/benchmarks.md for the measurement) compiles the network in place
(``nn.Module.compile``: the state-dict keys stay the same); when compilation fails the run says so once and runs eager.

The decision is a plain dict (JSON, written into ``result.json``)::

    {"amp": True, "dtype": "bfloat16", "device": "cpu", "requested": "auto", "reason": "...", "probe": {...},
     "channels_last": False, "compile": False}

:class:`PrecisionInferer` applies it around any MONAI inferer (CPU autocast, channels-last input, float32 output);
:func:`prepare_network` applies the layout and compilation to the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer

from monai_transfer.engines.bf16_guard import guard_bf16_convs
from monai_transfer.engines.environment import cpu_flags, cpu_model
from monai_transfer.engines.precision_probe import probe_autocast
from monai_transfer.utils.atomic import atomic_write_json
from monai_transfer.utils.sizes import per_axis

__all__ = [
    "AMP_CHOICES",
    "BF16_ENV",
    "BF16_RULE",
    "CACHE_ENV",
    "PrecisionInferer",
    "amp_dtype",
    "bf16_decision",
    "cache_file",
    "cpu_bf16_support",
    "monai_amp",
    "normalize_choice",
    "prepare_network",
    "probe_autocast",
    "resolve_precision",
    "sample_size",
    "training_autocast",
]

logger = logging.getLogger(__name__)

AMP_CHOICES = ("auto", "on", "off")
CACHE_ENV = "MONAI_TRANSFER_CACHE"
#: ``0``/``off``: ``amp: auto`` treats the CPU as one without bfloat16 (fp32, no probe), for runs that must give the
#: same numbers on every machine (the test suite sets it)
BF16_ENV = "MONAI_TRANSFER_BF16"
#: bumped when the probe changes, so that older cached decisions are not reused (2: evaluation mode, numerics check)
PROBE_VERSION = 2
_DEFAULT_SIZE = {2: 128, 3: 32}
#: a probe whose upper quartile of per-round speed-ups exceeds the lower by more than this factor is not cached
_STABLE = 1.5
#: the rule of ``amp: auto`` on CPU, as data: bfloat16 only when this quartile of the probe's per-round speed-ups
#: (fp32 time / bfloat16 time, same round) reaches ``margin``. The lower quartile, not the median: a median at the
#: margin flips with the machine's load from one run to the next (issue 21: a 3D ResNet-18 probe at 1.10x chose
#: bfloat16 in one run, and 1.03x [0.70, 1.04] chose fp32 in the next), while three rounds in four above the margin
#: leave a decision that noise rarely reverses, and a bfloat16 run that is rarely slower than fp32.
BF16_RULE: Mapping[str, Any] = {"statistic": "lower quartile", "margin": 1.1}
#: the statistics a rule may name, read from a probe's result
_STATISTICS: Mapping[str, Callable[[Mapping[str, Any]], float]] = {
    "lower quartile": lambda probe: float((probe.get("speedup_iqr") or [probe["speedup"]] * 2)[0]),
    "median": lambda probe: float(probe["speedup"]),
}


def normalize_choice(value: Any, name: str = "amp") -> str:
    """``"auto"``, ``"on"`` or ``"off"`` from a string or a boolean (``None`` is ``"auto"``)."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    text = {"true": "on", "false": "off", "1": "on", "0": "off", "yes": "on", "no": "off"}.get(text, text)
    if text not in AMP_CHOICES:
        raise ValueError(f"{name} must be one of {AMP_CHOICES} (or a boolean), got {value!r}")
    return text


def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU has bfloat16 instructions oneDNN uses (AVX512-BF16 or AMX-BF16), and the evidence."""
    if os.environ.get(BF16_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return False, f"{BF16_ENV}={os.environ[BF16_ENV]}"
    if not torch.backends.mkldnn.is_available():
        return False, "torch was built without oneDNN (mkldnn)"
    flags = cpu_flags()
    found = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if flags:
        return (True, f"CPU flags {', '.join(found)}") if found else (False, "CPU has no avx512_bf16 or amx_bf16 flag")
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and bool(check()):
        return True, "oneDNN reports bfloat16 support"
    return False, "no bfloat16 support found (no /proc/cpuinfo flags, oneDNN says no)"


def machine_key() -> str:
    """The machine as far as speed goes: CPU model and its vector flags, torch version, threads."""
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    return f"{cpu_model()}|{' '.join(flags)}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def cache_file() -> Path:
    """``$MONAI_TRANSFER_CACHE/precision.json``, default ``~/.cache/monai_transfer/precision.json``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "monai_transfer")
    return Path(root) / "precision.json"


def _load_cache(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as err:  # a corrupt cache costs one probe, never the run
        logger.warning("ignoring the precision cache %s (%s); probing again", path, err)
        return {}


def _store_cache(path: Path, key: str, value: Mapping[str, Any]) -> None:
    data = _load_cache(path)
    data[key] = dict(value)
    try:
        atomic_write_json(path, data, indent=1)
    except OSError as err:  # a read-only home only costs the next run a probe
        logger.warning("could not write the precision cache %s: %s", path, err)


def _network_key(network: torch.nn.Module) -> str:
    # the architecture, not the weights: the same network with other weights runs at the same speed
    arch = repr(getattr(network, "module", network))
    return f"{type(network).__name__}:{hashlib.sha1(arch.encode()).hexdigest()[:16]}"


def input_shape(
    spatial_dims: int, in_channels: int = 1, input_size: Sequence[int] | int | None = None, batch_size: int = 8
) -> tuple[int, ...]:
    """``(batch, channels, *size)``; a missing size is 128 (2D) / 32 (3D) per axis, one number is every axis."""
    dims = int(spatial_dims)
    size = per_axis(_DEFAULT_SIZE.get(dims, 32) if input_size is None else input_size, dims, "the probe's input size")
    return (int(batch_size), int(in_channels), *size)


def sample_size(dataset: Any, key: str = "image") -> list[int] | None:
    """The spatial size of a dataset's first item (a deterministic validation set: no random stream is drawn), for
    the probe of a run whose config fixes no input size; ``None`` when it cannot be read."""
    try:
        item = dataset[0]
        item = item[0] if isinstance(item, list) else item
        return [int(s) for s in item[key].shape[1:]]
    except Exception:  # noqa: BLE001 - the probe then uses the default size, and says which
        return None


#: channels-last under ``auto`` on CPU: bfloat16 2D CNNs only. Measured on the development CPU (AMD EPYC, AVX512-BF16,
#: 2 threads, ResNet-18 fine-tuning step against a bare fp32 loop, 5 rounds; docs/benchmarks.md): 2D 32x128^2 bf16
#: 2.08x channels-last vs 1.81x contiguous; 3D 16x28^3 bf16 0.91x vs 1.05x; 2D fp32 1.10x (one run; an earlier one at
#: 1 thread gave 1.02x, and 3D fp32 0.73x). Not measured on a GPU: off.
_CHANNELS_LAST_MIN_CONVS = 8


def _n_convs(network: torch.nn.Module | None, dims: int) -> int:
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    return 0 if network is None else sum(isinstance(m, conv) for m in network.modules())


def _layout_choice(
    channels_last: Any, dev: torch.device, dims: int, bf16_cpu: bool, network: torch.nn.Module | None
) -> tuple[bool, str]:
    choice = normalize_choice(channels_last, "channels_last")
    if choice != "auto":
        return choice == "on", f"channels_last={choice}"
    if dev.type != "cpu":
        return False, "channels_last=auto: off (not measured on a GPU)"
    if dims == 2 and bf16_cpu and _n_convs(network, dims) >= _CHANNELS_LAST_MIN_CONVS:
        return True, "channels_last=auto: on (a 2D CNN in bfloat16 on CPU: measured 1.15x, docs/benchmarks.md)"
    return False, "channels_last=auto: off on CPU (measured to pay only for 2D CNNs in bfloat16)"


def _amp_choice(
    requested: str, dev: torch.device, network: torch.nn.Module | None, shape_args: tuple, margin: float | None,
    rounds: int, use_cache: bool, forward: Any, training: bool,
) -> dict[str, Any]:  # fmt: skip
    """``{"amp", "dtype", "reason", "probe"}`` for the device."""
    fp32: dict[str, Any] = {"amp": False, "dtype": None, "probe": None}
    if dev.type == "cuda":
        on = requested != "off"
        why = "CUDA: float16 autocast with a GradScaler (MONAI's amp)" if on else "amp=off"
        return {**fp32, "amp": on, "dtype": "float16" if on else None,
                "reason": f"amp={requested}: {why}" if on else why}  # fmt: skip
    if dev.type != "cpu":
        return {**fp32, "reason": f"no autocast on {dev.type}: fp32"}
    if requested == "off":
        return {**fp32, "reason": "amp=off: fp32"}
    if requested == "on":
        return {**fp32, "amp": True, "dtype": "bfloat16", "reason": "amp=on: bfloat16 autocast on CPU"}
    supported, evidence = cpu_bf16_support()
    if not supported:
        return {**fp32, "reason": f"amp=auto: fp32 ({evidence})"}
    if network is None:
        return {**fp32, "reason": "amp=auto: fp32 (no network to probe)"}
    spatial_dims, in_channels, input_size, batch_size, probe_batch, probe_voxels = shape_args
    shape = input_shape(spatial_dims, in_channels, input_size, 1)
    per_sample = max(1, math.prod(shape[2:]))
    shape = (max(1, min(int(batch_size), int(probe_batch), int(probe_voxels) // per_sample)), *shape[1:])
    mode = "train" if training else "infer"
    key = f"v{PROBE_VERSION}|{machine_key()}|{_network_key(network)}|{tuple(shape)}|{mode}"
    path = cache_file()
    cached = _load_cache(path).get(key) if use_cache else None
    if isinstance(cached, Mapping) and isinstance(cached.get("speedup"), (int, float)):
        probe, source = dict(cached), f"cached probe ({path})"
    else:
        t0 = time.perf_counter()
        try:
            probe = probe_autocast(network, shape, dev, rounds=rounds, forward=forward, backward=training)
        except Exception as err:  # noqa: BLE001 - a probe that cannot run decides nothing: fp32, and the run goes on
            reason = (f"amp=auto: fp32 on CPU ({evidence}): the probe of this network on input {tuple(shape)} failed "
                      f"({type(err).__name__}: {str(err)[:300]})")  # fmt: skip
            _say_fallback(training, reason)
            return {**fp32, "reason": reason}
        probe["probe_s"] = round(time.perf_counter() - t0, 2)
        source = f"probe of {probe['rounds']} rounds, {probe['probe_s']} s"
        q1, q3 = probe["speedup_iqr"]
        # rounds that disagree (other work on a shared machine) are not worth remembering: the next run probes again
        if q3 > _STABLE * q1:
            source += f"; rounds disagree (interquartile range {q1:.2f} to {q3:.2f}): not cached"
        elif use_cache:
            _store_cache(path, key, probe)
    numerics = probe.get("numerics") or {}
    if numerics.get("ok") is False:  # a wrong kernel, not rounding: never trade correctness for speed
        reason = (f"amp=auto: fp32 on CPU ({evidence}): bfloat16 disagrees with fp32 on this network beyond rounding "
                  f"(relative error of the output {numerics.get('output_error')}, of the gradient of "
                  f"{numerics.get('worst_parameter')} {numerics.get('grad_error')}) on input {tuple(shape)}, {source}")  # fmt: skip
        _say_fallback(training, reason)
        return {**fp32, "reason": reason, "probe": probe}
    on, why = bf16_decision(probe, margin)
    verdict = "bfloat16 autocast" if on else "fp32"
    reason = f"amp=auto: {verdict} on CPU ({evidence}): bfloat16 {mode} step {why}; on input {tuple(shape)}, {source}"
    logger.info("precision: %s", reason)
    return {"amp": on, "dtype": "bfloat16" if on else None, "reason": reason, "probe": probe}


def _say_fallback(training: bool, reason: str) -> None:
    """A probe that rules bfloat16 out leaves the run in fp32, which is always correct: a warning for training (the
    run's speed depends on it), the log's INFO for inference, where it otherwise printed on every ``infer`` of a
    network whose bfloat16 output differs (issue 21). Either way the reason is in ``precision.json``."""
    (logger.warning if training else logger.info)("precision: %s", reason)


def bf16_decision(probe: Mapping[str, Any], margin: float | None = None) -> tuple[bool, str]:
    """Whether a probe's timings pick bfloat16 (:data:`BF16_RULE`: its lower quartile of per-round speed-ups reaches
    the margin), and the sentence that says why, with the median and both quartiles.

    Args:
        probe: :func:`probe_autocast`'s result (``speedup``: the median, ``speedup_iqr``: the lower and upper
            quartiles, ``rounds``).
        margin: the margin (default ``BF16_RULE["margin"]``).
    """
    margin = float(BF16_RULE["margin"] if margin is None else margin)
    median = float(probe["speedup"])
    q1, q3 = (float(v) for v in probe.get("speedup_iqr") or (median, median))
    on = _STATISTICS[BF16_RULE["statistic"]](probe) >= margin
    rounds = probe.get("rounds")
    stats = (f"median {median:.2f}x the fp32 speed, quartiles [{q1:.2f}, {q3:.2f}]"
             + (f" over {rounds} rounds" if rounds else ""))  # fmt: skip
    rule = f"the {BF16_RULE['statistic']} must reach the margin {margin:g}x"
    return on, f"{stats}: {rule}, {'it does' if on else 'it does not'}"


def resolve_precision(
    amp: Any = "auto",
    device: torch.device | str | None = None,
    network: torch.nn.Module | None = None,
    spatial_dims: int = 2,
    in_channels: int = 1,
    input_size: Sequence[int] | int | None = None,
    batch_size: int = 8,
    channels_last: Any = "auto",
    compile: Any = "off",
    margin: float | None = None,
    rounds: int = 5,
    probe_batch: int = 8,
    probe_voxels: int = 2 * 64**3,
    use_cache: bool = True,
    forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None,
    training: bool = True,
    record: str | os.PathLike | None = None,
    resume: Any = "never",
) -> dict[str, Any]:
    """The run's precision, memory layout and compilation, with the reason (a bundle config's ``precision`` id).

    Args:
        amp: ``"auto"``, ``"on"``, ``"off"`` (or ``True``/``False``/``None``).
        device: the run's device (default CUDA when available).
        network: the run's network, for the CPU probe (a deep copy runs; the network itself is untouched).
        spatial_dims, in_channels, input_size, batch_size: the probe's batch (``input_size``: the training crop or
            resize; ``None``: 128 per axis in 2D, 32 in 3D). The batch is capped at ``probe_batch`` samples and
            ``probe_voxels`` voxels (one sample at least): a ratio, not a throughput, is measured.
        channels_last: ``"auto"`` (on CPU: on for a 2D CNN running in bfloat16, the one case measured to pay; off
            otherwise and on GPUs, not measured), ``"on"``, ``"off"``.
        compile: ``"on"`` or ``"off"`` (``"auto"`` is off).
        margin: the least lower quartile of the probe's per-round speed-ups that picks bfloat16 on CPU (below it
            fp32 is as fast, and more exact); default ``BF16_RULE["margin"]`` (1.1), see :func:`bf16_decision`.
        rounds: timed rounds of the probe (after two warm-up passes of each mode).
        use_cache: read and write the per-machine cache (:func:`cache_file`).
        forward: how the probe calls the network (default ``network(x)``).
        training: probe forward+backward (training runs) or forward only (evaluation, inference).
        record: a JSON file the decision is written to (atomically), next to the run's checkpoint. A run that
            resumes (``resume`` ``"auto"`` or a checkpoint path) and finds one made for the same ``amp``, device and
            network reuses it without a probe: a probe's timing must not switch precision in the middle of a run,
            which would break exact resume.
        resume: the run's resume mode (``"never"``, ``"auto"``, ``"overwrite"`` or a checkpoint path).

    Returns:
        ``{"amp", "dtype", "device", "requested", "reason", "probe", "channels_last", "compile"}``.
    """
    from monai_transfer.engines.device import default_device

    dev = default_device(device)
    requested = normalize_choice(amp)
    compiled = normalize_choice(compile, "compile") == "on"
    shape_args = (spatial_dims, in_channels, input_size, batch_size, probe_batch, probe_voxels)
    network_key = None if network is None else _network_key(network)
    previous = _recorded(record, resume, requested, dev.type, network_key, compiled)
    if previous is not None:
        return previous
    if requested == "auto" and dev.type == "cpu" and _world_size() > 1:
        # one decision for every rank, rank 0's: ranks probing alone could disagree on a noisy machine
        import torch.distributed as dist

        box = [None]
        if dist.get_rank() == 0:
            box = [_amp_choice(requested, dev, network, shape_args, margin, rounds, use_cache, forward, training)]
        dist.broadcast_object_list(box, src=0)
        decision = dict(box[0])
    else:
        decision = _amp_choice(requested, dev, network, shape_args, margin, rounds, use_cache, forward, training)
    bf16_cpu = dev.type == "cpu" and decision["dtype"] == "bfloat16"
    layout, layout_reason = _layout_choice(channels_last, dev, int(spatial_dims), bf16_cpu, network)
    decision = {"device": dev.type, "requested": requested, **decision, "channels_last": layout,
                "layout_reason": layout_reason, "compile": compiled, "network": network_key}  # fmt: skip
    # a run refused for not resuming (its checkpoint exists and resume is "never") must not lose its record
    refused = str(resume) == "never" and record is not None and (Path(record).parent / "last.pt").exists()
    if record is not None and _rank() == 0 and not refused:
        atomic_write_json(record, decision)
    return decision


def _recorded(
    record: Any, resume: Any, requested: str, device: str, network_key: str | None, compiled: bool
) -> dict[str, Any] | None:
    """The decision recorded by the run being resumed, when it was made for the same request, device and network."""
    if record is None or str(resume) in ("never", "overwrite") or not Path(record).is_file():
        return None
    try:
        previous = json.loads(Path(record).read_text())
    except (OSError, ValueError) as err:
        logger.warning("precision: ignoring the recorded decision %s (%s); deciding again", record, err)
        return None
    same = (previous.get("requested"), previous.get("device"), previous.get("network"), previous.get("compile"))
    if same != (requested, device, network_key, compiled):
        return None
    reason = str(previous.get("reason", ""))
    if "(kept from " not in reason:
        reason += f" (kept from {record}: a resumed run keeps the precision it started with)"
    return {**previous, "reason": reason}


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def monai_amp(precision: Mapping[str, Any]) -> bool:
    """MONAI's ``amp`` argument: on for CUDA autocast only (MONAI's engines autocast ``"cuda"`` whatever the
    device, so CPU bfloat16 goes through :class:`PrecisionInferer` instead)."""
    return bool(precision.get("amp")) and precision.get("device") == "cuda"


def amp_dtype(precision: Mapping[str, Any]) -> torch.dtype | None:
    """The autocast dtype of a decision (``None`` for fp32)."""
    name = precision.get("dtype") if precision.get("amp") else None
    return None if name is None else getattr(torch, str(name))


def training_autocast(
    precision: Mapping[str, Any] | None, device: torch.device | str
) -> tuple[torch.dtype | None, bool]:
    """How a trainer that runs its own step (the ``SSLTrainer``) applies a decision: ``(autocast dtype, scaler)``.

    float16 autocast with a ``GradScaler`` on CUDA; bfloat16 without one (on CPU, or on CUDA when a decision asks for
    it); ``(None, False)``: float32 (no decision, or ``amp`` off). Fine-tuning's MONAI trainer gets the same decision
    through :func:`monai_amp` and :class:`PrecisionInferer`.

    Raises:
        ValueError: a dtype the device cannot autocast to (float16 autocast is CUDA only).
    """
    dtype = amp_dtype(precision or {})
    if dtype is None:
        return None, False
    kind = torch.device(device).type
    if kind == "cuda":
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"amp dtype must be float16 or bfloat16 on CUDA, got {dtype}.")
    elif dtype != torch.bfloat16:
        raise ValueError(
            f"amp on {kind} needs the bfloat16 dtype (float16 autocast is CUDA only; bfloat16 on CPU changes the "
            f"numerics, so a decision asks for it: monai_transfer.engines.resolve_precision), got {dtype}."
        )
    return dtype, kind == "cuda" and dtype == torch.float16


def _memory_format(dims: int) -> torch.memory_format:
    return torch.channels_last_3d if dims == 3 else torch.channels_last


class PrecisionInferer(Inferer):
    """Run any MONAI inferer under the run's precision decision: bfloat16 autocast on CPU (MONAI's own ``amp``
    covers CUDA), channels-last input when the layout is on, and float32 predictions, so that the loss, the metrics
    and the post-processing compute in float32 as they do without it.

    Args:
        inferer: the inferer to wrap (``SimpleInferer``, ``SlidingWindowInferer``...).
        precision: a :func:`resolve_precision` decision.
    """

    def __init__(self, inferer: Inferer, precision: Mapping[str, Any]) -> None:
        super().__init__()
        self.inferer = inferer
        self.precision = dict(precision)
        self._autocast = self.precision.get("device") == "cpu" and bool(self.precision.get("amp"))
        self._dtype = amp_dtype(self.precision) if self._autocast else None

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.precision.get("channels_last") and inputs.ndim in (4, 5):
            inputs = inputs.contiguous(memory_format=_memory_format(inputs.ndim - 2))
        if not self._autocast:
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast("cpu", dtype=self._dtype):
            out = self.inferer(inputs, network, *args, **kwargs)
        return _to_float(out)

    def __getattr__(self, name: str) -> Any:  # roi_size, overlap... of the wrapped inferer
        if name in ("inferer", "precision", "_autocast", "_dtype"):
            raise AttributeError(name)
        return getattr(self.inferer, name)


def _to_float(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, Mapping):
        return type(out)({k: _to_float(v) for k, v in out.items()}) if isinstance(out, dict) else out
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float(v) for v in out)
    return out


def prepare_network(
    network: torch.nn.Module, precision: Mapping[str, Any], spatial_dims: int, **compile_kwargs: Any
) -> torch.nn.Module:
    """The network with the decision's memory layout and compilation, in place (the same module is returned); in
    CPU bfloat16 its convolutions are guarded (:func:`monai_transfer.engines.bf16_guard.guard_bf16_convs`).

    Compilation is ``nn.Module.compile`` (the state-dict keys stay those of the eager network, so checkpoints and
    bundles are unchanged). It is lazy, so its failure shows at the first call: then one warning names the error
    and the network runs eager from there on, never silently.
    """
    guard_bf16_convs(network, precision)  # kernels oneDNN gets wrong in bfloat16 run in fp32 (bf16_guard)
    if precision.get("channels_last"):
        network.to(memory_format=_memory_format(int(spatial_dims)))
    if precision.get("compile"):
        _compile_or_eager(network, **compile_kwargs)
    return network


def _compile_or_eager(network: torch.nn.Module, **kwargs: Any) -> None:
    try:
        network.compile(**kwargs)
    except Exception as err:  # noqa: BLE001 - any failure means eager, said once
        logger.warning("torch.compile failed (%s: %s); running eager", type(err).__name__, err)
        return
    compiled = network._compiled_call_impl  # what nn.Module.__call__ runs when set (torch >= 2.2)

    def guarded(*args: Any, **kw: Any) -> Any:
        try:
            return compiled(*args, **kw)
        except Exception as err:  # noqa: BLE001 - a compiler error, not the network's: fall back, said once
            logger.warning("torch.compile failed (%s: %s); running eager", type(err).__name__, str(err)[:500])
            network._compiled_call_impl = None
            return network._call_impl(*args, **kw)

    network._compiled_call_impl = guarded
