"""Export every registered backbone x task x spatial_dims as a TransferNet and print which formats verify.

For each case the network is built with random weights on a small input (2D 64x64, 3D 32x32x32, 3D segmentation
32x32x64 so that a stride-32 map keeps two voxels; ViT 32 px with 16 px patches), then:

* TorchScript: ``torch.jit.script`` (verified against eager); when scripting fails, ``torch.jit.trace`` is tried and
  reported as such;
* ONNX: ``torch.onnx.export`` with the ``torch.export``-based exporter and a dynamic batch, checked by
  ``onnx.checker`` and compared with eager through onnxruntime (on two batch sizes).

Usage::

    python scripts/make_export_table.py                 # all cases, markdown table on stdout
    python scripts/make_export_table.py --backbones "resnet1*" --dims 2 --no-onnx
    python scripts/make_export_table.py --out table.md

Each backbone runs in its own Python process: a failed ``torch.jit.script`` can leave TorchScript's class cache in a
state that makes later, unrelated scripting fail in the same process. Nothing is written outside a temporary
directory (and ``--out``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from monai_transfer.networks import get_backbone_config, list_backbones
from monai_transfer.networks.export import ExportError, export_model, export_torchscript
from monai_transfer.networks.transfer_net import create_transfer_net

TASKS = ("classification", "segmentation")


def example_input(name: str, spatial_dims: int, task: str) -> tuple[dict, torch.Tensor]:
    family = get_backbone_config(name).family
    if family == "vit":
        return {"img_size": 32}, torch.randn((1, 1) + (32,) * spatial_dims)
    if spatial_dims == 2:
        return {}, torch.randn(2, 1, 64, 64)
    shape = (32, 32, 64) if task == "segmentation" and family != "segresnet" else (32, 32, 32)
    return {}, torch.randn((1, 1) + shape)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:80].replace("|", "/")


def run_case(name: str, spatial_dims: int, task: str, workdir: Path, onnx: bool) -> dict:
    torch.manual_seed(0)
    kwargs, x = example_input(name, spatial_dims, task)
    net = create_transfer_net(name, task=task, spatial_dims=spatial_dims, num_classes=3, backbone_kwargs=kwargs).eval()
    row = {"backbone": name, "task": task, "dims": f"{spatial_dims}D", "head": type(net.head).__name__}
    start = time.time()
    try:
        export_torchscript(net, x, method="script")
        row["torchscript"] = "script ✓"
    except ExportError as script_err:
        try:
            export_torchscript(net, x, method="trace")
            row["torchscript"] = "trace ✓ (script ✗)"
        except ExportError as trace_err:
            row["torchscript"] = f"✗ ({_short(trace_err)})"
        row["script_error"] = _short(script_err.__cause__ or script_err)
    row["torchscript_s"] = time.time() - start
    start = time.time()
    if onnx:
        path = workdir / f"{name}_{task}_{spatial_dims}d.onnx"
        try:
            result = export_model(net, x, path, format="onnx")
            diff = result.max_abs_diff
            row["onnx"] = f"✓ ({diff:.0e})" if diff is not None else "✓ (onnx.checker only)"
        except ExportError as err:
            row["onnx"] = f"✗ ({_short(err.__cause__ or err)})"
        finally:
            for f in workdir.glob(path.name + "*"):
                f.unlink()
    else:
        row["onnx"] = "not run"
    row["onnx_s"] = time.time() - start
    return row


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| Backbone | Task | Dims | Head | TorchScript | ONNX (onnxruntime max abs diff) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['backbone']}` | {r['task']} | {r['dims']} | `{r['head']}` | {r['torchscript']} | {r['onnx']} |"
        )
    return "\n".join(lines)


def run_backbone(name: str, dims: list[int], tasks: list[str], onnx: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spatial_dims in dims:
            if spatial_dims not in get_backbone_config(name).spatial_dims:
                continue
            for task in tasks:
                row = run_case(name, spatial_dims, task, Path(tmp), onnx=onnx)
                rows.append(row)
                print(
                    f"{name} {task} {spatial_dims}D: TorchScript {row['torchscript']} ({row['torchscript_s']:.1f} s), "
                    f"ONNX {row['onnx']} ({row['onnx_s']:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="*", help="shell pattern over registry names")
    parser.add_argument("--dims", type=int, nargs="*", default=[2, 3])
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=TASKS)
    parser.add_argument("--no-onnx", action="store_true", help="skip the (slow) ONNX exports")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table to this file")
    parser.add_argument("--json-rows", action="store_true", help=argparse.SUPPRESS)  # one backbone, in a child
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("monai_transfer").setLevel(logging.ERROR)
    names = [n for n in list_backbones() if fnmatch.fnmatch(n, args.backbones)]
    if args.json_rows:
        rows = [r for name in names for r in run_backbone(name, args.dims, args.tasks, onnx=not args.no_onnx)]
        print(json.dumps(rows))
        return 0
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--backbones", name, "--json-rows", "--dims", *map(str, args.dims)]
        cmd += ["--tasks", *args.tasks] + (["--no-onnx"] if args.no_onnx else [])
        child = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        rows.extend(json.loads(child.stdout.strip().splitlines()[-1]))
    table = to_markdown(rows)
    # the first failure per backbone and dims is the real one (later ones in the same process may be cache fallout)
    first: dict[tuple[str, str], str] = {}
    for r in rows:
        if "script_error" in r:
            first.setdefault((r["backbone"], r["dims"]), r["script_error"])
    notes = [f"- `{name}` {dims}: `torch.jit.script` fails: {err}" for (name, dims), err in first.items()]
    text = table + ("\n\n" + "\n".join(notes) if notes else "")
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
