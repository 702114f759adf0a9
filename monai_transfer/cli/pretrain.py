"""The ``pretrain`` command: self-supervised pretraining from flags, a YAML file of options, or a bundle config.

The flags (and a YAML file of the same options) build a MONAI bundle config
(``monai_transfer.ssl.bundle_config.pretrain_config``); ``--set ID=VALUE`` then sets any value of it, and
``--config`` also takes such a bundle config (a saved ``configs/pretrain.json``) to run instead of the flags.
"""

from __future__ import annotations

import argparse
import json
import sys

from monai_transfer.cli._common import _parse_kv, _table
from monai_transfer.cli.spec_flags import add_spec_arguments, given_settings
from monai_transfer.engines.specs import PretrainSpec, load_pretrain_spec, spec_class, spec_fields


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


#: fields whose flags are KEY=VALUE pairs added to the same mapping of a --config file (not replacing it)
_MERGED = ("method_kwargs", "backbone_kwargs", "view_kwargs")


def config_from_args(args: argparse.Namespace) -> PretrainSpec:
    """The ``PretrainSpec`` of a parsed command line: the YAML file (if any), then the flags given."""
    base = load_pretrain_spec(args.config) if args.config else spec_class("pretrain")()
    given = given_settings(args, spec_class("pretrain"))
    for field in _MERGED:
        if field in given:
            given[field] = {**getattr(base, field), **given[field]}
    if args.intensity is not None or args.intensity_arg:
        name = args.intensity or (base.intensity or {}).get("name")
        if name is None:
            raise ValueError("--intensity-arg needs --intensity NAME (or an intensity in the --config file)")
        same = base.intensity if base.intensity and base.intensity.get("name") == name else {}
        given["intensity"] = {**dict(same or {}), "name": name, **_parse_kv(args.intensity_arg or [])}
    if args.overwrite:
        if args.resume is not None:
            raise ValueError("--overwrite starts the run again; it cannot be combined with --resume")
        given["resume"] = "overwrite"
    elif args.resume is not None:
        given["resume"] = args.resume
    return base.merged(given)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    if args.list:
        return _list_methods()
    # the pretraining run plus the step that writes the encoder's fine-tuning bundle (the bundle layer's)
    from monai_transfer.bundle.templates.pretrain import pretrain_config
    from monai_transfer.ssl.run import resolve_config, run_pretrain_config

    if _bundle_file(args.config):
        flags = {f.name: f.metadata.get("flag") or "--" + f.name.replace("_", "-") for f in
                 spec_fields(spec_class("pretrain"), cli=True)}  # fmt: skip
        given = [flags[n] for n in given_settings(args, spec_class("pretrain")) if n != "out_dir"]
        if given:
            raise ValueError(f"{args.config} is a bundle config: set its values with --set ID=VALUE, not {given}")
        if args.resume is not None:
            args.set = [f"resume={json.dumps(args.resume)}", *args.set]
        if args.print_config:
            from monai_transfer.engines.workflow import apply_overrides, load_config, parse_overrides

            sys.stdout.write(json.dumps(apply_overrides(load_config(args.config), parse_overrides(args.set)), indent=4))
            return 0
        result = run_pretrain_config(args.config, args.out_dir, args.set, overwrite=args.overwrite)
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
        result = run_pretrain_config(pretrain_config(config), config.out_dir, args.set, options=config)
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
    # one flag per field of PretrainSpec (its type, choices and help): a new setting is one field
    add_spec_arguments(p, spec_class("pretrain"))
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
    p.add_argument("--resume", default=None, help="'auto' (from OUT/checkpoints/last.pt if present) or a checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --out")
    p.set_defaults(func=_cmd_pretrain)
