"""Continuing a pretraining run exactly from its checkpoint, also in the middle of an epoch.

The checkpoint is the one format of :mod:`monai_transfer.engines.checkpoint`, written by
:class:`~monai_transfer.engines.RunCheckpoint` with ``module_key="method"`` (the unwrapped SSL method, teacher and
buffers included) every ``every`` iterations and at each epoch end; ``"extra"`` holds the dict of ``extra_state()``.

Exact resume (:func:`resume`): the method, optimizer, scaler and RNG states are restored, and the engine's
``iteration`` / ``epoch`` are set. Ignite then restarts the data iterator at the start of the interrupted epoch while
counting from the iteration inside it; so :func:`resume` tells the loader's :class:`~monai_transfer.engines.
EpochSampler` to skip the ``(iteration % epoch_length) * batch_size`` samples already consumed in that epoch, and
MONAI's ``Workflow`` calls ``set_epoch`` with the interrupted epoch's number at ``EPOCH_STARTED``. The views of every
sample are a pure function of (seed, epoch, index) and the schedules a pure function of the step, so the resumed run
sees the same batches and hyper-parameters as the uninterrupted one. :func:`resume_run` is what the bundle config's
``run`` calls (``resume: "auto"`` or a path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine

from monai_transfer.engines.checkpoint import (
    CheckpointLoadError,
    clean_stale_tmp,
    load_checkpoint,
    prev_path,
    restore_objects,
)
from monai_transfer.engines.checkpoint import restore_rng as restore_rng_states
from monai_transfer.engines.sampling import EpochSampler
from monai_transfer.utils.distributed import is_main_process, unwrap

__all__ = ["load_training_checkpoint", "resume", "resume_run"]

logger = logging.getLogger("monai_transfer.ssl")

_REQUIRED = ("method", "optimizer", "engine")


def load_training_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a pretraining checkpoint (written by :class:`~monai_transfer.engines.RunCheckpoint` with
    ``module_key="method"``) with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointLoadError: the file is truncated or corrupted, or lacks the training-checkpoint keys; the message
            names the file and, when there is one, the previous checkpoint to fall back to.
    """
    return load_checkpoint(
        path,
        required=_REQUIRED,
        what="a training checkpoint of monai_transfer.ssl",
        hint="Encoder weights are loaded with monai_transfer.weights, not resumed.",
        map_location=map_location,
    )


def _find_sampler(loader: Any) -> Any:
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, EpochSampler):
        return sampler
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    return inner if isinstance(inner, EpochSampler) else sampler


def resume(
    trainer: Engine,
    path: str | os.PathLike,
    strict: bool = True,
    restore_rng: bool = True,
    exact: bool = True,
    fallback_to_prev: bool = False,
    objects: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore ``trainer`` from a pretraining checkpoint so that ``trainer.run()`` continues exactly.

    Restores the (unwrapped) method's state (teacher and buffers included), the optimizer, the GradScaler, torch's
    RNG states (dropout and other in-model randomness), and the engine's ``iteration``/``epoch``; and makes the
    loader's ``EpochSampler`` skip the samples of the interrupted epoch that were already trained on.
    ``max_epochs`` stays the trainer's own (so a run can be extended); schedules built for the old length then
    differ, which is logged.

    Args:
        trainer: an ``SSLTrainer`` built like the one that wrote the checkpoint (attach handlers before or after).
        path: ``last.pt``, ``last.prev.pt`` or the checkpoint folder (``<dir>/last.pt``).
        strict: strict ``load_state_dict`` of the method.
        restore_rng: restore torch's CPU (and CUDA) RNG states.
        exact: raise ``ValueError`` when the resume cannot be exact (mid-epoch checkpoint but the loader has no
            ``EpochSampler``, or a different ``epoch_length``); ``False``: warn and continue approximately.
        fallback_to_prev: if ``path`` cannot be loaded, try its ``.prev.pt`` sibling (logged as a warning).
        objects: the ``objects`` given to the ``RunCheckpoint``; each gets ``load_state_dict`` of its entry
            (a name missing from the checkpoint raises ``CheckpointLoadError``).

    Returns:
        The loaded checkpoint (``config``, ``extra``, ``engine``...).

    Raises:
        CheckpointLoadError: unreadable checkpoint (the message names the file).
        ValueError: the checkpoint does not fit this trainer (see ``exact``).
    """
    path, ckpt = _load(Path(path), fallback_to_prev)
    eng = ckpt["engine"]
    iteration, epoch_length = int(eng["iteration"]), eng.get("epoch_length")
    # iterations of the interrupted epoch already trained (0 for a checkpoint at an epoch end)
    in_epoch = iteration % int(epoch_length) if epoch_length else 0
    loader = getattr(trainer, "data_loader", None)
    sampler = _find_sampler(loader)
    problems = _inexact_reasons(trainer.state, iteration, epoch_length, in_epoch, loader, sampler)
    if problems:
        msg = f"resuming from {path} cannot be exact: " + "; ".join(problems)
        if exact:
            # said for the command line (the API's exact=False is documented above)
            raise ValueError(msg + "; run it again with the data and batch size it was written with, or start again "
                             "with --overwrite (resume='overwrite')")  # fmt: skip
        logger.warning(msg)
    _restore_states(trainer, ckpt, path, strict, restore_rng, objects)
    _restore_position(trainer, eng, path, iteration, epoch_length, in_epoch, loader, sampler)
    if hasattr(trainer, "resumed_from"):
        trainer.resumed_from = str(path)
    logger.info("resumed from %s: epoch %d, iteration %d", path, trainer.state.epoch, trainer.state.iteration)
    return ckpt


def _load(path: Path, fallback_to_prev: bool) -> tuple[Path, dict[str, Any]]:
    """The checkpoint at ``path`` (a folder: its ``last.pt``), or with ``fallback_to_prev`` its ``.prev.pt`` sibling
    when ``path`` cannot be loaded; returns the path actually loaded with the checkpoint."""
    if path.is_dir():
        path = path / "last.pt"
    try:
        return path, load_training_checkpoint(path)
    except (CheckpointLoadError, FileNotFoundError) as e:
        prev = prev_path(path)
        if not fallback_to_prev or not prev.is_file() or prev == path:
            raise
        logger.warning("%s; resuming from the previous checkpoint %s", e, prev)
        return prev, load_training_checkpoint(prev)


def _inexact_reasons(st: Any, iteration: int, epoch_length: Any, in_epoch: int, loader: Any, sampler: Any) -> list[str]:
    """Why resuming this trainer (state ``st``) from a checkpoint at ``iteration`` would not replay the same batches:
    another epoch length, a mid-epoch checkpoint without an ``EpochSampler``, or a loader of another length."""
    problems = []
    if epoch_length is not None and st.epoch_length is not None and int(epoch_length) != int(st.epoch_length):
        problems.append(f"epoch_length {epoch_length} in the checkpoint, {st.epoch_length} in this trainer")
    if in_epoch and not isinstance(sampler, EpochSampler):
        problems.append(
            f"the checkpoint is {in_epoch} iteration(s) into epoch {iteration // int(epoch_length) + 1} but the loader "
            f"has no EpochSampler to skip them (build it with monai_transfer.ssl.data.make_ssl_dataloader)"
        )
    if loader is not None and epoch_length is not None and hasattr(loader, "__len__"):
        try:
            n_batches = len(loader)
        except TypeError:
            n_batches = None
        if n_batches is not None and n_batches != int(epoch_length):
            problems.append(
                f"epoch_length {epoch_length} differs from the loader's {n_batches} batches (ignite then carries the "
                f"data iterator across epochs, which a resume cannot reproduce)"
            )
    return problems


def _restore_states(
    trainer: Engine,
    ckpt: dict[str, Any],
    path: Path,
    strict: bool,
    restore_rng: bool,
    objects: Mapping[str, Any] | None,
) -> None:
    """Load the method (unwrapped), optimizer, scaler, RNG and extra objects' states; clean stale temporary files."""
    method = unwrap(trainer.method)
    try:
        method.load_state_dict(ckpt["method"], strict=strict)
    except RuntimeError as e:
        raise CheckpointLoadError(f"{path}: the method's weights do not fit this method: {e}") from e
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    scaler = getattr(trainer, "scaler", None)
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        restore_rng_states(ckpt, path)
    restore_objects(objects, ckpt, path)
    if is_main_process():
        clean_stale_tmp(path.parent, path.name.split(".")[0])


def _restore_position(
    trainer: Engine,
    eng: Mapping[str, Any],
    path: Path,
    iteration: int,
    epoch_length: Any,
    in_epoch: int,
    loader: Any,
    sampler: Any,
) -> None:
    """Set the engine's iteration and epoch length (its own ``max_epochs`` kept) and make the sampler skip the
    samples of the interrupted epoch already trained on."""
    st = trainer.state
    max_epochs = st.max_epochs
    if eng.get("max_epochs") is not None and eng["max_epochs"] != max_epochs:
        logger.warning(
            "%s was written by a run of %s epochs; this trainer runs %s (schedules built for the new length differ "
            "from the old run's)", path, eng["max_epochs"], max_epochs,
        )  # fmt: skip
    length = int(epoch_length) if epoch_length is not None else st.epoch_length
    trainer.load_state_dict({"iteration": iteration, "epoch_length": length, "max_epochs": max_epochs})
    if isinstance(sampler, EpochSampler):
        # MONAI's Workflow sets the epoch at EPOCH_STARTED; setting it here too serves loaders iterated otherwise
        sampler.set_epoch(iteration // length + 1 if length else 1)
        batch_size = getattr(loader, "batch_size", None) or 1
        sampler.skip(in_epoch * batch_size)


#: :func:`resume`, for :func:`resume_run`, whose argument of that name is the config's resume mode
_resume_trainer = resume


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
    if resume is None:
        return None
    if is_main_process():
        _remove_stale_temporaries(Path(checkpoint_dir))
    path = Path(checkpoint_dir) / "last.pt" if resume == "auto" else Path(resume)
    if not path.is_file():
        if resume != "auto":
            raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
        return None
    _resume_trainer(trainer, path, objects=dict(objects or {}))
    return str(path)
