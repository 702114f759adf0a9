"""The ``rank`` (choosing a starting point) and ``robustness`` (corruption suite) commands."""

from __future__ import annotations

import argparse
import json


def _cmd_rank(args: argparse.Namespace) -> int:
    from monai_transfer.evaluation import rank_backbones

    candidates = []
    for item in args.candidate:
        name, _, pretrained = item.partition(":")
        candidates.append((name, pretrained or None))
    finetune_results = None
    if args.finetune_results:
        with open(args.finetune_results) as f:
            finetune_results = json.load(f)
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
    print(result.to_table())
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from monai_transfer.evaluation import checkpoint_robustness

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
    print(report.to_table())
    print(f"wrote {args.out}/robustness.json, robustness.md and robustness.png")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--corruption",
        nargs="+",
        default=None,
        help="names among gaussian_noise, blur, contrast, gamma, bias_field, gibbs_ringing, kspace_spike, "
        "motion_ghosting, resolution_loss (default: all); an unknown name is refused with the list",
    )
    p.add_argument("--severity", nargs="+", type=int, default=[1, 2, 3, 4, 5], choices=[1, 2, 3, 4, 5])
    p.add_argument("--metric", default=None, help="default: mean_dice (segmentation) or auroc (classification)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_robustness)
