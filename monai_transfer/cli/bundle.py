"""The ``bundle`` commands: ``create`` (a MONAI bundle for a starting point) and ``check`` (lint a bundle).

Argument parsing only: the work is done by :func:`monai_transfer.bundle.create_bundle` and
:func:`monai_transfer.bundle.check_bundle`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monai_transfer.cli._common import ParagraphHelpFormatter, _parse_kv, help_by_default


def _size(values: list[int] | None) -> list[int] | int | None:
    """``--spatial-size 224`` -> 224 (every axis); ``--spatial-size 96 96 64`` -> the list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _cmd_bundle_create(args: argparse.Namespace) -> int:
    from monai_transfer.bundle import check_bundle, create_bundle

    labels = list(args.labels) if args.labels else None
    num_classes = args.num_classes if args.num_classes is not None else (len(labels) if labels else None)
    if num_classes is None:
        raise ValueError("give --num-classes or --labels (one name per class, background first for segmentation)")
    intensity = None
    if args.intensity is not None:
        intensity = {"name": args.intensity, **_parse_kv(args.intensity_arg)}
    elif args.intensity_arg:
        raise ValueError("--intensity-arg needs --intensity NAME")
    pretrained = None if args.pretrained in (None, "", "none", "random") else args.pretrained
    out = create_bundle(
        args.out,
        backbone=args.backbone,
        task=args.task,
        spatial_dims=args.spatial_dims,
        num_classes=num_classes,
        in_channels=args.in_channels,
        labels=labels,
        pretrained=pretrained,
        weights=args.weights,
        strategy=args.strategy,
        strategy_kwargs=_parse_kv(args.strategy_arg),
        intensity=intensity,
        spatial_size=_size(args.spatial_size),
        patch_size=_size(args.patch_size),
        backbone_kwargs=_parse_kv(args.backbone_arg),
        head_kwargs=_parse_kv(args.head_arg),
        overrides=_parse_kv(args.set),
        name=args.name,
        description=args.description,
        modality=args.modality,
        version=args.version,
        changelog=args.changelog,
        overwrite=args.overwrite,
    )
    print(f"wrote bundle {out}")
    if (out / "large_files.yml").is_file():
        print(f"fetch its starting weights with: python -m monai.bundle download_large_files --bundle_path {out}")
    if args.check:
        return _report(out, check_bundle(out, export=not args.no_export))
    return 0


def _report(root: Path, problems: list) -> int:
    for p in problems:
        print(p)
    if problems:
        print(f"{root}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", file=sys.stderr)
        return 1
    print(f"{root}: no problems found")
    return 0


def _cmd_bundle_check(args: argparse.Namespace) -> int:
    from monai_transfer.bundle import check_bundle

    root = Path(args.bundle)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (give a bundle folder holding configs/)")
    problems = check_bundle(root, export=not args.no_export, schema=args.schema)
    if args.json:
        print(json.dumps([{"file": p.file, "key": p.key, "message": p.message} for p in problems], indent=2))
        return 1 if problems else 0
    return _report(root, problems)


_CREATE_EPILOG = """examples:
  # 2D chest radiograph classifier from torchvision's ImageNet ResNet-50 (RGB filters summed into 1 channel)
  monai-transfer bundle create --backbone resnet50 --pretrained torchvision-imagenet1k-v2 \\
      --task classification --spatial-dims 2 --labels normal pneumonia --spatial-size 224 --out bundles/cxr_resnet50
  # 3D segmentation from the SwinUNETR self-supervised encoder, 96^3 patches
  monai-transfer bundle create --backbone swin_unetr --pretrained swinunetr-ssl-5050ct --task segmentation \\
      --spatial-dims 3 --labels background liver tumour --patch-size 96 --out bundles/liver_swin
  # from your own 'pretrain' encoder, fine-tuned with layer-wise learning-rate decay
  monai-transfer bundle create --backbone resnet18 --pretrained runs/ssl/encoder.pt --task classification \\
      --spatial-dims 3 --labels no_lesion lesion --strategy llrd --strategy-arg decay=0.75 --out bundles/mine

then:
  python -m monai.bundle download_large_files --bundle_path OUT      # published weights (large_files.yml)
  python -m monai.bundle run --config_file OUT/configs/train.json --bundle_root OUT \\
      --dataset_dir DATA --datalist DATA/datalist.json
  monai-transfer bundle check OUT
"""


_CREATE_DESCRIPTION = (
    "Write a MONAI bundle in the model-zoo layout to --out: configs/metadata.json (MONAI's schema, labels in "
    "channel_def, a changelog entry), configs/train.json (fine-tuning with the --strategy, label fraction, "
    "early stopping, the best checkpoint to models/model.pt), configs/evaluate.json (merged over train.json: "
    "models/model.pt on the test section), configs/inference.json (segmentation: label maps with the input's "
    "geometry; classification: class probabilities), configs/multi_gpu_train.json (torchrun), "
    "configs/logging.conf, docs/README.md (the starting point, its provenance and licence, the expected input, "
    "how to run each config) and LICENSE. Published starting weights (--pretrained SOURCE; list them with "
    "'monai-transfer weights sources') are not copied: large_files.yml names their URL and published hash, "
    "and 'python -m monai.bundle download_large_files' fetches them. A checkpoint file (--pretrained PATH) is "
    "copied into models/pretrained/, and so are the weights of a bundle or run folder the package wrote (a "
    "finetune run or bundle: its fine-tuned backbone; a pretrain folder: its encoder.pt). "
    "The intensity mapping is the starting point's own (its provenance) unless "
    "--intensity overrides it. The bundle is assembled beside --out and moved into place at the end: a failure "
    "leaves nothing behind, and an existing --out is refused unless --overwrite. Exit codes: 0 written "
    "(and, with --check, no problems); 1 --check found problems; 2 bad arguments."
)

_CHECK_DESCRIPTION = (
    "Lint the MONAI bundle in BUNDLE, offline and without changing it: the files a model-zoo bundle ships "
    "(LICENSE, configs/metadata.json, train.json, inference.json, logging.conf, docs/README.md, models/model.pt "
    "unless large_files.yml lists it or train.json writes it); JSON that parses, without duplicate keys, with a "
    "4-space indent; the metadata against MONAI's schema (meta_schema_20240725, shipped with the package: "
    "verify_metadata without a download) with a changelog entry for its version; no absolute path in a config "
    "(paths come from @bundle_root or @dataset_dir) and no reference to a missing id; no file over 25 MB unless "
    "large_files.yml lists it, and that list well formed; the properties MONAI's train and infer workflows "
    "require and the ids MONAI Label reads; network_def builds, models/model.pt loads into it strictly, "
    "verify_net_in_out passes, and ckpt_export to TorchScript (ONNX when the network does not script) computes "
    "what the eager network does. Prints one line per problem ('FILE: KEY: message'). Exit codes: 0 no "
    "problems; 1 problems found; 2 bad arguments or no such folder."
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    bundle = sub.add_parser(
        "bundle",
        help="write a MONAI bundle for a starting point (create); lint a bundle (check)",
        description=(
            "MONAI bundles: a network with its fine-tuning, evaluation and inference configs, run with "
            "'python -m monai.bundle run', loaded by MONAI Label and embedded in research code with "
            "monai_transfer.bundle.load_bundle_network. See docs/bundles.md."
        ),
    )
    bsub = bundle.add_subparsers(dest="bundle_command", metavar="BUNDLE_COMMAND")
    _add_create_parser(bsub)
    _add_check_parser(bsub)
    help_by_default(bundle)


def _add_create_parser(bsub: argparse._SubParsersAction) -> None:
    """``bundle create``: its options in three groups, added in the order ``--help`` lists them."""
    p = bsub.add_parser(
        "create",
        help="write a complete bundle (fine-tuning, evaluation, inference) for a backbone and its starting point",
        description=_CREATE_DESCRIPTION,
        epilog=_CREATE_EPILOG,
        formatter_class=ParagraphHelpFormatter,
    )
    _add_create_network_arguments(p)
    _add_create_training_arguments(p)
    _add_create_output_arguments(p)
    p.set_defaults(func=_cmd_bundle_create)


def _add_create_network_arguments(p: argparse.ArgumentParser) -> None:
    """The network: backbone, starting weights, task, dimensions, channels, classes, and where the bundle goes."""
    p.add_argument("--backbone", required=True, help="backbone registry name ('monai-transfer backbones')")
    p.add_argument(
        "--pretrained",
        default=None,
        metavar="SOURCE|PATH",
        help="starting weights: a published source name ('monai-transfer weights sources'), a checkpoint file "
        "(e.g. a 'pretrain' run's encoder.pt), a bundle or run folder the package wrote, or none for random "
        "initialisation",
    )
    p.add_argument("--task", choices=["classification", "segmentation"], required=True)
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=2, help="2D or 3D images")
    p.add_argument("--in-channels", type=int, default=1, help="image channels (channel surgery adapts RGB weights)")
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        metavar="NAME",
        help="class names, one per class (segmentation: background first); written to the metadata's channel_def",
    )
    p.add_argument("--num-classes", type=int, default=None, help="number of classes (default: the number of --labels)")
    p.add_argument("--out", required=True, help="the bundle folder to write (refused if it exists, unless --overwrite)")


def _add_create_training_arguments(p: argparse.ArgumentParser) -> None:
    """What train.json does: strategy, intensity mapping, sizes, backbone and head options, values, shipped weights."""
    p.add_argument(
        "--strategy",
        default="full",
        help="fine-tuning strategy of train.json: full, linear-probe, freeze-k (or freeze-<k>), llrd, "
        "gradual-unfreeze or lp-ft (docs/finetune.md)",
    )
    p.add_argument(
        "--strategy-arg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="strategy options, e.g. decay=0.75 (llrd), k=2 (freeze-k), lp_epochs=3 (lp-ft)",
    )
    p.add_argument(
        "--intensity",
        default=None,
        help="override the starting point's intensity mapping: zscore, imagenet, range, minmax, percentile, preset, "
        "none (default: the mapping recorded in the starting point's provenance; z-score when it records none)",
    )
    p.add_argument(
        "--intensity-arg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="parameters of --intensity (a_min=-1000 a_max=1000; lower=0.5 upper=99.5; preset=ct)",
    )
    p.add_argument(
        "--spatial-size",
        type=int,
        nargs="+",
        default=None,
        help="classification: the size images are resized to (one value for every axis; a ViT's img_size by default)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        nargs="+",
        default=None,
        help="segmentation: the random training crop (3D: also the sliding window of evaluation and inference)",
    )
    p.add_argument(
        "--backbone-arg", nargs="*", default=[], metavar="KEY=VALUE", help="backbone options, e.g. img_size=96"
    )
    p.add_argument(
        "--head-arg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="head or decoder options, e.g. dropout=0.2, hidden_dims=[256] (classification), kind=unet (segmentation)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="top-level values of train.json, e.g. lr=1e-4 batch_size=4 patience=5 label_fraction=0.1",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="fine-tuned weights (a state_dict file matching the network) to ship as models/model.pt",
    )


def _add_create_output_arguments(p: argparse.ArgumentParser) -> None:
    """The bundle's metadata, overwriting, and the optional check of the written bundle."""
    p.add_argument("--name", default=None, help="bundle name in the metadata and README (default: from the options)")
    p.add_argument("--description", default=None, help="one paragraph for the metadata and README")
    p.add_argument("--modality", default=None, help="input modality, e.g. CT, MR, CXR (default: the starting point's)")
    p.add_argument("--version", default="0.1.0", help="the bundle's version")
    p.add_argument("--changelog", default="initial version", help="the changelog entry of --version")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--check", action="store_true", help="run 'bundle check' on the written bundle")
    p.add_argument("--no-export", action="store_true", help="with --check: skip the TorchScript/ONNX export check")


def _add_check_parser(bsub: argparse._SubParsersAction) -> None:
    """``bundle check``: lint a bundle folder."""
    p = bsub.add_parser(
        "check",
        help="lint a bundle: files, metadata schema, paths, MONAI workflow properties, weights, export",
        description=_CHECK_DESCRIPTION,
        epilog="example:\n  monai-transfer bundle check bundles/resnet50_imagenet_cls2d",
        formatter_class=ParagraphHelpFormatter,
    )
    p.add_argument("bundle", help="the bundle folder (holding configs/, models/, LICENSE)")
    p.add_argument(
        "--no-export", action="store_true", help="skip the export check (faster; the other checks still run)"
    )
    p.add_argument(
        "--schema",
        default=None,
        help="validate the metadata against this JSON schema file instead of the shipped meta_schema_20240725.json",
    )
    p.add_argument("--json", action="store_true", help="print the problems as a JSON list of {file, key, message}")
    p.set_defaults(func=_cmd_bundle_check)
