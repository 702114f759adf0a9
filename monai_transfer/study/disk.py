"""The disk a study takes: a finished run's resume state dropped, and the space a study needs, estimated before it runs.

A run keeps its best weights (``models/model.pt``) and a resume checkpoint (``checkpoints/last.pt``: the weights, the
optimizer's moments and the RNG states, about three times the weights with Adam). The resume checkpoint is what lets a
killed run continue; once a cell's row is in the results store the store says the cell is done and the study never
runs it again, so the checkpoint is dead weight (786 MB of the 1.1 GB demo study; about 40 GB for 72 cells of a
full-width 3D ResNet-50). A study drops it after storing the row, and drops an in-study pretraining's once the
pretraining finished (its ``encoder.pt`` / ``bundle`` stay), unless ``keep_checkpoints: true`` (or
``study run --keep-checkpoints``) asks to keep them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["drop_resume_state", "folder_size", "estimate_disk", "format_bytes", "RESUME_FILES"]

logger = logging.getLogger(__name__)

#: a run's resume state under ``checkpoints/``; ``last.json`` (what epoch, finished: for humans) and the precision
#: record stay
RESUME_FILES = ("last.pt", "last.prev.pt")
#: the resume checkpoint's size over the weights': Adam's two moments plus the weights (measured 2.99x for a cell)
CELL_RESUME_FACTOR = 3.0
#: an SSL pretraining's checkpoint over its encoder's weights: projector/predictor heads, a teacher (BYOL, DINO) and
#: their moments (measured 3.3x for SimCLR; a teacher adds one more copy of the network)
SSL_RESUME_FACTOR = 4.0
#: a cell's small files (configs, result, test cases, log, row): measured 60-100 kB for a classification cell
CELL_SMALL_FILES = 150_000


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"


def folder_size(path: str | os.PathLike) -> int:
    """Bytes under ``path``, each hard-linked file counted once (a bundle's ``models/model.pt`` is a link)."""
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def drop_resume_state(folder: str | os.PathLike) -> int:
    """Remove a finished run's resume checkpoints (``checkpoints/last.pt``, ``last.prev.pt`` and what a killed write
    left); returns the bytes freed. Does nothing to a run without ``result.json`` (it may still be resumed)."""
    folder = Path(folder)
    ckpt = folder / "checkpoints"
    if not (folder / "result.json").is_file() or not ckpt.is_dir():
        return 0
    freed = 0
    for p in ckpt.iterdir():
        if p.name in RESUME_FILES or (p.name.startswith(".last.") and ".tmp" in p.name):
            try:
                freed += p.stat().st_size
                p.unlink()
            except FileNotFoundError:
                pass
    if freed:
        logger.info(f"{folder}: resume checkpoints removed ({format_bytes(freed)}); the run is finished")
    return freed


def _n_params(backbone: str, task: str, dims: int, in_channels: int, num_classes: int,
              finetune: Mapping[str, Any]) -> tuple[int, int]:  # fmt: skip
    """(whole network, backbone) parameter counts of a cell's network, built on the meta device (no memory)."""
    import torch

    from monai_transfer.networks import create_transfer_net

    with torch.device("meta"):
        net = create_transfer_net(backbone, task=task, spatial_dims=dims, in_channels=in_channels,
                                  num_classes=num_classes, backbone_kwargs=finetune.get("backbone_kwargs"),
                                  head_kwargs=finetune.get("head_kwargs"))  # fmt: skip
    whole = sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers())
    part = sum(p.numel() for p in net.backbone.parameters()) + sum(b.numel() for b in net.backbone.buffers())
    return int(whole), int(part)


def _num_classes(datalist: str, task: str) -> int:
    raw = json.loads(Path(datalist).read_text())
    labels = raw.get("labels")
    if isinstance(labels, Mapping) and labels:
        return len(labels)
    if task == "classification":
        return max(2, len({json.dumps(e.get("label")) for e in raw.get("training", [])}))
    return 2


def estimate_disk(spec: Any, cells: Sequence[Any], out: str | os.PathLike, workers: int = 1,
                  data_folders: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:  # fmt: skip
    """The disk a study needs, from its networks' sizes (float32 weights: 4 bytes a parameter).

    * each finished cell: its best weights plus small files (the best bundle of each target hard-links its weights);
    * each running cell, until its row is stored: a resume checkpoint (:data:`CELL_RESUME_FACTOR` x the weights),
      written atomically (a second copy for a moment);
    * each in-study pretraining: its encoder (and for a supervised start a run folder like a cell's); its resume
      checkpoint while it runs (:data:`SSL_RESUME_FACTOR` x the encoder);
    * the data the study wrote (``OUT/data``, a demo preset's ``OUT/data_root``), measured.

    Returns:
        ``{"finished": bytes, "peak": bytes, "keep_checkpoints": bytes, "cells": n, "per_cell": {...},
        "pretraining": [...], "data": bytes}``.
    """
    params: dict[tuple, tuple[int, int]] = {}
    cells_total = cell_resume_max = resume_all = 0
    per_cell: dict[str, int] = {}
    for c in cells:
        t = c.target
        key = (c.backbone, t.task, t.spatial_dims, t.in_channels, _num_classes(c.datalist, t.task))
        if key not in params:
            params[key] = _n_params(*key, spec.finetune)
        weights = 4 * params[key][0]
        per_cell[f"{t.name}|{c.backbone}"] = weights
        cells_total += weights + CELL_SMALL_FILES
        resume = int(CELL_RESUME_FACTOR * weights)
        cell_resume_max = max(cell_resume_max, resume)
        resume_all += resume
    pretraining, pre_total, pre_resume_max, pre_resume_all = [], 0, 0, 0
    dims_of = {(c.backbone, c.target.spatial_dims): c for c in cells}
    for start in spec.starts:
        if not start.pretrained_in_study:
            continue
        for (backbone, dims), c in dims_of.items():
            t = c.target
            key = (backbone, t.task, dims, t.in_channels, _num_classes(c.datalist, t.task))
            whole, part = params.get(key) or _n_params(*key, spec.finetune)
            supervised = start.kind == "supervised"
            kept = 4 * (whole if supervised else part)
            resume = int((CELL_RESUME_FACTOR if supervised else SSL_RESUME_FACTOR) * kept)
            pretraining.append({"start": start.name, "backbone": backbone, "dims": dims, "kept": kept,
                                "resume": resume})  # fmt: skip
            pre_total += kept
            pre_resume_max = max(pre_resume_max, resume)
            pre_resume_all += resume
    data = sum(folder_size(p) for p in data_folders if Path(p).is_dir())
    finished = cells_total + pre_total + data
    running = max(pre_resume_max, min(max(1, workers), len(cells)) * cell_resume_max)
    return {"finished": finished, "peak": finished + 2 * running, "keep_checkpoints": finished + resume_all +
            pre_resume_all, "cells": len(cells), "per_cell": per_cell, "pretraining": pretraining, "data": data}  # fmt: skip
