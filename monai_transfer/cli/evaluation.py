"""The ``evaluate`` (metrics with intervals), ``rank`` (choosing a starting point) and ``robustness`` (corruption
suite) commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from monai_transfer.cli._common import _parse_kv, check_readable_weights, load_errors
from monai_transfer.cli.spec_flags import add_spec_arguments, given_settings
from monai_transfer.engines.specs import spec_class


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from monai_transfer.finetune.evaluate_run import evaluate_run

    spec = spec_class("evaluate")(**{**given_settings(args, spec_class("evaluate")), "overrides": args.set})
    path = check_readable_weights(spec.checkpoint) or spec.checkpoint
    with load_errors(path):
        metrics = evaluate_run(spec)
    metrics.pop("cases", None)
    for note in metrics["summary"].get("warnings", []):
        print(f"warning: {note}", file=sys.stderr)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:
    from monai_transfer.evaluation import rank_backbones

    candidates = []
    for item in args.candidate:
        name, _, pretrained = item.partition(":")
        candidates.append((name, pretrained or None))
    intensity = None
    if args.intensity_arg and not args.intensity:
        raise ValueError("--intensity-arg needs --intensity NAME")
    if args.intensity:
        intensity = {"name": args.intensity, **_parse_kv(args.intensity_arg)}
    finetune_results = None
    if args.finetune_results:
        with open(args.finetune_results) as f:
            finetune_results = json.load(f)
    with warnings.catch_warnings():  # the sample-size warnings are printed under the table
        warnings.filterwarnings("ignore", message=r".*(target|source) cases", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*fewer cases than the", category=UserWarning)
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
            progress=not args.quiet,
            intensity=intensity,
        )
    print(result.to_table())
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from monai_transfer.evaluation import checkpoint_robustness

    path = check_readable_weights(args.checkpoint) or args.checkpoint
    with load_errors(path):
        report = checkpoint_robustness(
            args.checkpoint,
            args.data,
            section=args.section,
            corruptions=args.corruption,
            severities=args.severity,
            seed=args.seed,
            metric=args.metric,
            out_dir=args.out,
            progress=not args.quiet,
        )
    print(report.to_table())
    print(f"wrote {os.path.join(args.out, 'robustness.json')}, robustness.md and robustness.png")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a fine-tuned checkpoint on a datalist section, with 95%% intervals over patients",
        description=(
            "Evaluate the best weights of a finetune run folder on a datalist section, with the network, transforms "
            "and inferer rebuilt from the run's saved config (--set changes a value of it). Prints the metrics "
            "(classification: AUROC per class and mean, AUPRC, accuracy with its decision threshold and the "
            "majority-class baseline, balanced accuracy, F1, ECE; segmentation: Dice, HD95 and surface Dice per class "
            "and mean) with 95% BCa bootstrap intervals. When several cases share a patient_id (2D slices of one "
            "volume), the intervals resample patients, not cases; each says how many independent units it rests on, "
            "and fewer than 10 are warned about. --out also keeps one record per case, named by the datalist row's "
            "id (else its image file name) with its patient_id and class names. A file that is not a finetune "
            "checkpoint is named in a one-line error (exit code 2)."
        ),
    )
    # one argument per field of EvaluateSpec (its type, choices and help)
    add_spec_arguments(p, spec_class("evaluate"), required=("datalist",))
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE",
                   help="change a value of the run's saved config (configs/train.json) for this evaluation, e.g. "
                   "validate#inferer#overlap=0.5 (repeatable)")  # fmt: skip
    p.set_defaults(func=_cmd_evaluate)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_evaluate(sub)
    p = sub.add_parser(
        "rank",
        help="rank candidate starting points on a labelled set before fine-tuning (kNN, linear probe, LogME)",
        description=(
            "Extract pooled features of the labelled target set with each candidate backbone and score them with "
            "cross-validated kNN accuracy, a linear probe and LogME (You et al., 2021), in minutes rather than a "
            "fine-tuning run each. With --finetune-results (JSON: candidate -> metric) it reports Kendall's tau "
            "and Spearman's rho between each estimate and the real outcome. Scores resting on fewer than 20 cases "
            "(or a class with fewer cases than folds) are flagged under the table; MMD is the biased V-statistic, "
            "never negative. Each candidate sees the images through the intensity mapping its starting point "
            "records (provenance), else per-image 0.5-99.5th percentiles scaled to [0, 1]; --intensity overrides it "
            "for all candidates (with a warning where it departs from a recorded one). The mapping used, and where it "
            "came from, is listed under the table."
        ),
    )
    p.add_argument(
        "--candidate",
        nargs="+",
        required=True,
        metavar="BACKBONE[:PRETRAINED]",
        help="e.g. resnet18 (random init) resnet18:resnet18-f37072fd.pth resnet50:torchvision-imagenet1k-v2",
    )
    p.add_argument("--data", required=True, help="labelled datalist JSON (or a MedMNIST .npz)")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], required=True, help="2D or 3D backbones and images")
    p.add_argument("--in-channels", type=int, default=1, help="image channels")
    p.add_argument("--label-key", default="label", help="class-label key of the datalist entries")
    p.add_argument(
        "--rank-by",
        choices=["logme", "knn", "linear_probe"],
        default="logme",
        help="the estimate that orders the table",
    )
    p.add_argument(
        "--source-data",
        default=None,
        help="datalist of the pretraining data (its 'unlabeled' or 'training' section): adds the domain gap "
        "(Frechet distance and MMD in each backbone's feature space) between it and the target set",
    )
    p.add_argument(
        "--intensity",
        default=None,
        metavar="NAME",
        help="intensity mapping for every candidate, overriding what the starting points record: zscore, imagenet, "
        "range, minmax, percentile, preset, none (default: each candidate's recorded mapping, else percentile "
        "0.5-99.5 to [0, 1])",
    )
    p.add_argument(
        "--intensity-arg",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="parameters of --intensity (JSON values), e.g. a_min=-1000 a_max=1000 or preset=mr",
    )
    p.add_argument("--finetune-results", default=None, help="JSON mapping candidate label -> fine-tuned metric")
    p.add_argument("--seed", type=int, default=0, help="seed of random initialisations and folds")
    p.add_argument("--out", default=None, help="folder for ranking.json and ranking.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_rank)

    p = sub.add_parser(
        "robustness",
        help="a fine-tuned checkpoint's metric under 9 corruptions x 5 severities, and its drop",
        description=(
            "Evaluate a 'monai-transfer finetune' checkpoint on clean and corrupted copies of a datalist section "
            "(Gaussian noise, blur, contrast, gamma, bias field, Gibbs ringing, k-space spikes, motion ghosting, "
            "resolution loss; severity table in docs/evaluation.md). Deterministic for --seed. Writes a JSON, a "
            "Markdown table and a PNG plot of metric vs severity. A file that is not a finetune checkpoint is named "
            "in a one-line error (exit code 2)."
        ),
    )
    p.add_argument("checkpoint", help="the folder 'monai-transfer finetune' wrote (or its models/model.pt)")
    p.add_argument("--data", required=True, help="datalist JSON (or a MedMNIST .npz)")
    p.add_argument("--section", default="test", help="datalist section to evaluate")
    p.add_argument(
        "--corruption",
        nargs="+",
        default=None,
        help="names among gaussian_noise, blur, contrast, gamma, bias_field, gibbs_ringing, kspace_spike, "
        "motion_ghosting, resolution_loss (default: all); an unknown name is refused with the list",
    )
    p.add_argument(
        "--severity", nargs="+", type=int, default=[1, 2, 3, 4, 5], choices=[1, 2, 3, 4, 5], help="severities"
    )
    p.add_argument("--metric", default=None, help="default: mean_dice (segmentation) or auroc (classification)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the corruptions")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_robustness)
