"""The ``pretrain`` command: self-supervised pretraining from flags or a YAML config."""

from __future__ import annotations

import argparse
import json
import sys

from monai_transfer.cli._common import _parse_kv, _table

# flag name -> PretrainConfig field, for the flags that map one to one (defaults None: "not given")
_SIMPLE = (
    "method",
    "backbone",
    "spatial_dims",
    "data",
    "out",
    "section",
    "modality",
    "in_channels",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "min_lr",
    "warmup_epochs",
    "weight_decay",
    "weight_decay_end",
    "grad_clip",
    "device",
    "num_workers",
    "seed",
    "pretrained",
    "checkpoint_every",
    "resume",
    "monitor_data",
    "monitor_every",
    "monitor_k",
    "mlflow_uri",
)


def _list_methods() -> int:
    from monai_transfer.ssl.registry import ALL_FAMILIES, _backbones_of, get_method_spec, list_methods

    rows = []
    for name in list_methods():
        spec = get_method_spec(name)
        fits = "all" if set(ALL_FAMILIES) <= set(spec.families) else ", ".join(_backbones_of(spec.families))
        rows.append(
            {
                "method": name,
                "kind": spec.kind,
                "dims": ",".join(str(d) for d in spec.spatial_dims),
                "description": spec.description,
                "backbones": fits,
            }
        )
    print(_table(rows))
    print(f"\n'all' backbones: {', '.join(_backbones_of(ALL_FAMILIES))}.\nPapers:")
    for name in list_methods():
        print(f"  {name}: {get_method_spec(name).paper}")
    return 0


def config_from_args(args: argparse.Namespace):
    """The ``PretrainConfig`` of a parsed command line: the YAML file (if any), then the flags given."""
    from monai_transfer.ssl.config import PretrainConfig, load_config

    base = load_config(args.config) if args.config else PretrainConfig()
    overrides = {name: getattr(args, name) for name in _SIMPLE}
    if args.roi_size is not None:
        overrides["roi_size"] = list(args.roi_size)
    if args.teacher_momentum is not None:
        overrides["teacher_momentum"] = list(args.teacher_momentum)
    if args.amp is not None:
        overrides["amp"] = args.amp == "on"
    for flag, field in (
        ("method_arg", "method_kwargs"),
        ("backbone_arg", "backbone_kwargs"),
        ("view_arg", "view_kwargs"),
    ):
        given = _parse_kv(getattr(args, flag) or [])
        if given:
            overrides[field] = {**getattr(base, field), **given}
    if args.cache:
        overrides["cache"] = True
    if args.no_tensorboard:
        overrides["tensorboard"] = False
    if args.quiet:
        overrides["progress"] = False
    return base.merged(overrides)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    if args.list:
        return _list_methods()
    config = config_from_args(args)
    if args.print_config:
        import yaml

        from monai_transfer.ssl.run import resolve_config

        sys.stdout.write(yaml.safe_dump(resolve_config(config).to_dict(), sort_keys=False))
        return 0
    from monai_transfer.ssl.run import pretrain

    result = pretrain(config)
    if result:
        print(json.dumps({k: v for k, v in result.items() if k != "epoch_losses"}, indent=2, default=str))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of a 2D/3D backbone on unlabeled images (SimCLR, MoCo, DINO, MAE...)",
        description=(
            "Pretrain a registry backbone with a self-supervised method on the images of a datalist (section "
            "'unlabeled', else 'training'), on MONAI's engines. Views come from the method's recipe (foreground-aware "
            "crops, no colour jitter); learning rate, weight decay and teacher momentum follow cosine schedules; "
            "training checkpoints are atomic and a killed run continues exactly with --resume auto. Runs under "
            "torchrun unchanged (losses gather negatives across ranks). Writes config.yaml, checkpoints/, encoder.pt "
            "(weights + provenance, loads with load_pretrained and 'finetune --pretrained'), result.json, loss.png "
            "and TensorBoard logs.\n\n"
            "Options come from --config (YAML with the same names, underscores) and then the flags given.\n"
            "Unset options take the method's recommended values: see --print-config."
        ),
        epilog=(
            "examples:\n"
            "  monai-transfer pretrain --list\n"
            "  monai-transfer pretrain --method simclr --backbone resnet18 --spatial-dims 2 --data d.json --out runs/s\n"
            "  monai-transfer pretrain --config pretrain.yaml --epochs 5\n"
            "  torchrun --nproc_per_node 2 -m monai_transfer.cli pretrain --config pretrain.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--list", action="store_true", help="list the methods and the backbones each fits, then exit")
    p.add_argument("--config", default=None, help="YAML file of options (names as below, with underscores)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")
    p.add_argument("--method", default=None, help="SSL method (see --list)")
    p.add_argument("--backbone", default=None, help="registry backbone ('monai-transfer backbones')")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="2 or 3 (default 2)")
    p.add_argument("--data", default=None, help="datalist JSON of unlabeled images ({'image': path} entries)")
    p.add_argument("--section", default=None, help="datalist section (default: 'unlabeled', else 'training')")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--modality", choices=["ct", "mr", "xr"], default=None, help="intensity and augmentation preset")
    p.add_argument("--roi-size", type=int, nargs="+", default=None, help="view crop size (default 64 per axis)")
    p.add_argument("--in-channels", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="default 100")
    p.add_argument("--batch-size", type=int, default=None, help="per process (default 32)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default=None, help="default: the method's")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the method's)")
    p.add_argument("--min-lr", type=float, default=None, help="final learning rate of the cosine (default 1e-6)")
    p.add_argument(
        "--warmup-epochs", type=float, default=None, help="linear warm-up (default: 10%% of the run, at most 10)"
    )
    p.add_argument("--weight-decay", type=float, default=None, help="default: the method's")
    p.add_argument("--weight-decay-end", type=float, default=None, help="cosine end value (default: constant)")
    p.add_argument("--teacher-momentum", type=float, nargs=2, default=None, metavar=("START", "END"))
    p.add_argument("--grad-clip", type=float, default=None, help="max gradient norm (default: none)")
    p.add_argument("--amp", choices=["on", "off"], default=None, help="mixed precision (default: on with CUDA)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--num-workers", type=int, default=None, help="data-loading processes (default 0)")
    p.add_argument(
        "--cache", action="store_true", help="read and normalise every image once, keep it in memory (fast epochs)"
    )
    p.add_argument("--seed", type=int, default=None, help="initialisation, data order and views (default 0)")
    p.add_argument("--pretrained", default=None, help="start from these weights (checkpoint, bundle or source)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="iterations between checkpoints (default 100)")
    p.add_argument("--resume", default=None, help="'auto' (from OUT/checkpoints/last.pt if present) or a checkpoint")
    p.add_argument("--method-arg", nargs="*", default=[], metavar="KEY=VALUE", help="method options (temperature=0.2)")
    p.add_argument("--backbone-arg", nargs="*", default=[], metavar="KEY=VALUE", help="backbone options")
    p.add_argument("--view-arg", nargs="*", default=[], metavar="KEY=VALUE", help="view options (mask_ratio=0.6)")
    p.add_argument("--monitor-data", default=None, help="labelled datalist for the online kNN monitor")
    p.add_argument("--monitor-every", type=int, default=None, help="epochs between kNN evaluations (default 1)")
    p.add_argument("--monitor-k", type=int, default=None, help="kNN neighbours (default 20)")
    p.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (e.g. sqlite:///runs/mlruns.db)")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_pretrain)
