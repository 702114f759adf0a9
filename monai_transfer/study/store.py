"""The results store: one JSON file per cell under ``<out>/results/``, each written atomically.

A cell's row exists only once the cell finished (``status: ok``) or failed (``status: failed`` with its error), and
holds the cell's identity (:mod:`monai_transfer.study.identity`), so a study killed at any point and started again
runs exactly the cells without a row made by what makes them today (and, with ``retry_failed``, the failed ones); a
cell killed half-way resumes from its own checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monai_transfer.utils.atomic import atomic_write_text

__all__ = ["ResultsStore"]


class ResultsStore:
    def __init__(self, out: str | os.PathLike):
        self.folder = Path(out) / "results"

    def path(self, cell_id: str) -> Path:
        return self.folder / f"{cell_id}.json"

    def get(self, cell_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(cell_id).read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # not ours: an atomic write never leaves a partial file; treat it as not run
            return None

    def put(self, row: Mapping[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(row["cell"]), json.dumps(row, indent=1, default=str))

    def rows(self, cell_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The rows of ``cell_ids`` (in that order; missing ones skipped), or every row in the folder."""
        if cell_ids is None:
            return [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))]
        return [r for r in (self.get(c) for c in cell_ids) if r is not None]
