"""A study target's data as sections: ``training``, ``validation`` and ``test`` entries with absolute paths, and the
declared ``labels``.

Read by the up-front checks (:mod:`monai_transfer.study.checks`) and by the cells' data
(:mod:`monai_transfer.study.cells`); in a module of its own so that neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monai_transfer.data import DatalistError, load_datalist
from monai_transfer.study.spec import SpecError, Target

__all__ = ["SECTIONS", "target_sections"]

SECTIONS = ("training", "validation", "test")


def _read_sections(target: Target) -> dict[str, Any]:
    data = Path(target.data)
    if data.is_dir():
        if (data / "dataset.json").is_file():
            from monai_transfer.data.adapters.msd import load_msd

            entries = load_msd(data, "training")
            labels = None
        else:
            from monai_transfer.data.adapters.csv_folder import load_csv_folder

            entries = load_csv_folder(data)
            labels = None
        # a folder has one labelled list: split it 60/20/20 by patient, seed 0, the same for every cell
        from monai_transfer.data import patient_split

        parts = patient_split(entries, (0.6, 0.2, 0.2), SECTIONS, 0, target.patient_key)
        return {"labels": labels, **{s: parts[s] for s in SECTIONS}}
    raw = json.loads(data.read_text()) if data.suffix == ".json" else {}
    out: dict[str, Any] = {"labels": raw.get("labels")}
    for section in SECTIONS:
        try:
            out[section] = load_datalist(data, section)
        except DatalistError:
            if section == "training":
                raise
            out[section] = []
    return out


def target_sections(target: Target) -> dict[str, Any]:
    """The target's ``training``/``validation``/``test`` entries (absolute paths) and its ``labels``."""
    try:
        sections = _read_sections(target)
    except (DatalistError, FileNotFoundError, ValueError, KeyError) as e:
        raise SpecError(f"target {target.name!r} ({target.data}): {e}") from None
    if not sections["validation"]:
        raise SpecError(f"target {target.name!r} ({target.data}): no validation section (needed to keep the best "
                        "weights); add one or give a folder, which is split 60/20/20")  # fmt: skip
    return sections
