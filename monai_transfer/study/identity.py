"""What determines a study's results, per in-study starting point and per cell, so a changed spec is never served stale.

A cell's identity holds its key, the target's and challenge's settings, every fine-tuning value the cell runs with
(the spec's ``finetune`` section over the study's defaults), the starting point's own identity, the content of its
datalist and of every file the datalist names, and the package version. An in-study start's identity holds its
pretraining options, the content of its pretraining data and, for ``continual``, its base start's identity. The results
store keeps each row's identity; a row whose identity differs from the cell's today is stale: the cell runs again and
the difference is named (``finetune.epochs: 1 -> 2``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from monai_transfer.study.cell_spec import CELL_DEFAULTS
from monai_transfer.study.cells import Cell
from monai_transfer.study.spec import Start, StudySpec
from monai_transfer.utils.atomic import atomic_write_json
from monai_transfer.utils.identity import (
    data_digest,
    describe_diff,
    identity_diff,
    package_version,
    path_digest,
    value_digest,
)

__all__ = ["start_identity", "cell_identity", "digest", "read_identity", "write_identity", "changed"]


#: ``finetune`` values that do not change a result (how it runs, not what it computes)
NOT_IDENTITY = ("num_workers", "progress", "tensorboard", "mlflow_uri", "device")


def _finetune(spec: StudySpec) -> dict[str, Any]:
    values = {**CELL_DEFAULTS, **dict(spec.finetune)}
    return {k: v for k, v in values.items() if k not in NOT_IDENTITY}


def start_identity(spec: StudySpec, start: Start, backbone: str, dims: int, domain_key: str = "site") -> dict[str, Any]:
    """What a starting point's weights depend on (for a start pretrained in the study, what its pretraining ran on)."""
    out: dict[str, Any] = {"kind": start.kind}
    if start.kind == "source":
        out["source"] = start.source
    elif start.kind == "path":
        out["path"] = start.path
        out["content"] = path_digest(start.path) if start.path and os.path.exists(start.path) else None
    elif start.pretrained_in_study:
        ft = _finetune(spec)
        out.update(backbone=backbone, spatial_dims=dims, backbone_kwargs=ft.get("backbone_kwargs", {}))
        opts = dict(start.ssl or {}) if start.kind in ("ssl", "continual") else dict(start.supervised or {})
        out["options"] = opts
        if start.kind == "supervised":  # its fine-tuning values default to the cells' own
            out["finetune"] = {k: ft.get(k) for k in ("epochs", "batch_size", "lr", "amp")}
            out["domain_key"] = domain_key  # which cases its ``domain`` option keeps
        else:
            out["amp"] = ft.get("amp")
        out["data"] = _data(opts.get("data"))
        if start.kind == "continual":
            out["base"] = start_identity(spec, spec.start(start.base or ""), backbone, dims, domain_key)
    return out


def _data(data: Any) -> dict[str, str]:
    if data is None or not os.path.exists(str(data)):
        return {}
    return data_digest(str(data))


def cell_identity(spec: StudySpec, cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's row."""
    target = {k: v for k, v in asdict(cell.target).items() if k != "data"}  # its content is in ``data`` below
    target["metric"] = spec.metric(cell.target)
    return {
        "version": package_version(),
        "cell": cell.key,
        "target": target,
        "challenge": asdict(cell.challenge),
        "finetune": _finetune(spec),
        "linear_probe": spec.linear_probe,
        "start": start_identity(
            spec, spec.start(cell.start), cell.backbone, cell.target.spatial_dims, cell.target.domain_key
        ),
        "data": data_digest(cell.datalist),
    }


def digest(identity: dict[str, Any]) -> str:
    return value_digest(identity)


def read_identity(path: str | os.PathLike) -> dict[str, Any] | None:
    """The identity recorded in a file (``None``: none, or unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_identity(path: str | os.PathLike, identity: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, identity)


def changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """``None`` when ``old`` is ``new``; else the difference in a few words."""
    if old is None:
        return "it ran before results recorded what made them"
    diff = identity_diff(old, new)
    return describe_diff(diff) if diff else None
