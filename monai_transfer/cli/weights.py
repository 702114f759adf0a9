"""The ``weights`` commands: ``sources`` (known published weights), ``inspect`` and ``convert`` (load reports), and
``doctor`` (map a checkpoint no adapter claims into a backbone)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the commands, not by --help
    import torch

from monai_transfer.cli._common import _table, help_by_default


def hash_check(sha256: str | None) -> str:
    """How a download of a file with this published hash is checked: ``"full sha256"``, ``"sha256 prefix (N hex)"``
    or ``"not checked"`` (no hash published; the digest of the downloaded file is logged and recorded)."""
    if not sha256:
        return "not checked"
    return "full sha256" if len(sha256) == 64 else f"sha256 prefix ({len(sha256)} hex)"


def _short_licence(licence: str) -> str:
    """The licence's own name (``"BSD-3-Clause"``), without the notes on the training data that follow it."""
    return licence.split(";")[0].split(" (")[0].strip() or "unknown"


def _cmd_weights_sources(args: argparse.Namespace) -> int:
    from monai_transfer.weights import get_source, list_sources

    rows = []
    for name in list_sources(args.backbone):
        src = get_source(name)
        for backbone, f in sorted(src.files.items()):
            if args.backbone and backbone != args.backbone:
                continue
            licence = src.provenance.licence or "unknown"
            rows.append(
                {
                    "source": name,
                    "backbone": backbone,
                    "dims": f.spatial_dims,
                    "channels": f.in_channels,
                    "data": src.provenance.source_data if args.json else src.provenance.source_data[:40],
                    "licence": licence if args.json else _short_licence(licence),
                    # the full published value: a 64-digit digest, or the prefix the publisher gives
                    "sha256": f.sha256 or ("" if args.json else "none published"),
                    "checked": hash_check(f.sha256),
                    "url": f.url,
                }
            )
    if not rows:
        print(f"no known weights for backbone {args.backbone!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    print(
        "\nchecked: how a download is verified. Files with a published sha256 (or the prefix in torchvision's file "
        "names) are checked before use; the others are not (their digest is logged and kept in the load report). "
        "Licences in full: --json."
    )
    return 0


def _load_for_cli(args: argparse.Namespace) -> torch.nn.Module:
    """The backbone with ``args.checkpoint`` loaded; its ``load_report`` says what loaded."""
    from monai_transfer.networks import create_backbone

    return create_backbone(
        args.backbone,
        spatial_dims=args.spatial_dims,
        in_channels=args.in_channels,
        pretrained=args.checkpoint,
        strict=not args.allow_partial,
    )


def _cmd_weights_inspect(args: argparse.Namespace) -> int:
    model = _load_for_cli(args)
    report = model.load_report
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.to_table())
    return 0 if report.ok else 1


def _same_file(checkpoint: str, out: str) -> bool:
    """Whether ``out`` names the checkpoint file itself (or, for a bundle folder, its weights file)."""
    if "://" in checkpoint:
        return False
    src = Path(checkpoint)
    if src.is_dir():
        from monai_transfer.weights.starting_point import find_bundle_weights

        try:
            src = find_bundle_weights(src)
        except FileNotFoundError:
            return False
    if not src.exists():
        return False
    dst = Path(out)
    if dst.exists():
        return os.path.samefile(src, dst)
    return src.resolve() == dst.resolve()


def _cmd_weights_convert(args: argparse.Namespace) -> int:
    from monai_transfer.weights import Provenance, save_pretrained

    if _same_file(args.checkpoint, args.out):
        raise FileExistsError(
            f"--out {args.out} is the checkpoint being converted: refusing to overwrite the input; choose another file"
        )
    model = _load_for_cli(args)
    report = model.load_report
    base = report.provenance or Provenance()
    updates = _parse_provenance(args.provenance)
    if not base.url and "://" in args.checkpoint:
        updates.setdefault("url", args.checkpoint)
    prov = Provenance.from_dict({**base.to_dict(), **updates})
    path = save_pretrained(model, args.out, provenance=prov)
    print(report.to_table())
    print(f"wrote {path} ({args.backbone}, spatial_dims={args.spatial_dims}, in_channels={args.in_channels})")
    return 0


def _parse_provenance(items: Sequence[str]) -> dict:
    """``FIELD=VALUE`` pairs; sizes and spacings are comma-separated numbers, dims and channels integers."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--provenance expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        if key in ("input_size", "spacing"):
            cast = int if key == "input_size" else float
            out[key] = [cast(v) for v in value.split(",")]
        elif key in ("spatial_dims", "in_channels"):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _add_load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint file, a MONAI bundle folder, a URL, or a known source name")
    p.add_argument("--backbone", required=True, help="registry name (see 'monai-transfer backbones')")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3], default=2, help="2D weights inflate to 3D")
    p.add_argument("--in-channels", type=int, default=1, help="channel surgery adapts the first convolution")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="load what fits instead of stopping at the first missing or mismatched key (the report says what)",
    )


def _cmd_weights_doctor(args: argparse.Namespace) -> int:
    from monai_transfer.cli._common import _parse_kv
    from monai_transfer.networks import create_backbone
    from monai_transfer.weights import Provenance
    from monai_transfer.weights.doctor import (
        DoctorError,
        diagnose,
        kernel_dims,
        read_for_doctor,
        save_converted,
        unwrap_container,
    )

    if args.out and _same_file(args.checkpoint, args.out):
        raise FileExistsError(
            f"--out {args.out} is the checkpoint being converted: refusing to overwrite the input; choose another file"
        )
    checkpoint = read_for_doctor(args.checkpoint)
    dims = args.spatial_dims or kernel_dims(unwrap_container(checkpoint.obj)[0]) or 2  # the checkpoint's own
    kwargs = _parse_kv(args.backbone_kwargs)
    model = create_backbone(args.backbone, spatial_dims=dims, in_channels=args.in_channels, **kwargs)
    report = diagnose(checkpoint, model, inflate=args.inflate, prefix=args.prefix)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_table())
    if report.filled == 0 or (args.out and not report.ok):
        raise DoctorError(report.reason)  # refused: one sentence, exit code 2, nothing written
    if not report.ok:
        return 1
    if args.out:
        base = report.provenance or Provenance()
        extra = {**base.extra, "backbone_kwargs": kwargs} if kwargs else base.extra
        record = Provenance.from_dict({**base.to_dict(), "extra": extra, **_parse_provenance(args.provenance)})
        path = save_converted(report, model, args.out, provenance=record)
        options = " ".join(f"{k}={v}" for k, v in kwargs.items())
        flags = f"--backbone {args.backbone} --spatial-dims {dims} --in-channels {args.in_channels}"
        flags += f" (backbone options {options})" if options else ""
        print(f"wrote {path}: load it with --pretrained {path} {flags}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _add_doctor_parser(wsub: argparse._SubParsersAction) -> None:
    p = wsub.add_parser(
        "doctor",
        help="find how a checkpoint no adapter reads maps into a backbone; write it converted",
        description=(
            "Find the mapping of CHECKPOINT into a backbone: the container (state_dict, model, module, teacher, "
            "encoder...), the prefix (module., model., backbone., swin_vit. ...), the known renames of torchvision, "
            "timm, MONAI, SwinUNETR, lightly, solo-learn and MMPretrain/MMSelfSup, then unique shapes for what names "
            "leave, and 2D-to-3D inflation only with --inflate. It prints the coverage per step and per stage and what "
            "stays unmatched. Nothing is guessed: two tensors that could fill one key (or two equal readings) are "
            "reported, not taken. With --out it writes the converted weights (atomically, with provenance) that "
            "--pretrained then loads strictly. Exit codes: 0 when every backbone tensor is settled (and --out "
            "written); 1 when some are not (the report says which; nothing written); 2 when the checkpoint cannot be "
            "read, fits no part of the backbone, or --out was asked and the mapping is incomplete (one error line)."
        ),
    )
    p.add_argument("checkpoint", help="a checkpoint file (.pt/.pth/.ckpt/.safetensors) or a bundle folder")
    p.add_argument("--backbone", required=True, help="registry name (see 'monai-transfer backbones')")
    p.add_argument(
        "--spatial-dims",
        type=int,
        choices=[2, 3],
        default=None,
        help="default: the checkpoint's own (from its convolution kernels; 2 without any)",
    )
    p.add_argument("--in-channels", type=int, default=1, help="channel surgery adapts the first convolution")
    p.add_argument(
        "--backbone-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="backbone options, e.g. feature_size=12 (fine-tuning must build the backbone with the same)",
    )
    p.add_argument(
        "--inflate", choices=["mean", "centre"], default=None, help="inflate 2D kernels into a 3D backbone (I3D)"
    )
    p.add_argument("--prefix", default=None, help="read names only under this prefix (settles equal readings)")
    p.add_argument("--out", default=None, help="write the converted weights here (.pt or .safetensors)")
    p.add_argument(
        "--provenance",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="provenance fields to set in --out, e.g. method=SimCLR modality=CT",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_weights_doctor)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser(
        "weights",
        help="known published weights; how a checkpoint fits a backbone; map an unknown layout (doctor); convert one",
        description="Pretrained-weight commands. Checkpoints load with torch.load(weights_only=True), strictly.",
    )
    wsub = weights.add_subparsers(dest="weights_command", metavar="WEIGHTS_COMMAND")
    p = wsub.add_parser(
        "sources",
        help="list known published weights (URL, sha256, licence)",
        description=(
            "List known published weights: URL, the published sha256 (a full digest, or the 8-digit prefix torchvision "
            "puts in its file names) and whether downloads are checked against it, and the licence. Exit code 1 when "
            "no weights are known for --backbone."
        ),
    )
    p.add_argument("--backbone", default=None, help="only weights for this backbone")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_weights_sources)
    p = wsub.add_parser(
        "inspect",
        help="load a checkpoint into a backbone and print the load report",
        description=(
            "Load CHECKPOINT into a backbone (adapters for torchvision, timm, MedicalNet, SwinUNETR-SSL, lightly, "
            "solo-learn, TorchXRayVision and MONAI bundles are chosen from the keys; channel surgery, 2D-to-3D "
            "inflation and position-embedding resampling are applied as needed) and print what loaded per stage. "
            "Exit codes: 0 when everything fitted; 2 when the checkpoint cannot be read or downloaded, or does not fit "
            "(a strict load stops and names the keys); with --allow-partial, 1 when something did not fit. "
            "Offline, a source name fails with the URL and where to put a copy downloaded elsewhere."
        ),
    )
    _add_load_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_weights_inspect)
    p = wsub.add_parser(
        "convert",
        help="load, adapt and save a checkpoint for a backbone, with its provenance",
        description=(
            "Load CHECKPOINT into a backbone as 'inspect' does, then save the adapted weights with a provenance "
            "record (written atomically; .safetensors or .pt by the suffix of --out). --out may not be the input "
            "checkpoint itself. Exit code 2 when the checkpoint cannot be read or does not fit."
        ),
    )
    _add_load_arguments(p)
    p.add_argument("--out", required=True, help="output file (.pt or .safetensors); never the input checkpoint")
    p.add_argument(
        "--provenance",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="provenance fields to set, e.g. method=SimCLR modality=CT source_data='LIDC-IDRI'",
    )
    p.set_defaults(func=_cmd_weights_convert)
    _add_doctor_parser(wsub)
    help_by_default(weights)
