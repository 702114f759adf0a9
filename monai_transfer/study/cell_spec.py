"""A study cell's fine-tuning spec: what the cell sets itself (backbone, start, target, strategy, seed, folder) over
the spec's ``finetune:`` section over the study's defaults. The cell's run and every look at the run it would make
(its planned config, its precision probe) build the spec here, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monai_transfer.engines.specs import FinetuneSpec, spec_class

__all__ = ["CELL_DEFAULTS", "cell_spec"]

#: fine-tuning values every cell runs with unless the spec's ``finetune`` section sets them
CELL_DEFAULTS = {"epochs": 3, "batch_size": 4}


def cell_spec(payload: Mapping[str, Any]) -> FinetuneSpec:
    """The spec of a cell's ``finetune`` run (``resume="auto"``: a cell killed half-way continues; quiet, no
    TensorBoard: the study reports)."""
    cell = {"backbone": payload["backbone"], "pretrained": payload["pretrained"], "task": payload["task"],
            "strategy": payload["strategy"], "seed": int(payload["seed"]), "datalist": payload["datalist"],
            "out_dir": payload["run_dir"], "resume": "auto", "spatial_dims": payload["spatial_dims"],
            "in_channels": payload["in_channels"], "progress": False, "tensorboard": False}  # fmt: skip
    return spec_class("finetune").from_mapping({**CELL_DEFAULTS, **dict(payload["finetune"]), **cell}, "finetune")
