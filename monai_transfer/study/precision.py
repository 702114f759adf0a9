"""One precision decision per (target, backbone) of a study, made before its cells and recorded.

A study compares starting points cell by cell, so every cell of a target and backbone must compute in the same
precision: left to itself, each cell's ``amp: auto`` would probe on its own, on whatever executor and under whatever
load it lands, and two cells of one comparison could differ in precision for reasons of timing. So the study resolves
``amp`` / ``channels_last`` once per (target, backbone, requested ``amp``) with the cell's own planned config (the
network and input size its ``finetune`` run would use), writes the decisions to ``<out>/precision.json`` (atomically),
and gives each cell the outcome as a forced ``amp: on|off``. A resumed study reads the file and decides nothing again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_transfer.engines.precision import normalize_choice
from monai_transfer.utils.atomic import atomic_write_json

__all__ = ["PRECISION_FILE", "apply_study_precision"]

logger = logging.getLogger(__name__)

PRECISION_FILE = "precision.json"


def _decide(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The ``precision`` component of the cell's planned config, resolved without writing the cell's record."""
    from monai.bundle import ConfigParser

    from monai_transfer.study.probes import cell_config

    config = cell_config(payload)
    config["precision"] = {**config["precision"], "record": None}  # the study's file is the record
    return dict(ConfigParser(config).get_parsed_content("precision"))


def apply_study_precision(
    payloads: Sequence[dict[str, Any]], out: str | os.PathLike, threads: int
) -> dict[str, dict[str, Any]]:
    """Decide (or read) the precision of each (target, backbone) and force it into the cells' ``finetune`` options
    (and ``payload["precision"]``, the rows' column: ``"bfloat16"``, ``"float16"`` or ``"float32"``).

    The probes run with the cells' CPU ``threads`` (speed-ups depend on them). Cached linear-probe cells train a
    head on stored features and are left as they are.

    Returns:
        ``{"<target>|<backbone>|<amp>": decision}`` as written to ``<out>/precision.json``.
    """
    path = Path(out) / PRECISION_FILE
    recorded: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    decisions = dict(recorded)
    for p in payloads:
        if p.get("probe"):
            continue
        requested = normalize_choice(p["finetune"].get("amp"))
        key = f"{p['key']['target']}|{p['backbone']}|{requested}"
        if key not in decisions:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                decisions[key] = _decide(p)
            finally:
                torch.set_num_threads(before)
            logger.info(f"study precision for {key}: {decisions[key]['reason']}")
        d = decisions[key]
        p["finetune"] = {**p["finetune"], "amp": "on" if d["amp"] else "off",
                         "channels_last": "on" if d.get("channels_last") else "off"}  # fmt: skip
        p["precision"] = d["dtype"] if d.get("amp") and d.get("dtype") else "float32"
    if decisions != recorded:
        atomic_write_json(path, decisions)
    return decisions
