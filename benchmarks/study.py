"""Study speed: linear-probe cells on cached encoder features against the same cells through the full pipeline, and
the ``demo`` preset's wall time.

Probes. One small study over the demo data (a simulation on the MNI152 template: 3D lesion classification at 32^3,
``make_demo_data(n_subjects=120, size=32, lesion_scale=3.0)``, written once into ``--work``): random initialisation
of the preset's backbone (ResNet-10 at a quarter width), strategy ``linear-probe``, the full data and label fraction
0.5, ``--seeds``; the demo preset's ``finetune`` options (15 epochs, batch 8, lr 1e-3). The same cells run twice per
round, in one process, with the same seeds and thread count: ``linear_probe: cached`` (one encoder pass per
(target, start, backbone) - per seed for a random start - then a linear head per cell on the features) and
``linear_probe: pipeline`` (each cell a whole ``finetune`` run). Each round starts both from empty study folders
(the cached side pays its feature extraction every round), and the order alternates between rounds so that neither
always runs first on a machine whose speed drifts. Printed: per round and mode the study's wall time, the time in
cells and, for the cached side, the feature extraction; then per cell the test AUROC of both (the reader sees how
far a cached probe lands from a pipeline probe: they differ only by the pipeline's training-time flips) and the
time per cell (median over rounds).

Demo. ``--demo`` runs ``monai-transfer study run --preset demo`` in a subprocess (data generation included, into
``--work/demo``, removed first) and prints its wall time against the 15-minute target. Run it on an otherwise idle
machine; it takes about as long as it prints.

    python benchmarks/study.py                    # probes: 1 round, seeds 0 1 (about 5 minutes on 2 CPU cores)
    python benchmarks/study.py --rounds 3
    python benchmarks/study.py --demo --skip-probes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PRESET_FINETUNE = {"epochs": 15, "batch_size": 8, "lr": 0.001, "backbone_kwargs": {"widen_factor": 0.25}}


def demo_data(work: Path) -> Path:
    from monai_transfer.data import make_demo_data

    root = work / "data"
    if not (root / "lesion_cls_3d.json").is_file():
        make_demo_data(root, n_subjects=120, size=32, lesion_scale=3.0, n_unlabeled=0, n_other_modality=0, seed=0)
    return root


def spec_of(root: Path, mode: str, seeds: list[int], finetune: dict) -> dict:
    return {
        "name": f"probes_{mode}",
        "targets": [{"name": "lesion_3d", "data": "lesion_cls_3d.json", "task": "classification", "spatial_dims": 3}],
        "starts": ["random"],
        "backbones": ["resnet10"],
        "strategies": ["linear-probe"],
        "seeds": seeds,
        "challenges": {"label_fractions": [0.5]},
        "finetune": finetune,
        "transferability": False,
        "best_bundle": False,
        "linear_probe": mode,
    }


def run_mode(root: Path, out: Path, mode: str, seeds: list[int], finetune: dict, threads: int) -> dict:
    from monai_transfer.study import parse_spec
    from monai_transfer.study.runner import run_study

    shutil.rmtree(out, ignore_errors=True)
    spec = parse_spec(spec_of(root, mode, seeds, finetune), root)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the runs' epoch logs; stdout keeps the tables
        result = run_study(spec, out, progress=False, report=False, threads=threads)
    wall = time.perf_counter() - t0
    rows = result["rows"]
    failed = [r["error"] for r in rows if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{mode}: {len(failed)} cell(s) failed: {failed[:2]}")
    in_cells = sum(r["duration_s"] for r in rows)
    return {"wall": wall, "cells": in_cells, "rows": {(r["challenge"], r["seed"]): r for r in rows}}


def probes(args: argparse.Namespace) -> None:
    import torch

    work = Path(args.work).absolute()
    root = demo_data(work)
    finetune = {**PRESET_FINETUNE, "epochs": args.epochs, "lr": args.lr}
    modes = ("cached", "pipeline")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.rounds):
        order = modes if r % 2 == 0 else modes[::-1]
        for mode in order:
            runs[mode].append(run_mode(root, work / f"round{r}_{mode}", mode, args.seeds, finetune, args.threads))
            print(f"round {r + 1} {mode}: {runs[mode][-1]['wall']:.1f} s", file=sys.stderr)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {args.threads} "
          f"thread(s) per cell, python {platform.python_version()}; {args.rounds} round(s)\n")  # fmt: skip
    print("| round | mode | cells | study wall s | in cells s | feature extraction s | mean s per cell |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        for mode in modes:
            x = runs[mode][r]
            n = len(x["rows"])
            feats = f"{x['wall'] - x['cells']:.1f}" if mode == "cached" else "-"
            print(f"| {r + 1} | {mode} | {n} | {x['wall']:.1f} | {x['cells']:.1f} | {feats} | {x['cells'] / n:.2f} |")
    walls = {m: statistics.median(x["wall"] for x in runs[m]) for m in modes}
    print(f"\nspeed-up of the study (median wall time over rounds): {walls['pipeline'] / walls['cached']:.1f}x\n")
    print("| cell | cached AUROC | pipeline AUROC | difference | cached accuracy | pipeline accuracy "
          "| cached s | pipeline s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    diffs = []
    for key in sorted(runs["cached"][0]["rows"]):
        c, p = runs["cached"][0]["rows"][key], runs["pipeline"][0]["rows"][key]
        diffs.append(c["score"] - p["score"])
        tc = statistics.median(x["rows"][key]["duration_s"] for x in runs["cached"])
        tp = statistics.median(x["rows"][key]["duration_s"] for x in runs["pipeline"])
        print(f"| {key[0]}, seed {key[1]} | {c['score']:.3f} | {p['score']:.3f} | {c['score'] - p['score']:+.3f} "
              f"| {c['metrics']['accuracy']:.3f} | {p['metrics']['accuracy']:.3f} | {tc:.2f} | {tp:.2f} |")  # fmt: skip
    print(f"\nscores of round 1 (the same in every round: seeded); mean |difference| "
          f"{statistics.mean(abs(d) for d in diffs):.3f}, largest {max(diffs, key=abs):+.3f}")  # fmt: skip


def demo(args: argparse.Namespace) -> None:
    out = Path(args.work).absolute() / "demo"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "monai_transfer.cli", "study", "run", "--preset", "demo", "--out", str(out),
           "--no-progress"]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}\n")
    print("| what | exit code | wall time | under 15 min |")
    print("|---|---|---|---|")
    print(f"| `monai-transfer study run --preset demo` | {done.returncode} | {int(wall // 60)} min {wall % 60:.0f} s "
          f"| {'yes' if wall < 900 else 'no'} |")  # fmt: skip
    print("\n" + done.stdout[-1500:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/bench_study", help="data and study folders (reused data)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=PRESET_FINETUNE["epochs"])
    parser.add_argument("--lr", type=float, default=PRESET_FINETUNE["lr"], help="the cells' lr (the preset's: 1e-3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per cell (default: all cores)")
    parser.add_argument("--demo", action="store_true", help="also time the demo preset (minutes: a quiet machine)")
    parser.add_argument("--skip-probes", action="store_true", help="only the demo preset")
    args = parser.parse_args(argv)
    args.threads = args.threads or os.cpu_count() or 1
    if not args.skip_probes:
        probes(args)
    if args.demo:
        demo(args)


if __name__ == "__main__":
    main()
