"""The ``study`` commands: ``run`` (a spec or preset, resumable), ``plan`` (check it and list its cells), ``report``
(write the report again from the results store), ``presets``.

Argument parsing only: the work is done by :mod:`monai_transfer.study`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from monai_transfer.cli._common import ParagraphHelpFormatter, help_by_default


def _spec(args: argparse.Namespace):
    from monai_transfer.study import load_spec
    from monai_transfer.study.prepare import prepare_data

    data_root = prepare_data(args.spec, args.preset, args.data_root, args.out)
    return load_spec(args.spec, preset=args.preset, data_root=data_root, targets=_targets(args.target))


def _targets(values: list[str] | None) -> dict[str, str]:
    """``--target NAME=PATH`` options as a mapping (a malformed one is named)."""
    from monai_transfer.study import SpecError

    out: dict[str, str] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SpecError(f"--target {v!r}: expected NAME=PATH (a target's name in the spec, and its new data)")
        if name in out:
            raise SpecError(f"--target {name!r} given twice")
        out[name] = path
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from monai_transfer.study import run_study

    spec, raw = _spec(args)
    result = run_study(spec, args.out, raw=raw, executor=args.executor, workers=args.workers, address=args.address,
                       retry_failed=args.retry_failed, progress=not args.no_progress, threads=args.threads,
                       verbose=args.verbose, keep_checkpoints=True if args.keep_checkpoints else None)  # fmt: skip
    print(f"{result['cells']} cells ({result['ran']} run now, {result['failed']} failed) in {result['duration_s']} s")
    summary = (result.get("report") or {}).get("summary_json")
    for sentence in json.loads(Path(summary).read_text()).get("headline", []) if summary else []:
        print(f"  {sentence}")
    for name, path in (result.get("report") or {}).items():
        print(f"{name}: {path}")
    for target, path in (result.get("best") or {}).items():
        print(f"best starting point for {target}: {path}")
    print(f"logs: {Path(args.out) / 'study.log'}, {Path(args.out) / 'logs'} (one per cell and pretraining)")
    for w in result.get("warnings", []):
        print(f"WARNING: {w}")
    return 1 if result["failed"] else 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from monai_transfer.study import plan_study

    spec, raw = _spec(args)
    cells = plan_study(spec, args.out)
    print(f"{spec.name}: {len(cells)} cells = {len(spec.targets)} target(s) x {len(spec.challenges)} challenge(s) x "
          f"{len(spec.starts)} start(s) x {len(spec.backbones)} backbone(s) x {len(spec.strategies)} strateg"
          f"{'y' if len(spec.strategies) == 1 else 'ies'} x {len(spec.seeds)} seed(s)")  # fmt: skip
    n_train = Counter()
    for c in cells:
        n = json.loads(Path(c.datalist).read_text())["study_cell_data"]["n_training"]
        n_train[(c.target.name, c.challenge.label)] = n
    for (target, challenge), n in n_train.items():
        print(f"  {target:24s} {challenge:28s} {n} training cases per seed (the same for every start)")
    pre = [s.name for s in spec.starts if s.pretrained_in_study]
    if pre:
        print(f"pretrained in the study (once per backbone): {', '.join(pre)}")
    _print_disk(spec, cells, Path(args.out))
    if args.pilot:
        _print_pilot(args, spec, raw)
    return 0


def _print_pilot(args: argparse.Namespace, spec, raw) -> None:
    """The seeds the design needs, from the spread of a pilot study's paired differences."""
    from monai_transfer.study.pilot import format_seed_plan, pilot_plan

    for line in format_seed_plan(pilot_plan(args.pilot, spec, raw, effect=args.effect)):
        print(line)


def _print_disk(spec, cells, out: Path) -> None:
    """The disk the study needs: when finished, at its peak while running, and with every resume checkpoint kept."""
    from monai_transfer.study.disk import estimate_disk, format_bytes

    d = estimate_disk(spec, cells, out, data_folders=[out / "data", out / "data_root"])
    weights = ", ".join(f"{k.replace('|', ' ')}: {format_bytes(v)}" for k, v in d["per_cell"].items())
    pre = sum(p["kept"] for p in d["pretraining"])
    print(f"disk: about {format_bytes(d['finished'])} when finished ({d['cells']} cells' best weights ({weights} each); "
          f"in-study pretraining {format_bytes(pre)}; data {format_bytes(d['data'])}); up to "
          f"{format_bytes(d['peak'])} while running (the running cell's or pretraining's resume checkpoint); "
          f"{format_bytes(d['keep_checkpoints'])} with keep_checkpoints (a resume checkpoint per finished run)")  # fmt: skip


def _cmd_report(args: argparse.Namespace) -> int:
    import yaml

    from monai_transfer.study import ResultsStore
    from monai_transfer.study.report import write_report

    out = Path(args.out)
    raw = yaml.safe_load((out / "spec.yaml").read_text()) if (out / "spec.yaml").is_file() else {}
    rows = ResultsStore(out).rows()
    if not rows:
        raise FileNotFoundError(f"{out}/results: no results; run the study first")
    paths = write_report(rows, out / "report", reference=raw.get("reference", "random"), title=raw.get("name"),
                         spec=raw or None)  # fmt: skip
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    import yaml

    from monai_transfer.study import list_presets, preset_path

    if args.name:  # the whole spec, to read or to copy and edit
        print(preset_path(args.name).read_text(), end="")
        return 0
    for name in list_presets():
        raw = yaml.safe_load(preset_path(name).read_text())
        print(f"{name:10s} {' '.join(str(raw.get('description', '')).split())}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser(
        "study",
        help="compare starting points under label scarcity, imbalance and domain shift (run, plan, report, presets)",
        description=(
            "A study fine-tunes target tasks from several starting points (random, published weights, SSL or "
            "supervised pretraining done inside the study, continual pretraining) under data challenges (label "
            "fractions, class imbalance, domain shift), over several seeds, and compares them with paired tests. "
            "Every starting point sees the same label subsets, splits and seeds. See docs/studies.md."
        ),
    )
    ssub = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", nargs="?", default=None, help="the study spec (YAML); or --preset NAME")
        p.add_argument("--preset", default=None, help="a shipped spec ('monai-transfer study presets' lists them)")
        p.add_argument("--out", required=True, help="the study folder (results, cells, report); re-running resumes")
        p.add_argument(
            "--data-root",
            default=None,
            help="where the spec's relative data paths start (a preset's "
            "targets on your own files); demo presets write their data to OUT/data_root if not given",
        )
        p.add_argument(
            "--target",
            action="append",
            default=None,
            metavar="NAME=PATH",
            help="run the target NAME of the spec on other data: PATH is a datalist JSON, a MedMNIST .npz, an MSD "
            "task folder or a CSV folder (relative to the current folder); the target's task, dimensions and "
            "metric stay as the spec says. An in-study pretraining that reads the target's own file (SSL on the "
            "target's images) reads PATH too; other pretraining pools stay as they are. Repeat for several "
            "targets ('monai-transfer study presets NAME' shows a preset's targets)",
        )

    p = ssub.add_parser(
        "run",
        help="run every unfinished cell, then write the report and the best starting point's bundle",
        description=(
            "Check the spec (an unknown key, a missing file or an impossible cell is named with its place), write "
            "each (target, challenge, seed)'s data once, pretrain the in-study starting points once per backbone, "
            "run the cells, and write OUT/report (report.html, report.md, results.csv, PNGs) and OUT/best/<target> "
            "(a bundle of the best starting point). Killed and run again with the same command, it runs only the "
            "cells without a result; a cell killed half-way resumes from its checkpoint, and a finished cell's "
            "resume checkpoint is removed once its result is stored (--keep-checkpoints keeps it). The console shows "
            "progress (pretraining epochs, cells done, time left; one plain line each without a terminal) and the "
            "summary; the logs go to OUT/study.log and OUT/logs/ (one file per cell and pretraining). "
            "Exit code 1 if a cell failed (its error is in the report), 2 for a bad spec."
        ),
        formatter_class=ParagraphHelpFormatter,
    )
    common(p)
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="where cells run")
    p.add_argument("--workers", type=int, default=1, help="local processes running cells (1: this process)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. 127.0.0.1:6379) for --executor ray")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per cell (default: cores / workers locally, "
        "1 on Ray); the same count gives the same results on every executor",
    )
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.add_argument("--no-progress", action="store_true", help="no progress (warnings and the summary only)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="every INFO line on the console too (MONAI's per-epoch lines of every cell); they are in "
                   "OUT/study.log and OUT/logs/ either way")  # fmt: skip
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep finished runs' resume checkpoints (checkpoints/last.pt, about 3x the weights each); "
                   "by default a cell's is removed once its result is stored (or the spec's keep_checkpoints: true)")  # fmt: skip
    p.set_defaults(func=_cmd_run)

    p = ssub.add_parser("plan", help="check a spec and list its cells and training-set sizes (writes OUT/data only)",
                        formatter_class=ParagraphHelpFormatter)  # fmt: skip
    common(p)
    p.add_argument("--pilot", default=None, metavar="DIR",
                   help="a pilot study's folder (DIR/results): from the SD of its paired differences per target, "
                   "challenge and start, the seeds this design needs to detect the pilot's observed difference and "
                   "--effect with 80%% power (one paired t-test, and under Holm over the design's comparisons); see "
                   "docs/studies.md, 'Power: how many seeds'")  # fmt: skip
    p.add_argument("--effect", type=float, default=None,
                   help="with --pilot: the difference worth detecting, in the metric's units (default: each "
                   "metric's equivalence margin, 0.01 for AUROC and Dice, or the spec's equivalence_margin)")  # fmt: skip
    p.set_defaults(func=_cmd_plan)

    p = ssub.add_parser(
        "report", help="write OUT/report again from OUT/results", formatter_class=ParagraphHelpFormatter
    )
    p.add_argument("--out", required=True, help="the study folder")
    p.set_defaults(func=_cmd_report)

    p = ssub.add_parser("presets", help="the shipped study specs (with NAME: print that spec)")
    p.add_argument("name", nargs="?", default=None, help="print this preset's YAML (to copy and edit)")
    p.set_defaults(func=_cmd_presets)

    help_by_default(study)
