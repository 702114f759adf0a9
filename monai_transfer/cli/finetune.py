"""The ``finetune`` and ``infer`` commands: argument parsing over ``monai_transfer.finetune`` and
``monai_transfer.bundle``."""

from __future__ import annotations

import argparse
import json
import sys

from monai_transfer.cli._common import _parse_kv, add_speed_arguments


def _resume(args: argparse.Namespace) -> str:
    if args.overwrite and args.resume != "never":
        raise ValueError("--overwrite starts the run again; it cannot be combined with --resume")
    return "overwrite" if args.overwrite else args.resume


def _options(args: argparse.Namespace) -> dict:
    intensity = None
    if args.intensity:
        intensity = {"name": args.intensity, **_parse_kv(args.intensity_arg or [])}
    elif args.intensity_arg:
        raise ValueError("--intensity-arg needs --intensity NAME")
    return {
        "strategy_kwargs": _parse_kv(args.strategy_arg),
        "num_classes": args.num_classes,
        "spatial_dims": args.spatial_dims,
        "in_channels": args.in_channels,
        "loss": args.loss,
        "class_weights": args.class_weights,
        "optimizer": args.optimizer,
        "key_metric": args.key_metric,
        "spatial_size": args.spatial_size,
        "patch_size": args.patch_size,
        "augment": not args.no_augment,
        "backbone_kwargs": _parse_kv(args.backbone_arg),
        "device": args.device,
        "progress": not args.quiet,
        "tensorboard": not args.no_tensorboard,
        "intensity": intensity,
        "mlflow_uri": args.mlflow_uri,
        "threshold": args.threshold,
        "calibrate": args.calibrate,
        "one_vs_rest": args.one_vs_rest,
        **_speed(args),
    }


def _speed(args: argparse.Namespace) -> dict:
    """``--amp``, ``--channels-last``, ``--compile`` as given (config ids ``amp``, ``channels_last``, ``compile``)."""
    given = {"amp": args.amp, "channels_last": args.channels_last, "compile": args.compile}
    return {k: v for k, v in given.items() if v is not None}


def _cmd_finetune(args: argparse.Namespace) -> int:
    from monai_transfer.bundle import bundle_from_run
    from monai_transfer.finetune import finetune, finetune_config_run

    missing = [f"--{n}" for n in ("backbone", "task", "data") if not getattr(args, n) and not args.config]
    if missing:
        raise ValueError(f"give {', '.join(missing)} (or --config FILE)")
    common = {"out_dir": args.out, "overrides": args.set, "resume": _resume(args)}
    if args.config:  # the flags are overrides of the config's ids; a --set of the same id comes later and wins
        speed = [f"{k}={v}" for k, v in _speed(args).items()]
        result = finetune_config_run(args.config, **{**common, "overrides": speed + list(args.set or [])})
    else:
        result = finetune(
            backbone=args.backbone, pretrained=args.pretrained, task=args.task, strategy=args.strategy,
            label_fraction=args.label_fraction, seed=args.seed, datalist=args.data, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, head_lr_mult=args.head_lr_mult,
            warmup_epochs=args.warmup_epochs, patience=args.patience, num_workers=args.num_workers,
            test_section=args.test_section or None, print_config=args.print_bundle, **common, **_options(args),
        )  # fmt: skip
        if args.print_bundle:
            print(json.dumps(result, indent=4))
            return 0
    if result.get("load_report"):
        print(f"pretrained weights loaded (strict):\n{result['load_report_table']}")
    if not args.no_bundle:
        result["bundle"] = str(bundle_from_run(args.out, overwrite=True))
    shown = {k: v for k, v in result.items() if k not in ("load_report", "load_report_table")}
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monai_transfer.bundle import run_inference, skipped_images

    bundle = Path(args.bundle)
    if not (bundle / "configs" / "inference.json").is_file() and (bundle / "bundle").is_dir():
        bundle = bundle / "bundle"  # a finetune run folder: its inference bundle
    out = run_inference(bundle, args.images, args.out, overrides=args.set)
    skipped = skipped_images(out)
    if skipped:
        names = ", ".join(Path(s["image"]).name for s in skipped)
        print(f"error: {len(skipped)} image(s) could not be used and got no prediction ({names}: see the lines above "
              f"or {out}/skipped.json); the predictions of the other images are in {out}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"predictions written to {out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a (pretrained) backbone on a labelled datalist with a chosen strategy",
        description=(
            "Build a TransferNet (backbone + classification head or segmentation decoder), load the starting "
            "point (--pretrained: a checkpoint, a bundle folder or a known source; strict, and the load report is "
            "printed and saved), take a nested, stratified label fraction of the training section, and train with "
            "MONAI's SupervisedTrainer: validation every epoch, warm-up + cosine learning rates, early stopping, the "
            "best weights kept (atomically), sliding-window inference for 3D segmentation, the starting point's "
            "intensity mapping.\n\n"
            "The run is a MONAI bundle config, saved as OUT/configs/train.json (--print-bundle shows it without "
            "running): --set ID=VALUE sets any value of it (MONAI ids, '#' between levels: --set "
            "train#trainer#max_epochs=5), --config runs such a config instead of the flags, and python -m "
            "monai.bundle run runs it too.\n\n"
            "Writes OUT/models/model.pt (best weights), OUT/checkpoints/last.pt (a killed run continues exactly with "
            "--resume auto), result.json, test_cases.json, TensorBoard logs, and OUT/bundle/: an inference bundle "
            "of the best weights (python -m monai.bundle run --config_file OUT/bundle/configs/inference.json). A "
            "folder holding a run is continued (--resume auto) or refused, unless --overwrite."
        ),
        epilog=(
            "examples:\n"
            "  monai-transfer finetune --backbone resnet18 --pretrained torchvision-imagenet1k-v1 --task classification"
            " --data demo/lesion_cls_3d.json --out runs/cls\n"
            "  monai-transfer finetune ... --strategy llrd --strategy-arg decay=0.75 --set warmup_epochs=1\n"
            "  monai-transfer finetune --config runs/cls/configs/train.json --out runs/cls2 --set seed=1\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backbone", help="registry name ('monai-transfer backbones'); required without --config")
    p.add_argument("--pretrained", default=None, help="checkpoint path, bundle folder or source name (default: random)")
    p.add_argument("--task", choices=["classification", "segmentation"], help="required without --config")
    p.add_argument("--data", help="MSD-style datalist JSON (training/validation/test sections) or a MedMNIST "
                   ".npz; required without --config")  # fmt: skip
    p.add_argument("--out", required=True, help="the run folder")
    p.add_argument("--strategy", default="full",
                   help="full, linear-probe, freeze-k (or freeze-<k>), llrd, gradual-unfreeze or lp-ft; see "
                   "docs/finetune.md (default: full)")  # fmt: skip
    p.add_argument("--strategy-arg", nargs="*", default=[], metavar="KEY=VALUE",
                   help="strategy options, e.g. decay=0.75 (llrd), k=2 (freeze-k), lp_epochs=3 (lp-ft)")  # fmt: skip
    p.add_argument("--label-fraction", type=float, default=1.0,
                   help="fraction of labelled training cases, nested and class-stratified (default: 1.0)")  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the label subset, init, order, augmentation (default: 0)"
    )
    p.add_argument("--epochs", type=int, default=10, help="maximum epochs (default: 10)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    p.add_argument(
        "--lr", type=float, default=1e-3, help="base learning rate; strategies derive per-stage rates (default: 1e-3)"
    )
    p.add_argument("--weight-decay", type=float, default=1e-4, help="not applied to norms and biases (default: 1e-4)")
    p.add_argument(
        "--head-lr-mult", type=float, default=1.0, help="learning-rate multiplier of the new head (default: 1.0)"
    )
    p.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="linear warm-up before the cosine decay (default: 0)"
    )
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="(default: adamw)")
    p.add_argument("--loss", choices=["auto", "ce", "focal", "dice-ce"], default="auto",
                   help="auto: ce for classification, dice-ce for segmentation (default: auto)")  # fmt: skip
    p.add_argument(
        "--class-weights", default=None, help="'balanced' for inverse-frequency class weights (default: none)"
    )
    p.add_argument("--key-metric", choices=["auroc", "accuracy", "mean_dice"], default=None,
                   help="validation metric that picks the best epoch (default: auroc or mean_dice)")  # fmt: skip
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (default: off)")
    p.add_argument("--num-classes", type=int, default=None, help="default: the datalist's labels")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="default: from the images")
    p.add_argument("--in-channels", type=int, default=1, help="image channels (default: 1)")
    p.add_argument("--spatial-size", type=int, nargs="+", default=None,
                   help="classification: resize images to this size (default: keep)")  # fmt: skip
    p.add_argument("--patch-size", type=int, nargs="+", default=None,
                   help="segmentation: training crop; 3D: also the sliding window (default: whole images)")  # fmt: skip
    p.add_argument("--intensity", default=None,
                   help="intensity mapping: zscore, imagenet, range, minmax, percentile, preset, none (default: the "
                   "starting point's recorded one, else zscore; a departure is warned about and recorded)")  # fmt: skip
    p.add_argument("--intensity-arg", nargs="*", default=[], metavar="KEY=VALUE",
                   help="its parameters, e.g. a_min=-1000 a_max=1000 (range)")  # fmt: skip
    p.add_argument("--no-augment", action="store_true", help="no random flips in training")
    p.add_argument("--backbone-arg", nargs="*", default=[], metavar="KEY=VALUE", help="backbone options")
    p.add_argument("--test-section", default="test", help="section the best weights are evaluated on; '' for none "
                   "(default: test)")  # fmt: skip
    p.add_argument("--threshold", default="youden", metavar="RULE",
                   help="how a binary classifier decides, chosen on the validation section and applied to the test "
                        "section and by the inference bundle: youden (default; Youden's J), f1, sensitivity:X (the "
                        "highest threshold with validation sensitivity >= X), argmax (0.5) or a number in (0, 1); "
                        "accuracy at 0.5 is reported beside it as accuracy_at_0.5")  # fmt: skip
    p.add_argument("--calibrate", choices=["none", "temperature"], default="none",
                   help="fit a temperature on the validation section (Guo et al. 2017), applied to test metrics and "
                        "by the inference bundle (default: none)")  # fmt: skip
    p.add_argument("--one-vs-rest", action="store_true",
                   help="multi-class: also choose each class's threshold against the rest by --threshold's rule on "
                        "validation and report its test sensitivity, specificity, F1 and balanced accuracy (the "
                        "predicted class stays the argmax)")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--num-workers", type=int, default=0, help="data-loader workers (default: 0)")
    add_speed_arguments(p)
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE",
                   help="set any value of the run's bundle config (repeatable; value read as JSON)")  # fmt: skip
    p.add_argument(
        "--config", default=None, help="a fine-tuning bundle config (train.json) to run instead of the flags"
    )
    p.add_argument("--print-bundle", action="store_true", help="print the bundle config and exit without running")
    p.add_argument("--resume", choices=["never", "auto"], default="never",
                   help="auto: continue the run in --out (a finished run is kept as it is); a run of other settings "
                   "or data is refused, the difference named; more --epochs go on (default: never)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in --out: every output of the run is removed, other files stay")  # fmt: skip
    p.add_argument("--no-bundle", action="store_true", help="do not write OUT/bundle (the inference bundle)")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")
    p.add_argument("--mlflow-uri", default=None,
                   help="track the run in MLflow through MONAI's MLFlowHandler, e.g. sqlite:///mlruns.db (default: off)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser(
        "infer",
        help="predict with a bundle (or a finetune run folder) on a folder of images",
        description=(
            "Run the bundle's configs/inference.json (MONAI's ConfigWorkflow, as python -m monai.bundle run does) "
            "on every NIfTI/PNG/DICOM file of a folder, or on the files given. Segmentation writes label maps with "
            "each input's geometry (OUT/<name>_seg.nii.gz); classification writes OUT/predictions.jsonl with the "
            "class names and probabilities. The resolved config is saved as OUT/configs/inference.json.\n\n"
            "Every image is checked first. One that cannot be used (truncated, not an image, NaN values, the wrong "
            "number of axes) is named in one line and gets no prediction; the others are still predicted, the skipped "
            "ones are listed in OUT/skipped.json and the exit status is 1. A folder without images, or images none of "
            "which can be used, is an error (exit status 2) and writes nothing."
        ),
    )
    p.add_argument("bundle", help="a bundle folder, or the folder 'monai-transfer finetune' wrote")
    p.add_argument("--images", required=True, nargs="+", help="a folder of images, or image files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="set any value of inference.json")
    p.set_defaults(func=lambda a: _cmd_infer(_one_folder(a)))


def _one_folder(args: argparse.Namespace) -> argparse.Namespace:
    args.images = args.images[0] if len(args.images) == 1 else args.images
    return args
