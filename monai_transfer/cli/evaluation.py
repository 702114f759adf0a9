"""The ``evaluate`` (metrics with intervals), ``rank`` (choosing a starting point) and ``robustness`` (corruption
suite) commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from monai_transfer.cli._common import _parse_kv, check_readable_weights, load_errors


def _section_rows(datalist: str, section: str) -> tuple[list[dict[str, Any]], Any]:
    """The section's rows in the order ``evaluate`` reads them, and the datalist's ``labels`` property."""
    from monai_transfer.data.datalist import load_datalist, load_datalist_file

    props = load_datalist_file(datalist)
    return load_datalist(datalist, section, required_keys=("image", "label")), props.get("labels")


#: summary values copied to the top level of ``evaluate``'s output
DECIDED = ("accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "accuracy_at_0.5", "auprc", "brier")


def _decision_plan(rule: Any, calibrate: str, one_vs_rest: bool, recorded: dict) -> dict | None:
    """How ``evaluate`` decides: ``None`` to apply the run's recorded decision unchanged, else the rule, calibration
    and one-vs-rest choice to make, and whether that needs the validation section's cases."""
    if rule == "run" and calibrate == "run" and not one_vs_rest and recorded:
        return None
    if rule == "run":  # the run's own rule (Youden's J for a run that recorded none), re-chosen with the new options
        rule = recorded.get("class_rule") or recorded.get("rule") or "youden"
        rule = "youden" if rule == "argmax" and one_vs_rest else rule
    if calibrate == "run":
        calibrate = "temperature" if recorded.get("temperature") else "none"
    fixed = rule == "argmax" or isinstance(rule, float)
    return {"rule": rule, "calibrate": calibrate, "one_vs_rest": one_vs_rest,
            "chosen_on_validation": not fixed or calibrate == "temperature" or one_vs_rest}  # fmt: skip


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from monai_transfer.data.case_ids import class_names, name_cases
    from monai_transfer.finetune import evaluate
    from monai_transfer.finetune.decision import decide, decided_metrics, read_decision
    from monai_transfer.metrics.case_summary import summarize_cases
    from monai_transfer.metrics.thresholds import check_threshold_rule, majority_baseline

    rule = args.threshold if args.threshold == "run" else check_threshold_rule(args.threshold)
    path = check_readable_weights(args.checkpoint) or args.checkpoint
    run_dir = Path(path).parent.parent if Path(path).is_file() else Path(path)
    plan = _decision_plan(rule, args.calibrate, args.one_vs_rest, read_decision(run_dir) or {})
    if plan is not None and plan["chosen_on_validation"] and args.threshold_section == args.section:
        raise ValueError(
            f"--threshold-section {args.threshold_section!r} is the evaluated section: choose the threshold "
            "(and any temperature) on held-out validation data, not on the cases it is scored on"
        )
    rows, labels = _section_rows(args.data, args.section)
    with load_errors(path):
        metrics = evaluate(
            args.checkpoint, args.data, section=args.section, batch_size=args.batch_size, overrides=args.set
        )
    # each record names its case (the row's id, else its image's file name) and patient, so that intervals resample
    # patients rather than the slices of one patient as if they were independent
    cases = name_cases(metrics.pop("cases"), rows, labels)
    if class_names(labels):
        metrics["class_names"] = [name for _, name in sorted(class_names(labels).items())]
    decision: dict = {}
    if cases and "prob" in cases[0]:  # classification: the decision rule behind accuracy, and its baseline
        if plan is None:
            decision = read_decision(run_dir) or {}
        elif plan["chosen_on_validation"]:
            with load_errors(path):
                val = evaluate(args.checkpoint, args.data, section=args.threshold_section,
                               batch_size=args.batch_size, overrides=args.set)  # fmt: skip
            decision = decide(val["cases"], plan["rule"], plan["calibrate"], plan["one_vs_rest"])
        else:
            decision = decide(cases, plan["rule"])  # a fixed threshold (or argmax): nothing is chosen on these cases
        metrics.update(threshold=decision.get("threshold"), threshold_rule=decision.get("rule"),
                       majority_baseline=majority_baseline([c["label"] for c in cases]))  # fmt: skip
    with warnings.catch_warnings():  # printed below as warning: lines, once each
        warnings.filterwarnings("ignore", message=r".*independent units", category=UserWarning)
        metrics["summary"] = (
            decided_metrics(cases, decision, seed=args.seed) if decision else summarize_cases(cases, seed=args.seed)
        )
    # the top-level threshold-dependent values are the decided ones too (the evaluator's own accuracy is argmax)
    metrics.update({k: metrics["summary"][k] for k in DECIDED if k in metrics["summary"]})
    for note in metrics["summary"].get("warnings", []):
        print(f"warning: {note}", file=sys.stderr)
    if args.out:
        from monai_transfer.utils.atomic import atomic_write_json

        atomic_write_json(args.out, {**metrics, "cases": cases})
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
    p.add_argument("checkpoint", help="the folder 'monai-transfer finetune' wrote (or its models/model.pt)")
    p.add_argument("--data", required=True, help="datalist JSON (or a MedMNIST .npz)")
    p.add_argument("--section", default="test", help="datalist section to evaluate")
    p.add_argument("--batch-size", type=int, default=8, help="evaluation batch size")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    p.add_argument("--out", default=None, help="write the metrics and per-case records to this JSON file")
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE",
                   help="change a value of the run's saved config (configs/train.json) for this evaluation, e.g. "
                   "validate#inferer#overlap=0.5 (repeatable)")  # fmt: skip
    p.add_argument(
        "--threshold",
        default="run",
        metavar="RULE",
        help="how a binary classifier decides: 'run' (default: the threshold the run chose on its validation set, "
        "models/decision.json; runs without one choose Youden's J on --threshold-section), or a rule applied on "
        "--threshold-section: youden, f1, sensitivity:X, argmax (0.5) or a number in (0, 1). Accuracy at 0.5 is "
        "reported beside it as accuracy_at_0.5",
    )
    p.add_argument(
        "--threshold-section",
        default="validation",
        help="datalist section the threshold is chosen on (default: validation); never the evaluated section",
    )
    p.add_argument(
        "--calibrate",
        choices=["run", "none", "temperature"],
        default="run",
        help="probability calibration: 'run' (default: the temperature the run fitted, if any), 'none', or "
        "'temperature' (fitted on --threshold-section, Guo et al. 2017; it changes ECE and Brier, not AUROC)",
    )
    p.add_argument(
        "--one-vs-rest",
        action="store_true",
        help="multi-class: also choose each class's threshold against the rest on --threshold-section by the rule "
        "and report its sensitivity, specificity, F1 and balanced accuracy (class<k>_*; the predicted class stays "
        "the argmax)",
    )
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
