"""The ``tour`` command: the longest end-to-end path, on the demo data (the quickstart's main job)."""

from __future__ import annotations

import argparse
import json


def _cmd_tour(args: argparse.Namespace) -> int:
    from monai_transfer.tour import run_tour

    summary = run_tour(args.out, seed=args.seed, size=args.size, n_subjects=args.subjects, progress=not args.quiet)
    for name, info in summary["steps"].items():
        shown = {k: v for k, v in info.items() if k != "seconds"}
        print(f"{name} ({info['seconds']} s): {json.dumps(shown, default=str)[:300]}")
    print(f"summary: {args.out}/summary.json; load report: {args.out}/load_report.txt")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tour",
        help="run the longest end-to-end path on the demo data (the quickstart's main job)",
        description=(
            "Demo data (simulated on the MNI152 template) -> DICOM series -> index -> MetaTensor -> a 2D RGB "
            "checkpoint in torchvision's layout imported into a 3D 1-channel ResNet-18 (surgery, inflation, load "
            "report) -> classification and segmentation TransferNets on the scan -> TorchScript export, checked "
            "-> weights saved with provenance and read back -> SimCLR pretraining (a few steps) on the unlabeled "
            "pool, its encoder loaded strictly into a classifier. Nothing is downloaded."
        ),
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="demo volume edge (multiple of 32)")
    p.add_argument("--subjects", type=int, default=6, help="simulated subjects")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_tour)
