"""The ``monai-transfer`` command.

Subcommands:
    backbones   list the registered backbones (dims, embedding size, parameters, known pretrained weights)
    weights     list known published weights; inspect how a checkpoint fits a backbone; convert one
    export      build a TransferNet and export it (TorchScript or ONNX), checking outputs against eager
    tour        the end-to-end transfer path on synthetic input: 2D weights -> 3D 1-channel network -> export
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def _cmd_backbones(args: argparse.Namespace) -> int:
    from monai_transfer.networks import get_backbone_config, list_backbones

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
                "pretrained": ", ".join(cfg.pretrained_sources) or "-",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    print("  ".join(k.ljust(w) for k, w in widths.items()).rstrip())
    print("  ".join("-" * w for w in widths.values()))
    for r in rows:
        print("  ".join(str(r[k]).ljust(w) for k, w in widths.items()).rstrip())
    return 0


def _cmd_data_scan(args: argparse.Namespace) -> int:
    from monai_transfer.data import QuarantineError, scan

    try:
        stats = scan(args.root, args.index, strict=args.strict, progress=not args.quiet)
    except QuarantineError as err:  # --strict: the first bad file or series stops the scan
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(stats.as_dict(), indent=2) if args.json else _format_stats(stats.as_dict()))
    return 0


def _format_stats(stats: dict) -> str:
    return "\n".join(f"{k.replace('_', ' ')}: {round(v, 2) if isinstance(v, float) else v}" for k, v in stats.items())


def _cmd_data_report(args: argparse.Namespace) -> int:
    from monai_transfer.data import summary_report

    print(summary_report(args.index))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monai-transfer",
        description=(
            "Transfer learning and self-supervised pretraining for 2D and 3D medical imaging, on MONAI. "
            "Choose a starting point (ImageNet, SSL, another modality, none), load it into a classification "
            "or segmentation network with a load report, and export it."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'monai-transfer COMMAND --help' for the options of each command.",
    )
    from monai_transfer import __version__

    parser.add_argument("--version", action="version", version=f"monai_transfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("backbones", help="list registered backbones", description="List the registered backbones.")
    p.add_argument("--pattern", default=None, help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=None, help="only backbones with these dims")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_backbones)

    data = sub.add_parser(
        "data", help="index DICOM trees, report on them, make demo data", description="Data commands."
    )
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p = dsub.add_parser(
        "scan",
        help="index every DICOM series under ROOT (incremental; ROOT is never written)",
        description=(
            "Walk ROOT (nested folders, any file names, with or without DICOMDIR), group files into series, sort "
            "slices along the slice normal, check geometry (spacing, gaps, duplicates, mixed sizes) and record the "
            "result in an SQLite index in --index. A rescan reads only new or changed files. Unreadable or "
            "inconsistent inputs are quarantined with a reason; patient identifiers are stored only as salted hashes."
        ),
    )
    p.add_argument("root", help="folder tree of DICOM files (read only)")
    p.add_argument("--index", required=True, help="folder for the index (must be outside ROOT)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable or inconsistent input")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the scan statistics as JSON")
    p.set_defaults(func=_cmd_data_scan)
    p = dsub.add_parser(
        "report",
        help="summarise an index: series per modality, quarantined files and why",
        description="Print a readable summary of an index written by 'monai-transfer data scan'.",
    )
    p.add_argument("--index", required=True, help="folder holding the index")
    p.set_defaults(func=_cmd_data_report)
    data.set_defaults(func=lambda a: (data.print_help(), 0)[1])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
