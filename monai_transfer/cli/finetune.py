"""The ``finetune`` and ``evaluate`` commands."""

from __future__ import annotations

import argparse
import json

from monai_transfer.cli._common import _parse_kv


def _cmd_finetune(args: argparse.Namespace) -> int:
    from monai_transfer.finetune import finetune

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
    shown = {k: v for k, v in result.items() if k not in ("cases",)}
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from monai_transfer.evaluation import summarize_cases
    from monai_transfer.finetune import evaluate

    from monai_transfer.evaluation.thresholds import decision_fields

    if args.threshold == "youden" and args.threshold_section == args.section:
        raise ValueError(
            f"--threshold-section {args.threshold_section!r} is the evaluated section: choose the threshold on "
            "held-out validation data, not on the cases it is scored on"
        )
    metrics = evaluate(args.checkpoint, args.data, section=args.section, batch_size=args.batch_size)
    cases = metrics.pop("cases")
    if cases and "prob" in cases[0]:  # classification: the decision rule behind accuracy, and its baseline
        val_cases = None
        if args.threshold == "youden":
            val = evaluate(args.checkpoint, args.data, section=args.threshold_section, batch_size=args.batch_size)
            val_cases = val["cases"]
        metrics.update(decision_fields(cases, val_cases))
    metrics["summary"] = summarize_cases(cases, seed=args.seed)
    if args.out:
        from monai_transfer.utils.atomic import atomic_write_json

        atomic_write_json(args.out, {**metrics, "cases": cases})
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--strategy",
        default="full",
        help="full, linear-probe, freeze-k (or freeze-<k>), llrd, gradual-unfreeze or lp-ft; see docs/finetune.md",
    )
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
            "Dice, HD95 and surface Dice per class and mean) with 95%% BCa bootstrap intervals over cases."
        ),
    )
    p.add_argument("checkpoint", help="best_model.pt or the folder 'monai-transfer finetune' wrote")
    p.add_argument("--data", required=True, help="datalist JSON")
    p.add_argument("--section", default="test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    p.add_argument("--out", default=None, help="write the metrics and per-case records to this JSON file")
    p.add_argument(
        "--threshold",
        choices=["argmax", "youden"],
        default="argmax",
        help="binary classification: besides argmax accuracy, report accuracy_at_threshold at the threshold that "
        "maximises Youden's J on --threshold-section (default: argmax only)",
    )
    p.add_argument(
        "--threshold-section",
        default="validation",
        help="datalist section the Youden threshold is chosen on (default: validation)",
    )
    p.set_defaults(func=_cmd_evaluate)
