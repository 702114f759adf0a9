"""The ``pretrain`` command: self-supervised pretraining from flags, a YAML file of options, or a bundle config.

The flags (and a YAML file of the same options) build a MONAI bundle config
(``monai_transfer.ssl.bundle_config.pretrain_config``); ``--set ID=VALUE`` then sets any value of it, and
``--config`` also takes such a bundle config (a saved ``configs/pretrain.json``) to run instead of the flags.
"""

from __future__ import annotations

import argparse
import json
import sys

from monai_transfer.cli._common import _parse_kv, _table, add_speed_arguments

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


def _bundle_file(path: str | None) -> bool:
    """Whether ``--config`` names a bundle config (rather than a YAML file of pretraining options)."""
    if not path:
        return False
    from monai_transfer.engines.workflow import load_config
    from monai_transfer.ssl.bundle_config import is_bundle_config

    try:
        values = load_config(path)
    except (ValueError, TypeError):  # not a mapping: the options loader names the problem
        return False
    return is_bundle_config(values)


def config_from_args(args: argparse.Namespace):
    """The ``PretrainConfig`` of a parsed command line: the YAML file (if any), then the flags given."""
    from monai_transfer.ssl.config import PretrainConfig, load_config

    base = load_config(args.config) if args.config else PretrainConfig()
    overrides = {name: getattr(args, name) for name in _SIMPLE}
    if args.roi_size is not None:
        overrides["roi_size"] = list(args.roi_size)
    if args.teacher_momentum is not None:
        overrides["teacher_momentum"] = list(args.teacher_momentum)
    for name in ("amp", "channels_last", "compile"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    for flag, field in (
        ("method_arg", "method_kwargs"),
        ("backbone_arg", "backbone_kwargs"),
        ("view_arg", "view_kwargs"),
    ):
        given = _parse_kv(getattr(args, flag) or [])
        if given:
            overrides[field] = {**getattr(base, field), **given}
    if args.intensity is not None or args.intensity_arg:
        name = args.intensity or (base.intensity or {}).get("name")
        if name is None:
            raise ValueError("--intensity-arg needs --intensity NAME (or an intensity in the --config file)")
        same = base.intensity if base.intensity and base.intensity.get("name") == name else {}
        overrides["intensity"] = {**dict(same or {}), "name": name, **_parse_kv(args.intensity_arg or [])}
    if args.cache:
        overrides["cache"] = True
    if args.overwrite:
        overrides["overwrite"] = True
    if args.keep_previous:
        overrides["keep_previous"] = True
    if args.no_tensorboard:
        overrides["tensorboard"] = False
    if args.quiet:
        overrides["progress"] = False
    return base.merged(overrides)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    if args.list:
        return _list_methods()
    # the pretraining run plus the step that writes the encoder's fine-tuning bundle (the bundle layer's)
    from monai_transfer.bundle.templates.pretrain import pretrain_config
    from monai_transfer.ssl.run import resolve_config, run_pretrain_config

    if _bundle_file(args.config):
        given = [
            f"--{n.replace('_', '-')}" for n in _SIMPLE if n not in ("out", "resume") and getattr(args, n) is not None
        ]
        if given:
            raise ValueError(f"{args.config} is a bundle config: set its values with --set ID=VALUE, not {given}")
        if args.resume is not None:
            args.set = [f"resume={json.dumps(args.resume)}", *args.set]
        if args.print_config:
            from monai_transfer.engines.workflow import apply_overrides, load_config, parse_overrides

            sys.stdout.write(json.dumps(apply_overrides(load_config(args.config), parse_overrides(args.set)), indent=4))
            return 0
        result = run_pretrain_config(args.config, args.out, args.set, overwrite=args.overwrite)
    else:
        config = config_from_args(args)
        if args.print_config:
            import yaml

            sys.stdout.write(yaml.safe_dump(resolve_config(config).to_dict(), sort_keys=False))
            return 0
        if args.print_bundle:
            from monai_transfer.engines.workflow import apply_overrides, parse_overrides

            bundle = apply_overrides(pretrain_config(config), parse_overrides(args.set))
            sys.stdout.write(json.dumps(bundle, indent=4) + "\n")
            return 0
        config = resolve_config(config)
        result = run_pretrain_config(pretrain_config(config), config.out, args.set, options=config)
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
            "Unset options take the method's recommended values: see --print-config.\n\n"
            "The run is a MONAI bundle config (saved as OUT/configs/pretrain.json; --print-bundle shows it): --set "
            "ID=VALUE sets any value of it (MONAI ids, '#' between levels: --set train#chance#patience=5), and "
            "--config also runs such a config instead of the flags (python -m monai.bundle run runs it too).\n\n"
            "Before training, a sample of images and views is checked: a run whose intensity mapping collapses the "
            "images (constant views) stops with the mapping named; a contrastive loss that stays at its chance value "
            "is flagged in the log and in result.json. A folder holding a run is resumed (--resume auto) or refused, "
            "unless --overwrite."
        ),
        epilog=(
            "examples:\n"
            "  monai-transfer pretrain --list\n"
            "  monai-transfer pretrain --method simclr --backbone resnet18 --spatial-dims 2 --data d.json --out runs/s\n"
            "  monai-transfer pretrain --config pretrain.yaml --epochs 5\n"
            "  monai-transfer pretrain ... --modality mr --intensity minmax        # uint8 or already-normalised data\n"
            "  monai-transfer pretrain --config runs/s/configs/pretrain.json --out runs/t --set epochs=200\n"
            "  torchrun --nproc_per_node 2 -m monai_transfer.cli pretrain --config pretrain.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--list", action="store_true", help="list the methods and the backbones each fits, then exit")
    p.add_argument(
        "--config",
        default=None,
        help="YAML file of options (names as below, with underscores), or a bundle config to run (configs/pretrain.json)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="set a value of the bundle config (repeatable; JSON values; ids '#'-separated: train#chance#patience=5)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")
    p.add_argument("--print-bundle", action="store_true", help="print the bundle config (after --set) and exit")
    p.add_argument("--method", default=None, help="SSL method (see --list)")
    p.add_argument("--backbone", default=None, help="registry backbone ('monai-transfer backbones')")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="2 or 3 (default 2)")
    p.add_argument("--data", default=None, help="datalist JSON of unlabeled images ({'image': path} entries) "
                   "(or a MedMNIST .npz)")  # fmt: skip
    p.add_argument("--section", default=None, help="datalist section (default: 'unlabeled', else 'training')")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument(
        "--modality",
        choices=["ct", "mr", "xr"],
        default=None,
        help="augmentation preset and default intensity mapping (default ct; xr is 2-D)",
    )
    p.add_argument(
        "--intensity",
        default=None,
        metavar="NAME",
        help="intensity mapping: minmax, percentile (over all voxels), zscore, range (fixed a_min..a_max), none, "
        "imagenet, or a preset (ct_soft_tissue, ct_lung..., mr, xr); default: the modality's preset",
    )
    p.add_argument(
        "--intensity-arg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="parameters of --intensity (lower=0.5 upper=99.5; a_min=-1000 a_max=1000; minv=0 maxv=1)",
    )
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
    add_speed_arguments(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--num-workers", type=int, default=None, help="data-loading processes (default 0)")
    p.add_argument(
        "--cache", action="store_true", help="read and normalise every image once, keep it in memory (fast epochs)"
    )
    p.add_argument("--seed", type=int, default=None, help="initialisation, data order and views (default 0)")
    p.add_argument("--pretrained", default=None, help="start from these weights (checkpoint, bundle or source)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="iterations between checkpoints (default 100)")
    p.add_argument("--resume", default=None, help="'auto' (from OUT/checkpoints/last.pt if present) or a checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --out")
    p.add_argument("--keep-previous", action="store_true",
                   help="keep the checkpoint before the newest too (checkpoints/last.prev.pt: twice the disk)")  # fmt: skip
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
