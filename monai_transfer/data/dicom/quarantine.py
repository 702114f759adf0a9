"""Quarantine: files and series left out of the usable index, each with a reason.

Levels: ``file`` (not DICOM, unreadable header, truncated pixel data, non-image object, duplicate instance) and
``series`` (missing slices, irregular spacing, duplicate slice positions, inconsistent frames). Quarantine is a
record only: source files are never moved, renamed or modified.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from monai_transfer.utils.atomic import atomic_write

__all__ = ["QuarantineError", "write_report", "REPORT_FILE"]

REPORT_FILE = "quarantine.csv"


class QuarantineError(RuntimeError):
    """Raised by ``scan(..., strict=True)`` for the first quarantined file or series."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


def write_report(index_dir: str | os.PathLike, entries: Iterable[dict[str, str]]) -> Path:
    """Write ``quarantine.csv`` (level, target, kind, reason) atomically into ``index_dir``.

    Args:
        index_dir: the index folder.
        entries: rows as returned by :func:`monai_transfer.data.dicom.index.read_quarantine`.

    Returns:
        The report path.
    """
    path = Path(index_dir) / REPORT_FILE
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["level", "target", "kind", "reason"])
        writer.writeheader()
        for row in entries:
            writer.writerow(row)
    return path
