"""Fine-tuning training-step cost: ours (the real step of a ``finetune`` run, ``amp: auto``) against a bare PyTorch
fp32 loop, on one in-memory batch.

For every case (network, dims, input size, batch) two configurations run on the same synthetic batch and the same
initial weights (``create_transfer_net`` with the same seed):

* ours   the components of the fine-tuning bundle config (``monai_transfer.finetune.finetune_config``, classification,
         strategy ``full``) parsed by MONAI's ``ConfigParser``: the network through ``prepare_network`` (layout,
         compile), the strategy's parameter groups, AdamW, the config's loss, the run's ``precision`` decision
         (``resolve_precision`` with ``--amp``, default ``auto``: on CPU the cached paired probe decides bfloat16 or
         fp32), and one step is ``SupervisedTrainer._iteration`` of the config's trainer (``PrecisionInferer``
         autocast on CPU, MONAI's amp on CUDA): zero_grad, forward, loss, backward, step.
* bare   ``net.train(); opt.zero_grad(); loss = F.cross_entropy(net(x), y); loss.backward(); opt.step()`` in
         fp32 with AdamW over ``net.parameters()``.

Timing is paired as in ``benchmarks/ssl_step.py``: one process per case builds both, runs ``--warmup`` untimed steps
of each, then ``--repeats`` rounds that time one step of each in an order that alternates every round; the ratio is
the median over rounds of (bare step time / our step time) in the same round, printed with its interquartile range.
Peak memory is measured afterwards in a separate process per configuration (``--memory-steps`` steps; CPU: RSS growth
over the level after building / absolute peak RSS, MiB; CUDA: allocator statistics). Each process is a fresh
interpreter (``--one``); the probe's result is cached (``$MONAI_TRANSFER_CACHE/precision.json``), so the memory
process of ours reuses the decision of the timing process.

Columns: network, dims, input (channels x size), batch, prec (ours: bf16 / fp32 chosen), layout (cf: contiguous,
cl: channels-last), ours/s and bare/s (1 / median step time), ours/bare [IQR] (paired speed ratio, above 1 = ours
faster), ours MiB and bare MiB (growth/peak), goal: "ok" when ours/bare meets the issue's goal (2D: at least 1.5;
3D: not clearly slower, i.e. the median or the upper quartile of the ratio at least 1), else "miss".

    python benchmarks/finetune_step.py                     # the three default cases (~5 min on 2 CPU cores)
    python benchmarks/finetune_step.py --quick             # smoke run, tiny sizes (~1 min)
    python benchmarks/finetune_step.py --amp off --cases resnet18-3d
    python benchmarks/finetune_step.py --amp off --cases resnet18-3d --control --repeats 15 --no-memory

``--control`` also times a second bare loop, identical to the first and built after it: ``bare/bare2`` (in the notes)
is how far from 1.00 the harness alone puts a ratio on this machine at this load, the yardstick for ``ours/bare``.
``--out`` records the settings, both load averages and ``environment_record()`` (CPU, flags, threads, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssl_step import _error_text, _PeakMemory, _rotation, _sync, run_child, spread  # noqa: E402

#: name -> (backbone, dims, size, batch); the cases of the issue
CASES = {
    "resnet18-2d": ("resnet18", 2, 128, 32),
    "vit_s16-2d": ("vit_small_patch16", 2, 224, 16),
    "resnet18-3d": ("resnet18", 3, 28, 16),
}
QUICK = {"resnet18-2d": ("resnet18", 2, 64, 4), "vit_s16-2d": ("vit_small_patch16", 2, 64, 4),
         "resnet18-3d": ("resnet18", 3, 16, 2)}  # fmt: skip
LR, WEIGHT_DECAY = 1e-4, 1e-4


def _batch(dims: int, size: int, batch: int, device: str) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, *([size] * dims), generator=g)
    y = torch.randint(0, 2, (batch, 1), generator=g)
    return x.to(device), y.to(device)


def _backbone_kwargs(backbone: str, size: int) -> dict:
    return {"img_size": size} if backbone.startswith("vit") else {}


def build(impl: str, case: tuple, cfg: dict) -> tuple[Any, dict]:
    """``(step(), info)`` of one configuration: ``step`` runs one complete training step on the case's batch
    (``bare2``: a second bare loop, identical to ``bare``, for ``--control``)."""
    import torch

    backbone, dims, size, batch = case
    device = cfg["device"]
    x, y = _batch(dims, size, batch, device)
    if impl in ("bare", "bare2"):
        from monai_transfer.networks import create_transfer_net

        net = create_transfer_net(backbone, "classification", dims, 1, 2, seed=cfg["seed"],
                                  backbone_kwargs=_backbone_kwargs(backbone, size)).to(device)  # fmt: skip
        opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        target = y[:, 0]

        def step() -> None:
            net.train()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), target)
            loss.backward()
            opt.step()

        return step, {"prec": "fp32", "layout": "cf", "reason": "bare PyTorch fp32"}
    from monai.bundle import ConfigParser

    from monai_transfer.engines.workflow import apply_overrides
    from monai_transfer.finetune.config import finetune_config

    raw = finetune_config(backbone, "classification", dims, 2, spatial_size=size, tensorboard=False,
                          backbone_kwargs=_backbone_kwargs(backbone, size))  # fmt: skip
    overrides = {"device": f"$torch.device({device!r})", "seed": cfg["seed"], "lr": LR, "weight_decay": WEIGHT_DECAY,
                 "batch_size": batch, "amp": cfg["amp"], "channels_last": cfg["channels_last"],
                 "compile": cfg["compile"], "precision#input_size": size,
                 "precision#record": None,  # no run folder: nothing written beside a checkpoint
                 # the step alone: no data loader, no handlers (validation, checkpoints, logging are per epoch)
                 "train#trainer#train_data_loader": "$[]", "train#trainer#epoch_length": 1,
                 "train#trainer#train_handlers": []}  # fmt: skip
    parser = ConfigParser(apply_overrides(raw, overrides, allow_new=True))
    trainer = parser.get_parsed_content("train#trainer")
    precision = parser.get_parsed_content("precision")
    data = {"image": x, "label": y}

    def step() -> None:
        trainer._iteration(trainer, data)

    prec = {"bfloat16": "bf16", "float16": "fp16"}.get(precision.get("dtype") or "", "fp32")
    return step, {"prec": prec, "layout": "cl" if precision["channels_last"] else "cf", "reason": precision["reason"],
                  "compile": precision["compile"]}  # fmt: skip


def _setup(cfg: dict) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))


def run_paired(case: tuple, cfg: dict) -> dict:
    _setup(cfg)
    sync = _sync(cfg["device"])
    steps, info = {}, {}
    impls = ["ours", "bare", "bare2"] if cfg.get("control") else ["ours", "bare"]
    for impl in impls:  # built in this order: ours first, as always; the control last
        steps[impl], info[impl] = build(impl, case, cfg)

    def timed(impl: str) -> float:
        sync()
        t0 = time.perf_counter()
        steps[impl]()
        sync()
        return time.perf_counter() - t0

    first: dict[str, float] = {}
    for r in range(cfg["warmup"]):
        for impl in _rotation(impls, r):
            t = timed(impl)
            first.setdefault(impl, t)  # the first step: includes compilation under --compile on
    for impl in impls:
        info[impl]["first_step_s"] = round(first.get(impl, float("nan")), 2)
    rounds = []
    for r in range(cfg["repeats"]):
        order = _rotation(impls, r)
        rounds.append({"order": order, "step_s": {impl: timed(impl) for impl in order}})
    return {"info": info, "rounds": rounds}


def run_memory(impl: str, case: tuple, cfg: dict) -> dict:
    _setup(cfg)
    step, _ = build(impl, case, cfg)
    mem = _PeakMemory(cfg["device"])
    mem.start()
    for _ in range(cfg["memory_steps"]):
        step()
    _sync(cfg["device"])()
    peak = mem.peak()
    return {"base_mib": mem.base, "peak_mib": peak, "peak_growth_mib": peak - mem.base}


def _in_process(job: str, case: tuple, cfg: dict, timeout: float | None) -> tuple[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", job, json.dumps(list(case)), json.dumps(cfg)]
    return run_child(cmd, timeout)


_COLS = [("network", 18, "<"), ("dims", 4, ">"), ("input", 12, ">"), ("batch", 5, ">"), ("prec", 4, ">"),
         ("layout", 6, ">"), ("ours/s", 7, ">"), ("bare/s", 7, ">"), ("ours/bare [IQR]", 18, ">"),
         ("ours MiB", 11, ">"), ("bare MiB", 11, ">"), ("goal", 5, ">")]  # fmt: skip


def _fmt(values: list[str]) -> str:
    return " ".join(f"{v:{a}{w}}" for v, (_, w, a) in zip(values, _COLS))


def _mib(m: dict | None) -> str:
    return "-" if not m else f"{m['peak_growth_mib']:.0f}/{m['peak_mib']:.0f}"


def summarise(name: str, case: tuple, timing: tuple[str, Any], memory: dict[str, Any]) -> dict:
    backbone, dims, size, batch = case
    row: dict[str, Any] = {"case": name, "network": backbone, "dims": dims, "size": size, "batch": batch,
                           "memory": memory}  # fmt: skip
    if timing[0] != "ok":
        row["error"] = timing[1]
        return row
    rounds = timing[1]["rounds"]
    row["info"] = timing[1]["info"]
    row["rounds"] = rounds
    for impl in ("ours", "bare"):
        row[f"{impl}_step_s"] = statistics.median(rd["step_s"][impl] for rd in rounds)
    row["ratio"] = spread([rd["step_s"]["bare"] / rd["step_s"]["ours"] for rd in rounds])
    if all("bare2" in rd["step_s"] for rd in rounds):
        # the harness's own noise floor: the same bare loop against itself, built after ours and bare
        row["control"] = spread([rd["step_s"]["bare"] / rd["step_s"]["bare2"] for rd in rounds])
    r = row["ratio"]
    row["goal"] = "ok" if (r["median"] >= 1.5 if dims == 2 else max(r["median"], r["q3"]) >= 1.0) else "miss"
    return row


def print_row(row: dict) -> None:
    size = f"1x{row['size']}^{row['dims']}"
    if "error" in row:
        print(_fmt([row["network"], str(row["dims"]), size, str(row["batch"])] + ["err"] * 8), flush=True)
        return
    r, ours = row["ratio"], row["info"]["ours"]
    values = [row["network"], str(row["dims"]), size, str(row["batch"]), ours["prec"], ours["layout"],
              f"{1 / row['ours_step_s']:.2f}", f"{1 / row['bare_step_s']:.2f}",
              f"{r['median']:.2f} [{r['q1']:.2f}, {r['q3']:.2f}]", _mib(row["memory"].get("ours")),
              _mib(row["memory"].get("bare")), row["goal"]]  # fmt: skip
    print(_fmt(values), flush=True)


def _cpu_text() -> str:
    from monai_transfer.engines.precision import cpu_bf16_support, cpu_flags, cpu_model

    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2")))
    return f"cpu={cpu_model()!r} flags={' '.join(flags) or '?'} bf16={cpu_bf16_support()}"


def _environment(threads: int | None) -> dict:
    """The record every result carries (monai_transfer.engines.environment_record), at the children's threads."""
    import torch

    from monai_transfer.engines.environment import environment_record

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return environment_record()
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"], help="ours (default auto); bare is fp32")
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"], help="ours (default auto)")
    p.add_argument("--compile", default="off", choices=["on", "off"], help="ours (default off)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps of each configuration (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; --quick 3)")
    p.add_argument("--memory-steps", type=int, default=2, help="steps of each memory process (default 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--control", action="store_true",
                   help="also time a second, identical bare loop (built last): bare/bare2 is the harness's noise floor, "
                   "printed in the notes")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 3 rounds (numbers not meaningful)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per process (default: none)")
    p.add_argument("--out", default=None, help="also write the rows (every round's times) to this JSON file")
    p.add_argument("--one", nargs=3, metavar=("JOB", "CASE", "CFG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one:
        job, case, cfg = args.one[0], tuple(json.loads(args.one[1])), json.loads(args.one[2])
        try:
            result = ["ok", run_paired(case, cfg) if job == "paired" else run_memory(job, case, cfg)]
        except Exception as e:  # noqa: BLE001 - reported in the table's notes
            result = ["error", _error_text(e)]
        print(json.dumps(result, default=str))
        return

    import torch

    warmup = 1 if args.warmup is None else args.warmup
    repeats = args.repeats or (3 if args.quick else 5)
    cfg = {"device": args.device, "seed": args.seed, "amp": args.amp, "channels_last": args.channels_last,
           "compile": args.compile, "warmup": warmup, "repeats": repeats, "threads": args.threads,
           "memory_steps": args.memory_steps, "control": args.control}  # fmt: skip
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"device={args.device} torch={torch.__version__} threads={args.threads or torch.get_num_threads()} "
          f"cpus={os.cpu_count()} load={load}\n{_cpu_text()}")  # fmt: skip
    print(f"paired: {warmup} warm-up step(s) of each, {repeats} rounds in alternating order; ours: amp={args.amp} "
          f"channels_last={args.channels_last} compile={args.compile}; bare: fp32; AdamW lr={LR}; memory: "
          + (f"one process per configuration, {args.memory_steps} steps" if not args.no_memory else "skipped")
          + ("; QUICK (smoke run)" if args.quick else ""))  # fmt: skip
    header = _fmt([c[0] for c in _COLS])
    print(header + "\n" + "-" * len(header), flush=True)
    rows, notes = [], []
    for name in args.cases:
        case = (QUICK if args.quick else CASES)[name]
        timing = _in_process("paired", case, cfg, args.timeout)
        memory: dict[str, Any] = {}
        if timing[0] == "ok" and not args.no_memory:
            for impl in ("ours", "bare"):
                kind, res = _in_process(impl, case, cfg, args.timeout)
                memory[impl] = res if kind == "ok" else None
                if kind != "ok":
                    notes.append(f"  {name} {impl} memory run failed: {res}")
        row = summarise(name, case, timing, memory)
        rows.append(row)
        print_row(row)
        if "error" in row:
            notes.append(f"  {name} failed: {row['error']}")
        else:
            ours = row["info"]["ours"]
            notes.append(
                f"  {name}: {ours['reason']}; first step (warm-up) ours {ours.get('first_step_s')} s, "
                f"bare {row['info']['bare'].get('first_step_s')} s"
            )
            if row.get("control"):
                c = row["control"]
                notes.append(f"  {name} control: bare/bare2 {c['median']:.2f} [{c['q1']:.2f}, {c['q3']:.2f}] (the same "
                             "loop twice: how far from 1.00 the harness alone puts a ratio)")  # fmt: skip
    load_end = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    notes.append(f"  load average at the end: {load_end} (at the start: {load})")
    if notes:
        print("notes:\n" + "\n".join(notes))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": {**cfg, "torch": torch.__version__, "cpu": _cpu_text(), "quick": args.quick,
                                    "load": load, "load_end": load_end, "environment": _environment(args.threads)},
                       "rows": rows}, f, indent=2, default=str)  # fmt: skip


if __name__ == "__main__":
    main()
