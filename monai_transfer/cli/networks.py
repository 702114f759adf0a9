"""The ``backbones`` command: the backbone registry as a table."""

from __future__ import annotations

import argparse
import json
import sys

from monai_transfer.cli._common import _table


def _cmd_backbones(args: argparse.Namespace) -> int:
    from monai_transfer.networks import get_backbone_config, list_backbones
    from monai_transfer.weights import list_sources

    names = list_backbones(args.pattern, spatial_dims=args.spatial_dims)
    if not names:
        print(f"no backbone matches pattern={args.pattern!r} spatial_dims={args.spatial_dims}", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        cfg = get_backbone_config(name)
        rows.append(
            {
                "name": name,
                "family": cfg.family,
                "dims": ",".join(str(d) for d in cfg.spatial_dims),
                "features": cfg.num_features,
                "wraps": cfg.wraps,
                "pretrained": ", ".join(list_sources(name)) or "-",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="list registered backbones", description="List the registered backbones.")
    p.add_argument("--pattern", default=None, help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="only backbones with these dims")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_backbones)
