"""Atomic training checkpoints and exact resume for the SSL trainer.

``TrainingCheckpoint`` writes ``<dir>/last.pt`` every ``every`` iterations and at each epoch end, in the one
checkpoint format of :mod:`monai_transfer.engines.checkpoint` (the module is stored under ``"method"``: the unwrapped
SSL method, teacher and buffers included; ``"extra"`` holds the dict of ``extra_state()``)::

    {"format": 1, "method": ..., "optimizer": ..., "scaler": ..., "engine": {"epoch", "iteration", "epoch_length",
     "max_epochs"}, "rng": {"torch", "cuda", "numpy", "python"}, "finished": ..., "config": ..., "objects": ...,
     "extra": ...}

The previous checkpoint is kept as ``<dir>/last.prev.pt``. The order of the file operations makes every moment
safe: the new file is written and fsync-ed under a temporary name, ``last.pt`` is hard-linked (or copied) to a
temporary name and renamed onto ``last.prev.pt``, then the new file is renamed onto ``last.pt``. A kill at any point
leaves a complete ``last.pt`` (old or new) and a complete ``last.prev.pt``. ``<dir>/last.json`` (epoch, iteration,
loss) is written the same way for humans.

Exact resume (:func:`resume`): the method, optimizer, scaler and RNG states are restored, and the engine's
``iteration`` / ``epoch`` are set. Ignite then restarts the data iterator at the start of the interrupted epoch while
counting from the iteration inside it; so :func:`resume` tells the loader's :class:`~monai_transfer.engines.
EpochSampler` to skip the ``(iteration % epoch_length) * batch_size`` samples already consumed in that epoch, and
MONAI's ``Workflow`` calls ``set_epoch`` with the interrupted epoch's number at ``EPOCH_STARTED``. The views of every
sample are a pure function of (seed, epoch, index) and the schedules a pure function of the step, so the resumed run
sees the same batches and hyper-parameters as the uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_transfer.engines.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointLoadError,
    clean_stale_tmp,
    load_checkpoint,
    restore_objects,
    save_checkpoint,
    training_payload,
)
from monai_transfer.engines.checkpoint import prev_path as _prev_path
from monai_transfer.engines.checkpoint import restore_rng as restore_rng_states
from monai_transfer.engines.sampling import EpochSampler
from monai_transfer.utils.distributed import is_main_process, unwrap

__all__ = ["TrainingCheckpoint", "CheckpointLoadError", "load_training_checkpoint", "resume", "CHECKPOINT_FORMAT"]

logger = logging.getLogger(__name__)

_REQUIRED = ("method", "optimizer", "engine")


class TrainingCheckpoint:
    """Save ``<save_dir>/last.pt`` (and ``last.prev.pt``, ``last.json``) every ``every`` iterations and per epoch.

    Attach to an :class:`~monai_transfer.ssl.trainer.SSLTrainer` (the method, optimizer and scaler are read from
    ``engine.method``, ``engine.optimizer`` and ``engine.scaler`` unless given). Under DDP attach it on rank 0 only.
    Ignite runs handlers in the order they were attached: attach it *after* the ``EPOCH_COMPLETED`` handlers whose
    state it stores (a ``KNNMonitor``, an epoch-level ``LrScheduleHandler``), so the epoch-end checkpoint holds the
    state after them; a resumed run does not run them again. An ``every`` multiple that is also an epoch end is
    saved once, at ``EPOCH_COMPLETED``.

    Args:
        save_dir: the checkpoint folder (created).
        every: iterations between checkpoints (``None``: only at epoch ends).
        config: a JSON-able dict stored in the checkpoint (the run's configuration).
        method: default ``engine.method`` (unwrapped when saved).
        optimizer: default ``engine.optimizer``.
        objects: stateful objects (``state_dict()`` / ``load_state_dict()``: an LR scheduler, a ``KNNMonitor``)
            saved under ``"objects"``; give the same mapping to :func:`resume` to restore them.
        extra_state: called at each save; its JSON-able dict is stored under ``"extra"``.
        save_on_epoch: also save at every ``EPOCH_COMPLETED``.
        name: file stem (``last`` -> ``last.pt``, ``last.prev.pt``, ``last.json``).
        keep_previous: also keep the checkpoint before the newest as ``last.prev.pt`` (twice the disk; ``last.pt`` is
            written atomically, so it is complete without it).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        every: int | None = None,
        config: Mapping[str, Any] | None = None,
        method: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        objects: Mapping[str, Any] | None = None,
        extra_state: Callable[[], Mapping[str, Any]] | None = None,
        save_on_epoch: bool = True,
        name: str = "last",
        keep_previous: bool = False,
    ) -> None:
        if every is not None and int(every) < 1:
            raise ValueError(f"every must be a positive number of iterations or None, got {every}.")
        self.save_dir = Path(save_dir)
        self.every = None if every is None else int(every)
        self.config = dict(config or {})
        self.method = method
        self.optimizer = optimizer
        self.objects = dict(objects or {})
        self.extra_state = extra_state
        self.save_on_epoch = save_on_epoch
        self.keep_previous = bool(keep_previous)
        self.path = self.save_dir / f"{name}.pt"
        self.prev_path = _prev_path(self.path)
        self.json_path = self.save_dir / f"{name}.json"
        self._last_saved_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        """Register at ``ITERATION_COMPLETED(every=...)`` and ``EPOCH_COMPLETED``."""
        if self.every is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self._on_iteration)
        if self.save_on_epoch:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def payload(self, engine: Engine) -> dict[str, Any]:
        """The checkpoint dictionary for the engine's current state (tensors moved to the CPU)."""
        method = self.method if self.method is not None else engine.method
        optimizer = self.optimizer if self.optimizer is not None else engine.optimizer
        st = engine.state
        return training_payload(
            engine,
            {"method": method},
            optimizer,
            scaler=getattr(engine, "scaler", None),
            objects=self.objects,
            config=self.config,
            extra=self.extra_state() if self.extra_state is not None else None,
            finished=st.max_epochs is not None
            and st.epoch_length is not None
            and st.iteration >= st.max_epochs * st.epoch_length,
        )

    def save(self, engine: Engine) -> Path:
        """Write the checkpoint now (atomic; with ``keep_previous`` the old ``last.pt`` becomes ``last.prev.pt``)."""
        save_checkpoint(
            self.payload(engine), self.path, keep_previous=self.keep_previous, summary=self._summary(engine)
        )
        self._last_saved_iteration = int(engine.state.iteration)
        logger.debug("checkpoint at iteration %d -> %s", engine.state.iteration, self.path)
        return self.path

    @staticmethod
    def _summary(engine: Engine) -> dict[str, Any]:
        out = engine.state.output
        loss = out.get("loss") if hasattr(out, "get") else None  # a StepOutput or a dict
        value = float(loss) if loss is not None else None
        return {
            "epoch": int(engine.state.epoch),
            "iteration": int(engine.state.iteration),
            "epoch_length": engine.state.epoch_length,
            "max_epochs": engine.state.max_epochs,
            "loss": value if value is None or math.isfinite(value) else str(value),
        }

    def _on_iteration(self, engine: Engine) -> None:
        length = engine.state.epoch_length
        if self.save_on_epoch and length and engine.state.iteration % length == 0:
            return  # the epoch end: saved at EPOCH_COMPLETED, after the epoch's other handlers
        self(engine)

    def __call__(self, engine: Engine) -> None:
        if self._last_saved_iteration == engine.state.iteration:
            return  # saved already at this iteration
        self.save(engine)


def load_training_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :class:`TrainingCheckpoint` with ``weights_only=True``.

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
    """Restore ``trainer`` from a :class:`TrainingCheckpoint` so that ``trainer.run()`` continues exactly.

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
        objects: the ``objects`` given to :class:`TrainingCheckpoint`; each gets ``load_state_dict`` of its entry
            (a name missing from the checkpoint raises ``CheckpointLoadError``).

    Returns:
        The loaded checkpoint (``config``, ``extra``, ``engine``...).

    Raises:
        CheckpointLoadError: unreadable checkpoint (the message names the file).
        ValueError: the checkpoint does not fit this trainer (see ``exact``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    try:
        ckpt = load_training_checkpoint(path)
    except (CheckpointLoadError, FileNotFoundError) as e:
        prev = _prev_path(path)
        if not fallback_to_prev or not prev.is_file() or prev == path:
            raise
        logger.warning("%s; resuming from the previous checkpoint %s", e, prev)
        path, ckpt = prev, load_training_checkpoint(prev)

    eng = ckpt["engine"]
    iteration, epoch_length = int(eng["iteration"]), eng.get("epoch_length")
    st = trainer.state
    problems = []
    if epoch_length is not None and st.epoch_length is not None and int(epoch_length) != int(st.epoch_length):
        problems.append(f"epoch_length {epoch_length} in the checkpoint, {st.epoch_length} in this trainer")
    in_epoch = iteration % int(epoch_length) if epoch_length else 0
    loader = getattr(trainer, "data_loader", None)
    sampler = _find_sampler(loader)
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
    if problems:
        msg = f"resuming from {path} cannot be exact: " + "; ".join(problems)
        if exact:
            # said for the command line (the API's exact=False is documented above)
            raise ValueError(msg + "; run it again with the data and batch size it was written with, or start again "
                             "with --overwrite (resume='overwrite')")  # fmt: skip
        logger.warning(msg)

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
    if hasattr(trainer, "resumed_from"):
        trainer.resumed_from = str(path)
    logger.info("resumed from %s: epoch %d, iteration %d", path, trainer.state.epoch, trainer.state.iteration)
    return ckpt
