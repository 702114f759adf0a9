"""The ``monai-transfer`` command.

Subcommands:
    backbones   list the registered backbones (dims, embedding size, parameters, known pretrained weights)
    weights     list known published weights; inspect how a checkpoint fits a backbone; convert one
    export      build a TransferNet and export it (TorchScript or ONNX), checking outputs against eager
    tour        the end-to-end transfer path on synthetic input: 2D weights -> 3D 1-channel network -> export
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def _cmd_backbones(args: argparse.Namespace) -> int:
    from monai_transfer.networks import get_backbone_config, list_backbones
    from monai_transfer.weights import list_sources

    names = list_backbones(args.pattern, spatial_dims=args.spatial_dims)
    if not names:
        print(f"no backbone matches pattern={args.pattern!r} spatial_dims={args.spatial_dims}", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        cfg = get_backbone_config(name)
        rows.append(
            {
                "name": name,
                "family": cfg.family,
                "dims": ",".join(str(d) for d in cfg.spatial_dims),
                "features": cfg.num_features,
                "wraps": cfg.wraps,
                "pretrained": ", ".join(list_sources(name)) or "-",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    return 0


def _cmd_data_scan(args: argparse.Namespace) -> int:
    from monai_transfer.data import QuarantineError, scan

    try:
        stats = scan(args.root, args.index, strict=args.strict, progress=not args.quiet)
    except QuarantineError as err:  # --strict: the first bad file or series stops the scan
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(stats.as_dict(), indent=2) if args.json else _format_stats(stats.as_dict()))
    return 0


def _format_stats(stats: dict) -> str:
    return "\n".join(f"{k.replace('_', ' ')}: {round(v, 2) if isinstance(v, float) else v}" for k, v in stats.items())


def _cmd_data_report(args: argparse.Namespace) -> int:
    from monai_transfer.data import summary_report

    print(summary_report(args.index))
    return 0


def _cmd_data_demo(args: argparse.Namespace) -> int:
    from monai_transfer.data import make_demo_data

    try:
        paths = make_demo_data(
            args.out,
            n_subjects=args.subjects,
            n_sites=args.sites,
            size=args.size,
            lesion_prevalence=args.lesion_prevalence,
            dicom=args.dicom,
            seed=args.seed,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("SIMULATED data built on the real MNI152 template (see README.txt in the output); not patient data.")
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def _cmd_tour(args: argparse.Namespace) -> int:
    from monai_transfer.tour import run_tour

    summary = run_tour(args.out, seed=args.seed, size=args.size, n_subjects=args.subjects, progress=not args.quiet)
    for name, info in summary["steps"].items():
        shown = {k: v for k, v in info.items() if k != "seconds"}
        print(f"{name} ({info['seconds']} s): {json.dumps(shown, default=str)[:300]}")
    print(f"summary: {args.out}/summary.json; load report: {args.out}/load_report.txt")
    return 0


def _parse_kv(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs with JSON values where they parse (``decay=0.75``, ``k=2``), else strings."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cmd_finetune(args: argparse.Namespace) -> int:
    from monai_transfer.data import DatalistError
    from monai_transfer.finetune import finetune
    from monai_transfer.weights import PretrainedLoadError, UnsafeCheckpointError

    try:
        result = finetune(
            backbone=args.backbone,
            pretrained=args.pretrained,
            task=args.task,
            strategy=args.strategy,
            label_fraction=args.label_fraction,
            seed=args.seed,
            datalist=args.data,
            out_dir=args.out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            head_lr_mult=args.head_lr_mult,
            strategy_kwargs=_parse_kv(args.strategy_arg),
            num_classes=args.num_classes,
            spatial_dims=args.spatial_dims,
            in_channels=args.in_channels,
            loss=args.loss,
            class_weights=args.class_weights,
            patience=args.patience,
            patch_size=args.patch_size,
            backbone_kwargs=_parse_kv(args.backbone_arg),
            progress=not args.quiet,
        )
    except (DatalistError, PretrainedLoadError, UnsafeCheckpointError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    shown = {k: v for k, v in result.items() if k not in ("cases",)}
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from monai_transfer.data import DatalistError
    from monai_transfer.evaluation import summarize_cases
    from monai_transfer.finetune import evaluate

    try:
        metrics = evaluate(args.checkpoint, args.data, section=args.section, batch_size=args.batch_size)
    except (DatalistError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cases = metrics.pop("cases")
    metrics["summary"] = summarize_cases(cases, seed=args.seed)
    if args.out:
        from monai_transfer.utils.atomic import atomic_write_json

        atomic_write_json(args.out, {**metrics, "cases": cases})
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:
    from monai_transfer.data import DatalistError
    from monai_transfer.evaluation import rank_backbones

    candidates = []
    for item in args.candidate:
        name, _, pretrained = item.partition(":")
        candidates.append((name, pretrained or None))
    finetune_results = None
    if args.finetune_results:
        with open(args.finetune_results) as f:
            finetune_results = json.load(f)
    try:
        result = rank_backbones(
            candidates,
            args.data,
            spatial_dims=args.spatial_dims,
            in_channels=args.in_channels,
            label_key=args.label_key,
            finetune_results=finetune_results,
            source_data=args.source_data,
            rank_by=args.rank_by,
            seed=args.seed,
            out_dir=args.out,
        )
    except (DatalistError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.to_table())
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from monai_transfer.data import DatalistError
    from monai_transfer.evaluation import checkpoint_robustness

    try:
        report = checkpoint_robustness(
            args.checkpoint,
            args.data,
            section=args.section,
            corruptions=args.corruption,
            severities=args.severity,
            seed=args.seed,
            metric=args.metric,
            out_dir=args.out,
        )
    except (DatalistError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.to_table())
    print(f"wrote {args.out}/robustness.json, robustness.md and robustness.png")
    return 0


def _table(rows: list[dict]) -> str:
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items()).rstrip(), "  ".join("-" * w for w in widths.values())]
    lines += ["  ".join(str(r[k]).ljust(w) for k, w in widths.items()).rstrip() for r in rows]
    return "\n".join(lines)


def _cmd_weights_sources(args: argparse.Namespace) -> int:
    from monai_transfer.weights import get_source, list_sources

    rows = []
    for name in list_sources(args.backbone):
        src = get_source(name)
        for backbone, f in sorted(src.files.items()):
            if args.backbone and backbone != args.backbone:
                continue
            rows.append(
                {
                    "source": name,
                    "backbone": backbone,
                    "dims": f.spatial_dims,
                    "channels": f.in_channels,
                    "data": src.provenance.source_data if args.json else src.provenance.source_data[:40],
                    "sha256": (f.sha256 or "unpublished")[:16],
                    "url": f.url,
                }
            )
    if not rows:
        print(f"no known weights for backbone {args.backbone!r}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


def _load_for_cli(args: argparse.Namespace):
    from monai_transfer.networks import create_backbone
    from monai_transfer.weights import PretrainedLoadError, UnsafeCheckpointError

    try:
        model = create_backbone(
            args.backbone,
            spatial_dims=args.spatial_dims,
            in_channels=args.in_channels,
            pretrained=args.checkpoint,
            strict=not args.allow_partial,
        )
    except (PretrainedLoadError, UnsafeCheckpointError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    return model


def _cmd_weights_inspect(args: argparse.Namespace) -> int:
    model = _load_for_cli(args)
    if model is None:
        return 2
    report = model.load_report
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.to_table())
    return 0 if report.ok else 1


def _cmd_weights_convert(args: argparse.Namespace) -> int:
    from monai_transfer.weights import Provenance, save_pretrained

    model = _load_for_cli(args)
    if model is None:
        return 2
    report = model.load_report
    base = report.provenance or Provenance()
    try:
        updates = _parse_provenance(args.provenance)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not base.url and "://" in args.checkpoint:
        updates.setdefault("url", args.checkpoint)
    prov = Provenance.from_dict({**base.to_dict(), **updates})
    path = save_pretrained(model, args.out, provenance=prov)
    print(report.to_table())
    print(f"wrote {path} ({args.backbone}, spatial_dims={args.spatial_dims}, in_channels={args.in_channels})")
    return 0


def _parse_provenance(items: Sequence[str]) -> dict:
    """``FIELD=VALUE`` pairs; sizes and spacings are comma-separated numbers, dims and channels integers."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--provenance expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        if key in ("input_size", "spacing"):
            cast = int if key == "input_size" else float
            out[key] = [cast(v) for v in value.split(",")]
        elif key in ("spatial_dims", "in_channels"):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _add_load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint file, a MONAI bundle folder, a URL, or a known source name")
    p.add_argument("--backbone", required=True, help="registry name (see 'monai-transfer backbones')")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=2, help="2D weights inflate to 3D")
    p.add_argument("--in-channels", type=int, default=1, help="channel surgery adapts the first convolution")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="load what fits instead of stopping at the first missing or mismatched key (the report says what)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monai-transfer",
        description=(
            "Transfer learning and self-supervised pretraining for 2D and 3D medical imaging, on MONAI. "
            "Choose a starting point (ImageNet, SSL, another modality, none), load it into a classification "
            "or segmentation network with a load report, and export it."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'monai-transfer COMMAND --help' for the options of each command.",
    )
    from monai_transfer import __version__

    parser.add_argument("--version", action="version", version=f"monai_transfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("backbones", help="list registered backbones", description="List the registered backbones.")
    p.add_argument("--pattern", default=None, help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="only backbones with these dims")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_backbones)

    data = sub.add_parser(
        "data", help="index DICOM trees, report on them, make demo data", description="Data commands."
    )
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p = dsub.add_parser(
        "scan",
        help="index every DICOM series under ROOT (incremental; ROOT is never written)",
        description=(
            "Walk ROOT (nested folders, any file names, with or without DICOMDIR), group files into series, sort "
            "slices along the slice normal, check geometry (spacing, gaps, duplicates, mixed sizes) and record the "
            "result in an SQLite index in --index. A rescan reads only new or changed files. Unreadable or "
            "inconsistent inputs are quarantined with a reason; patient identifiers are stored only as salted hashes."
        ),
    )
    p.add_argument("root", help="folder tree of DICOM files (read only)")
    p.add_argument("--index", required=True, help="folder for the index (must be outside ROOT)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable or inconsistent input")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the scan statistics as JSON")
    p.set_defaults(func=_cmd_data_scan)
    p = dsub.add_parser(
        "report",
        help="summarise an index: series per modality, quarantined files and why",
        description="Print a readable summary of an index written by 'monai-transfer data scan'.",
    )
    p.add_argument("--index", required=True, help="folder holding the index")
    p.set_defaults(func=_cmd_data_report)
    p = dsub.add_parser(
        "demo",
        help="write the demo data: simulated subjects built on the real MNI152 template",
        description=(
            "Generate the embedded demo data deterministically from nilearn's MNI152 template and tissue maps "
            "(real anatomy): simulated subjects by smooth deformation, per-site scanner-like intensity changes, "
            "optional white-matter lesions. Writes NIfTI volumes, datalists for a 3D tissue-segmentation task, a "
            "2D slice task, a lesion-presence classification task and an unlabeled pool, and on request DICOM "
            "series. It is a simulation, not patient data."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (refused if it holds anything but an earlier demo)")
    p.add_argument("--subjects", type=int, default=24, help="labelled simulated subjects")
    p.add_argument("--sites", type=int, default=3, help="simulated scanners/sites")
    p.add_argument("--size", type=int, default=64, help="volume edge in voxels")
    p.add_argument("--lesion-prevalence", type=float, default=0.3, help="fraction of subjects with lesions")
    p.add_argument("--dicom", action="store_true", help="also write every volume as a DICOM series")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-demo folder's content")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data_demo)
    data.set_defaults(func=lambda a: (data.print_help(), 0)[1])

    weights = sub.add_parser(
        "weights",
        help="known published weights; how a checkpoint fits a backbone; convert one",
        description="Pretrained-weight commands. Checkpoints load with torch.load(weights_only=True), strictly.",
    )
    wsub = weights.add_subparsers(dest="weights_command", metavar="WEIGHTS_COMMAND")
    p = wsub.add_parser("sources", help="list known published weights", description="List known published weights.")
    p.add_argument("--backbone", default=None, help="only weights for this backbone")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_weights_sources)
    p = wsub.add_parser(
        "inspect",
        help="load a checkpoint into a backbone and print the load report",
        description=(
            "Load CHECKPOINT into a backbone (adapters for torchvision, timm, MedicalNet, SwinUNETR-SSL, lightly, "
            "solo-learn, TorchXRayVision and MONAI bundles are chosen from the keys; channel surgery, 2D-to-3D "
            "inflation and position-embedding resampling are applied as needed) and print what loaded per stage. "
            "Exit code 1 when something did not fit."
        ),
    )
    _add_load_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_weights_inspect)
    p = wsub.add_parser(
        "convert",
        help="load, adapt and save a checkpoint for a backbone, with its provenance",
        description=(
            "Load CHECKPOINT into a backbone as 'inspect' does, then save the adapted weights with a provenance "
            "record (written atomically; .safetensors or .pt by the suffix of --out)."
        ),
    )
    _add_load_arguments(p)
    p.add_argument("--out", required=True, help="output file (.pt or .safetensors)")
    p.add_argument(
        "--provenance",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="provenance fields to set, e.g. method=SimCLR modality=CT source_data='LIDC-IDRI'",
    )
    p.set_defaults(func=_cmd_weights_convert)
    weights.set_defaults(func=lambda a: (weights.print_help(), 0)[1])

    from monai_transfer.finetune import list_strategies

    p = sub.add_parser(
        "finetune",
        help="fine-tune a (pretrained) backbone on a labelled datalist with a chosen strategy",
        description=(
            "Build a TransferNet (backbone + classification head or segmentation decoder), load the starting "
            "point (--pretrained: a checkpoint, a bundle folder or a known source; strict), take a nested, "
            "stratified label fraction of the training section, and train with MONAI's SupervisedTrainer: "
            "validation every epoch, early stopping, the best checkpoint kept (atomically), sliding-window "
            "inference for 3D segmentation. Writes best_model.pt, result.json, test_cases.json and TensorBoard logs."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backbone", required=True, help="registry name ('monai-transfer backbones')")
    p.add_argument("--pretrained", default=None, help="checkpoint path, bundle folder or source name; none: random")
    p.add_argument("--task", choices=["classification", "segmentation"], required=True)
    p.add_argument("--strategy", default="full", help=f"one of {list_strategies()} (freeze-K works too)")
    p.add_argument(
        "--strategy-arg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="strategy options, e.g. decay=0.75 (llrd), k=2 (freeze-k), lp_epochs=3 (lp-ft)",
    )
    p.add_argument("--label-fraction", type=float, default=1.0, help="fraction of labelled training cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", required=True, help="MSD-style datalist JSON (training/validation/test sections)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--head-lr-mult", type=float, default=1.0, help="learning-rate multiplier of the new head")
    p.add_argument("--num-classes", type=int, default=None, help="default: from the datalist")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="default: from the images")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--loss", choices=["auto", "ce", "focal", "dice-ce"], default="auto")
    p.add_argument("--class-weights", default=None, help="'balanced' for inverse-frequency class weights")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs")
    p.add_argument("--patch-size", type=int, nargs="+", default=None, help="3D segmentation: sliding-window patch")
    p.add_argument("--backbone-arg", nargs="*", default=[], metavar="KEY=VALUE", help="backbone options")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a fine-tuned checkpoint on a datalist section",
        description=(
            "Evaluate best_model.pt (or a finetune output folder) on a datalist section. Prints the metrics "
            "(classification: AUROC per class and mean, AUPRC, accuracy, balanced accuracy, F1, ECE; segmentation: "
            "Dice per class and mean) with 95%% BCa bootstrap intervals over cases."
        ),
    )
    p.add_argument("checkpoint", help="best_model.pt or the folder 'monai-transfer finetune' wrote")
    p.add_argument("--data", required=True, help="datalist JSON")
    p.add_argument("--section", default="test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    p.add_argument("--out", default=None, help="write the metrics and per-case records to this JSON file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "rank",
        help="rank candidate starting points on a labelled set before fine-tuning (kNN, linear probe, LogME)",
        description=(
            "Extract pooled features of the labelled target set with each candidate backbone and score them with "
            "cross-validated kNN accuracy, a linear probe and LogME (You et al., 2021), in minutes rather than a "
            "fine-tuning run each. With --finetune-results (JSON: candidate -> metric) it reports Kendall's tau "
            "and Spearman's rho between each estimate and the real outcome."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--candidate",
        nargs="+",
        required=True,
        metavar="BACKBONE[:PRETRAINED]",
        help="e.g. resnet18 (random init) resnet18:resnet18-f37072fd.pth resnet50:torchvision-imagenet1k-v2",
    )
    p.add_argument("--data", required=True, help="labelled datalist JSON")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], required=True)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--label-key", default="label")
    p.add_argument("--rank-by", choices=["logme", "knn", "linear_probe"], default="logme")
    p.add_argument(
        "--source-data",
        default=None,
        help="datalist of the pretraining data (its 'unlabeled' or 'training' section): adds the domain gap "
        "(Frechet distance and MMD in each backbone's feature space) between it and the target set",
    )
    p.add_argument("--finetune-results", default=None, help="JSON mapping candidate label -> fine-tuned metric")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for ranking.json and the table")
    p.set_defaults(func=_cmd_rank)

    from monai_transfer.transforms.corruptions import CORRUPTIONS

    p = sub.add_parser(
        "robustness",
        help="a fine-tuned checkpoint's metric under 9 corruptions x 5 severities, and its drop",
        description=(
            "Evaluate a 'monai-transfer finetune' checkpoint on clean and corrupted copies of a datalist section "
            "(Gaussian noise, blur, contrast, gamma, bias field, Gibbs ringing, k-space spikes, motion ghosting, "
            "resolution loss; severity table in docs/evaluation.md). Deterministic for --seed. Writes a JSON, a "
            "Markdown table and a PNG plot of metric vs severity."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="best_model.pt or the folder 'monai-transfer finetune' wrote")
    p.add_argument("--data", required=True, help="datalist JSON")
    p.add_argument("--section", default="test")
    p.add_argument("--corruption", nargs="+", default=None, choices=list(CORRUPTIONS), help="default: all")
    p.add_argument("--severity", nargs="+", type=int, default=[1, 2, 3, 4, 5], choices=[1, 2, 3, 4, 5])
    p.add_argument("--metric", default=None, help="default: mean_dice (segmentation) or auroc (classification)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser(
        "tour",
        help="run the longest end-to-end path on the demo data (the quickstart's main job)",
        description=(
            "Demo data (simulated on the MNI152 template) -> DICOM series -> index -> MetaTensor -> a 2D RGB "
            "checkpoint in torchvision's layout imported into a 3D 1-channel ResNet-18 (surgery, inflation, load "
            "report) -> classification and segmentation TransferNets on the scan -> TorchScript export, checked "
            "-> weights saved with provenance and read back. Nothing is downloaded."
        ),
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="demo volume edge (multiple of 32)")
    p.add_argument("--subjects", type=int, default=6, help="simulated subjects")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_tour)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
