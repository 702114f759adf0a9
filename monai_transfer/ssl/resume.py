"""Continuing a pretraining run from its checkpoint (``resume: "auto"`` or a path), from the bundle config's ``run``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine

from monai_transfer.utils.distributed import is_main_process

__all__ = ["resume_run"]

logger = logging.getLogger("monai_transfer.ssl")


def _remove_stale_temporaries(checkpoint_dir: Path) -> None:
    """Remove the temporary files of atomic writes a killed run left (``.last.pt.tmp-*``, ``.encoder.pt.tmp-*``) in the
    checkpoint folder and the run's folder: nothing writes them any more once a run resumes."""
    for folder in (checkpoint_dir, checkpoint_dir.parent):
        for tmp in folder.glob(".*.tmp-*") if folder.is_dir() else ():
            if tmp.is_file():
                logger.info("removing %s, left by an interrupted write", tmp)
                tmp.unlink(missing_ok=True)


def resume_run(
    trainer: Engine,
    resume: str | None,
    checkpoint_dir: str | os.PathLike,
    objects: Mapping[str, Any] | None = None,
) -> str | None:
    """Continue ``trainer`` from a checkpoint when asked: ``"auto"`` (``checkpoint_dir/last.pt`` when it exists) or a
    path. Returns the checkpoint used, or ``None``. Temporary files of writes a kill interrupted are removed first.

    Raises:
        FileNotFoundError: an explicit checkpoint that does not exist.
    """
    from monai_transfer.ssl.checkpoint import resume as _resume

    if resume is None:
        return None
    if is_main_process():
        _remove_stale_temporaries(Path(checkpoint_dir))
    path = Path(checkpoint_dir) / "last.pt" if resume == "auto" else Path(resume)
    if not path.is_file():
        if resume != "auto":
            raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
        return None
    _resume(trainer, path, objects=dict(objects or {}))
    return str(path)
