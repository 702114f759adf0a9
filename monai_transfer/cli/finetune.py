"""The ``finetune`` and ``infer`` commands: argument parsing over ``monai_transfer.finetune`` and
``monai_transfer.bundle``."""

from __future__ import annotations

import argparse
import json
import sys

from monai_transfer.cli._common import _parse_kv
from monai_transfer.cli.spec_flags import add_spec_arguments, given_settings
from monai_transfer.engines.specs import spec_class


def _resume(args: argparse.Namespace) -> str:
    if args.overwrite and args.resume != "never":
        raise ValueError("--overwrite starts the run again; it cannot be combined with --resume")
    return "overwrite" if args.overwrite else args.resume


def _settings(args: argparse.Namespace) -> dict:
    """The fine-tuning settings the flags give (the spec's defaults fill the rest); ``--intensity NAME`` with
    ``--intensity-arg KEY=VALUE`` pairs is the one setting worded in two flags."""
    settings = given_settings(args, spec_class("finetune"))
    if args.intensity:
        settings["intensity"] = {"name": args.intensity, **_parse_kv(args.intensity_arg or [])}
    elif args.intensity_arg:
        raise ValueError("--intensity-arg needs --intensity NAME")
    return settings


#: settings a ``--config`` run takes from the flags (as overrides of the config's ids of the same name)
_CONFIG_FLAGS = ("amp", "channels_last", "compile")


def _flag(args: argparse.Namespace, name: str) -> str:
    """The flag the user typed for a setting (``--data`` for ``datalist``)."""
    from monai_transfer.engines.specs import spec_fields

    field = next((f for f in spec_fields(spec_class("finetune")) if f.name == name), None)
    return (field.metadata.get("flag") if field is not None else None) or "--" + name.replace("_", "-")


def _cmd_finetune(args: argparse.Namespace) -> int:
    from monai_transfer.bundle import bundle_from_run
    from monai_transfer.finetune import finetune, finetune_config_run

    missing = [_flag(args, n) for n in ("backbone", "task", "datalist") if not getattr(args, n) and not args.config]
    if missing:
        raise ValueError(f"give {', '.join(missing)} (or --config FILE)")
    settings = _settings(args)
    if args.config:  # the flags are overrides of the config's ids; a --set of the same id comes later and wins
        ignored = [_flag(args, k) for k in settings if k not in (*_CONFIG_FLAGS, "progress", "out_dir")]
        if ignored:  # a flag a config run would not read must not look as if it had
            raise ValueError(f"{args.config} is a bundle config: set its values with --set ID=VALUE (e.g. --set "
                             f"train#trainer#max_epochs=5, --set lr=1e-4), not {', '.join(ignored)}")  # fmt: skip
        speed = [f"{k}={settings[k]}" for k in _CONFIG_FLAGS if k in settings]
        result = finetune_config_run(args.config, args.out_dir, speed + list(args.set or []), _resume(args))
    else:
        spec = spec_class("finetune")(**{**settings, "overrides": args.set,
                                         "resume": _resume(args)})  # fmt: skip
        result = finetune(spec, print_config=args.print_bundle)
        if args.print_bundle:
            print(json.dumps(result, indent=4))
            return 0
    if result.get("load_report"):
        print(f"pretrained weights loaded (strict):\n{result['load_report_table']}")
    if not args.no_bundle:
        result["bundle"] = str(bundle_from_run(args.out_dir, overwrite=True))
    shown = {k: v for k, v in result.items() if k not in ("load_report", "load_report_table")}
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monai_transfer.bundle import infer, skipped_images

    spec = spec_class("infer")(**{**given_settings(args, spec_class("infer")), "overrides": args.set})
    out = infer(spec)
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
    # one flag per field of FinetuneSpec (its type, choices and help): a new setting is one field
    add_spec_arguments(p, spec_class("finetune"), required=("out_dir",))
    p.add_argument("--intensity", default=None,
                   help="intensity mapping: zscore, imagenet, range, minmax, percentile, preset, none (default: the "
                   "starting point's recorded one, else zscore; a departure is warned about and recorded)")  # fmt: skip
    p.add_argument("--intensity-arg", nargs="*", default=[], metavar="KEY=VALUE",
                   help="its parameters, e.g. a_min=-1000 a_max=1000 (range)")  # fmt: skip
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
    # one argument per field of InferSpec (its type and help)
    add_spec_arguments(p, spec_class("infer"), required=("images", "out_dir"))
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="set any value of inference.json")
    p.set_defaults(func=_cmd_infer)
