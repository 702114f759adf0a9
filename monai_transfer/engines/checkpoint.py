"""One versioned, atomic training checkpoint with exact resume, for every run (fine-tuning and pretraining).

The format (``"format": 1``), written by :class:`RunCheckpoint` for fine-tuning (any MONAI ``Trainer``: the module
under ``"network"``) and for pretraining (the ``SSLTrainer``: the SSL method, teacher and buffers included, under
``"method"``)::

    {"format": 1,
     "network" | "method": state_dict of the unwrapped module (tensors on the CPU),
     "optimizer": optimizer.state_dict(), "scaler": GradScaler state or None,
     "engine": {"epoch", "iteration", "epoch_length", "max_epochs"[, "best_metric", "best_metric_epoch"]},
     "rng": {"torch": CPU generator state[, "cuda": per-device states], "numpy": {...}, "python": (...)},
     "rng_ranks": [rng of rank 0, rank 1, ...] (only under DDP: each rank resumes its own streams),
     "finished": whether the run had ended (last epoch, or stopped early),
     "config": <JSON-able dict>, "objects": {name: state of each stateful object}, "extra": {...}}

Files: ``<dir>/last.pt`` (``torch.load(weights_only=True)`` reads it), optionally ``<dir>/last.prev.pt`` (the one
before), and ``<dir>/last.json`` (epoch, iteration, finished, the last loss when the trainer's output has one: for
humans). Every file goes through
:func:`monai_transfer.utils.atomic.atomic_write` (temporary file in the folder, fsync, ``os.replace``): a kill at any
moment leaves a complete ``last.pt``, old or new. A ``kill -9`` during the write leaves a ``.last.pt.tmp-*`` file
behind; :func:`clean_stale_tmp` removes those when the run resumes.

Exact resume at an epoch boundary restores the weights, the optimizer (its per-group ``base_lr`` included), the
GradScaler, every RNG (torch CPU and CUDA, NumPy's and Python's global ones: dropout and anything else drawing from
them), the stateful objects (best-checkpoint tracker, early stopping, LR schedulers, the evaluator's best metric) and
the engine's ``epoch``/``iteration``. With the data order and augmentations a pure function of ``(seed, epoch)``
(:class:`~monai_transfer.engines.EpochSampler`, :class:`~monai_transfer.engines.EpochSeedHandler`), the resumed run
then ends with weights bit-identical to the uninterrupted one. Pretraining also saves every ``every`` iterations and
resumes in the middle of an epoch (``monai_transfer.ssl.resume.resume``: the sampler skips the samples already seen).
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from monai_transfer.engines.sampling import EpochSampler
from monai_transfer.utils.atomic import atomic_write, atomic_write_json
from monai_transfer.utils.distributed import is_main_process, rank, unwrap, world_size

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointLoadError",
    "RunExistsError",
    "RunCheckpoint",
    "load_checkpoint",
    "save_checkpoint",
    "clean_stale_tmp",
    "prev_path",
    "rng_state",
    "set_rng_state",
    "state_of",
    "load_state_into",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
RESUME_MODES = ("never", "auto", "overwrite")


class CheckpointLoadError(RuntimeError):
    """A training checkpoint cannot be read (truncated, corrupted, not a training checkpoint) or does not fit."""


class RunExistsError(FileExistsError):
    """A run's checkpoint exists already and the run was asked neither to resume it nor to overwrite it."""


def prev_path(path: str | os.PathLike) -> Path:
    """``last.pt`` -> ``last.prev.pt`` (the checkpoint kept before the newest one)."""
    path = Path(path)
    return path.with_name(path.name[: -len(".pt")] + ".prev.pt") if path.name.endswith(".pt") else Path(f"{path}.prev")


# -- RNG -------------------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's global RNG states (torch CPU, CUDA when initialised, NumPy, Python), ``weights_only``-safe."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state["numpy"] = {
        "name": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
        "has_gauss": int(has_gauss), "cached_gaussian": float(cached),
    }  # fmt: skip
    state["python"] = random.getstate()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (entries it lacks are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        s = state["numpy"]
        key = np.asarray(s["key"].numpy() if isinstance(s["key"], torch.Tensor) else s["key"], dtype=np.uint32)
        np.random.set_state((s["name"], key, int(s["pos"]), int(s["has_gauss"]), float(s["cached_gaussian"])))
    if "python" in state:
        v = state["python"]
        random.setstate((v[0], tuple(v[1]), v[2]))


def _gathered_rng() -> list[dict[str, Any]] | None:
    """Every rank's :func:`rng_state` (a collective: all ranks call it), or ``None`` with a single process."""
    if world_size() <= 1:
        return None
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, rng_state())
    return states


# -- stateful objects ------------------------------------------------------------------------------------------------
def state_of(obj: Any) -> Any:
    """The state of a stateful object to checkpoint.

    ``state_dict()`` for objects that have one (LR schedulers, ``AtomicBestCheckpoint``, ignite handlers); MONAI's
    ``EarlyStopHandler`` (no ``state_dict`` of its own) gives its ignite ``EarlyStopping``'s; an ignite ``Engine``
    (a MONAI evaluator) gives its best metric and epoch (its iteration counters restart every run anyway).
    """
    from monai.handlers import EarlyStopHandler

    if isinstance(obj, Engine):
        st = obj.state
        best = getattr(st, "best_metric", None)
        return {
            "best_metric": None if best is None else float(best),
            "best_metric_epoch": int(getattr(st, "best_metric_epoch", -1)),
        }
    if isinstance(obj, EarlyStopHandler):
        if obj._handler is None:
            raise RuntimeError("EarlyStopHandler has no trainer yet (give `trainer` or call set_trainer) to save.")
        return dict(obj._handler.state_dict())
    if not hasattr(obj, "state_dict"):
        raise TypeError(f"{type(obj).__name__} has no state_dict(); it cannot be one of a checkpoint's objects.")
    return obj.state_dict()


def load_state_into(obj: Any, state: Any) -> None:
    """Restore ``obj`` from what :func:`state_of` returned."""
    from monai.handlers import EarlyStopHandler

    if isinstance(obj, Engine):
        if state.get("best_metric") is not None:
            obj.state.best_metric = state["best_metric"]
        obj.state.best_metric_epoch = state.get("best_metric_epoch", -1)
    elif isinstance(obj, EarlyStopHandler):
        if obj._handler is None:
            raise RuntimeError("EarlyStopHandler has no trainer yet (give `trainer` or call set_trainer) to restore.")
        obj._handler.load_state_dict(state)
    else:
        obj.load_state_dict(state)


# -- files -----------------------------------------------------------------------------------------------------------
def save_checkpoint(
    payload: Mapping[str, Any],
    path: str | os.PathLike,
    keep_previous: bool = False,
    summary: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``payload`` to ``path`` atomically; optionally keep the old file as ``.prev.pt`` and write a JSON summary.

    The order of the file operations makes every moment safe: the new file is written and fsync-ed under a temporary
    name; with ``keep_previous`` the current ``path`` is hard-linked (or copied) to a temporary name and renamed onto
    ``last.prev.pt``; then the new file is renamed onto ``path``. A kill at any point leaves a complete ``path`` (old
    or new) and a complete ``last.prev.pt``. ``summary`` goes to ``path`` with the suffix ``.json``.
    """
    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save(dict(payload), tmp)
        if keep_previous and path.exists():
            _keep_previous(path)
    if summary is not None:
        atomic_write_json(path.with_suffix(".json"), dict(summary))
    return path


def _keep_previous(path: Path) -> None:
    # path -> .prev.pt without ever removing path: link (or copy) to a temporary name, then rename
    with atomic_write(prev_path(path)) as tmp_prev:
        tmp_prev.unlink()
        try:
            os.link(path, tmp_prev)
        except OSError:  # file systems without hard links
            shutil.copyfile(path, tmp_prev)


def load_checkpoint(
    path: str | os.PathLike,
    required: tuple[str, ...] = ("network", "optimizer", "engine"),
    what: str = "a training checkpoint of monai_transfer",
    hint: str = "",
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint of this format with ``torch.load(weights_only=True)`` and check it.

    Args:
        path: the file, or its folder (``<dir>/last.pt``).
        required: keys it must hold.
        what: how the error messages name the expected kind of file.
        hint: appended to the message of a file lacking ``required`` keys.
        map_location: where tensors are loaded.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointLoadError: the file is truncated or corrupted, lacks the keys, or has a newer format; the message
            names the file and, when there is one, the previous checkpoint to fall back to.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint not found: {path}")
    prev = prev_path(path)
    if prev.is_file() and prev != path:
        todo = (f"the previous checkpoint {prev} may be intact: move {path.name} aside and resume again (--resume "
                "auto) to continue from it, or start the run again with --overwrite")  # fmt: skip
    else:
        todo = "delete it and start the run again with --overwrite (resume='overwrite'), or restore it from a copy"
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, foreign file: all mean "cannot use this file"
        from monai_transfer.weights.checkpoint import blocked_global

        blocked = blocked_global(e)
        if blocked is not None:  # a pickle with objects torch refuses (os.system...): not a checkpoint we wrote
            raise CheckpointLoadError(
                f"{path} holds a pickled global ({blocked}) that torch.load(weights_only=True) refuses, because "
                f"loading it could run code; monai_transfer never writes one, so it is not this run's checkpoint: "
                f"do not load it; {todo}"
            ) from e
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise CheckpointLoadError(
            f"cannot load training checkpoint {path} ({path.stat().st_size} bytes): it is truncated, corrupted or not "
            f"a torch checkpoint ({type(e).__name__}: {lines[0][:200] if lines else ''}); {todo}"
        ) from e
    if not isinstance(ckpt, Mapping) or any(k not in ckpt for k in required):
        found = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointLoadError(
            f"{path} is not {what} (needs keys {list(required)}, found {found}).{(' ' + hint) if hint else ''}"
        )
    fmt = ckpt.get("format", CHECKPOINT_FORMAT)
    if not isinstance(fmt, int) or fmt > CHECKPOINT_FORMAT:
        raise CheckpointLoadError(
            f"{path} has checkpoint format {fmt!r}; this monai_transfer reads format {CHECKPOINT_FORMAT} and older: "
            f"upgrade monai_transfer to resume it."
        )
    return dict(ckpt)


def clean_stale_tmp(save_dir: str | os.PathLike, name: str = "last") -> list[Path]:
    """Remove the temporary files a killed write left in ``save_dir`` (``.last.pt.tmp-*``, ``.last.json.tmp-*``...).

    Call it only when nothing is writing there (at the start of a run). Returns the removed paths.
    """
    folder = Path(save_dir)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.glob(f".{name}.*tmp-*")):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.warning("removed %d temporary file(s) left by an interrupted write: %s", len(removed),
                       ", ".join(p.name for p in removed))  # fmt: skip
    return removed


def _engine_state(engine: Engine) -> dict[str, Any]:
    st = engine.state
    out: dict[str, Any] = {
        "epoch": int(st.epoch),
        "iteration": int(st.iteration),
        "epoch_length": None if st.epoch_length is None else int(st.epoch_length),
        "max_epochs": None if st.max_epochs is None else int(st.max_epochs),
    }
    if getattr(st, "key_metric_name", None) is not None and getattr(st, "best_metric", None) is not None:
        out["best_metric"] = float(st.best_metric)
        out["best_metric_epoch"] = int(getattr(st, "best_metric_epoch", -1))
    return out


def training_payload(
    engine: Engine,
    modules: Mapping[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scaler: Any = None,
    objects: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    rng_ranks: list[dict[str, Any]] | None = None,
    finished: bool = False,
) -> dict[str, Any]:
    """The checkpoint dictionary of the format above (module states unwrapped from DDP and moved to the CPU)."""
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT}
    for key, module in modules.items():
        payload[key] = {k: v.detach().cpu() for k, v in unwrap(module).state_dict().items()}
    payload.update(
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else None,
        engine=_engine_state(engine),
        rng=rng_ranks[0] if rng_ranks else rng_state(),
        finished=bool(finished),
        config=dict(config or {}),
        objects={name: state_of(obj) for name, obj in (objects or {}).items()},
        extra=dict(extra or {}),
    )
    if rng_ranks is not None:
        payload["rng_ranks"] = rng_ranks
    return payload


def restore_rng(ckpt: Mapping[str, Any], path: Any = "") -> None:
    """Restore this rank's RNG states from a checkpoint (its own under DDP when the number of ranks is the same)."""
    ranks = ckpt.get("rng_ranks")
    if ranks and len(ranks) == world_size():
        set_rng_state(ranks[rank()])
    elif "rng" in ckpt:
        if world_size() > 1 or ranks:
            logger.warning(
                "%s: written by %d rank(s), resumed by %d: every rank restores rank 0's random state (not exact)",
                path, len(ranks) if ranks else 1, world_size(),
            )  # fmt: skip
        set_rng_state(ckpt["rng"])


def restore_objects(objects: Mapping[str, Any] | None, ckpt: Mapping[str, Any], path: Any = "") -> None:
    """``load_state_into`` every object from the checkpoint's ``objects`` (a missing name is an error)."""
    saved = ckpt.get("objects", {}) or {}
    for name, obj in (objects or {}).items():
        if name not in saved:
            raise CheckpointLoadError(f"{path} has no state for {name!r}; it holds {sorted(saved)}.")
        load_state_into(obj, saved[name])


# -- the handler -----------------------------------------------------------------------------------------------------
class RunCheckpoint:
    """Save ``<save_dir>/last.pt`` at the end of every epoch; on ``STARTED``, resume from it or refuse to overwrite it.

    The one checkpoint handler of every run. An ignite handler for any MONAI ``Trainer`` (``SupervisedTrainer`` in
    fine-tuning, the ``SSLTrainer`` in pretraining), built in a bundle config as one of ``train#handlers``::

        {"_target_": "monai_transfer.engines.RunCheckpoint", "save_dir": "$@ckpt_dir", "network": "@network",
         "optimizer": "@optimizer", "resume": "@resume", "config": {"seed": "@seed"},
         "objects": {"best": "@validate#best_checkpoint", "evaluator": "@validate#evaluator"}}

    Saving: at ``EPOCH_COMPLETED`` after every other epoch-end handler of the trainer, validation included (it moves
    itself last at ``STARTED``, whatever the order of ``train#handlers``), every ``every_epochs`` epochs and always at
    the last epoch or when the run was stopped (early stopping); the file is marked ``finished`` then. Under DDP every
    rank takes part (each rank's RNG state is gathered) and rank 0 writes.

    Resuming, at ``STARTED`` (after MONAI's ``Trainer.run`` made its GradScaler), by ``resume``:

    * ``"never"``: start a new run; an existing ``last.pt`` raises :class:`RunExistsError` (a finished or interrupted
      run is never overwritten silently).
    * ``"auto"``: continue from ``last.pt`` when it exists, else start a new run.
    * ``"overwrite"``: start a new run; the old ``last.pt`` is replaced at the first save.
    * a path (a file or a checkpoint folder): continue from it (it must exist).

    A continued run restores everything (see the module docstring) so that training goes on at the next epoch. A run
    whose checkpoint is ``finished`` (or has reached ``max_epochs``) is not trained again: the trainer stops at once
    without firing ``COMPLETED`` (so handlers that write results on ``COMPLETED`` do not rewrite them) and
    :attr:`resumed_finished` is True. Stale temporary files of a killed write are removed when a run resumes or
    overwrites.

    Pretraining (``resume=None, every=N, module_key="method", every_rank=False``): the handler only saves, every
    ``every`` iterations too, and the run resumes before ``run()`` with ``monai_transfer.ssl.resume.resume`` (also in
    the middle of an epoch). It is attached in order, after the ``EPOCH_COMPLETED`` handlers whose state it stores (a
    ``KNNMonitor``, an epoch-level LR schedule), and under DDP on rank 0 only. An ``every`` multiple that is also an
    epoch end is saved once, at ``EPOCH_COMPLETED``.

    Args:
        save_dir: the checkpoint folder (created at the first save).
        network: the trained module (a DDP wrapper is unwrapped; saved under ``module_key``); default: the engine's
            ``network`` (the ``SSLTrainer``'s method).
        optimizer: its optimizer; default: the engine's ``optimizer``.
        resume: ``"never"``, ``"auto"``, ``"overwrite"`` or a checkpoint path; ``None``: nothing at ``STARTED`` (the
            caller resumes, as pretraining does).
        objects: stateful objects saved under ``"objects"`` and restored by name: anything with ``state_dict`` /
            ``load_state_dict`` (``AtomicBestCheckpoint``, LR schedulers), MONAI's ``EarlyStopHandler``, and MONAI
            evaluators (their best metric).
        scaler: the GradScaler; default: the trainer's ``scaler`` (MONAI makes it in ``Trainer.run``).
        config: a JSON-able dict stored in the checkpoint (the run's configuration).
        every_epochs: epochs between saves; ``None``: none at epoch ends (only every ``every`` iterations).
        keep_previous: also keep the checkpoint before the newest as ``last.prev.pt`` (twice the disk).
        name: file stem (``last`` -> ``last.pt``, ``last.json``).
        strict: strict ``load_state_dict`` of the network.
        every: also save every ``every`` iterations (``None``: at epoch ends only).
        extra_state: called at each save; its JSON-able dict is stored under ``"extra"``.
        module_key: the key of the module's state: ``"network"`` (fine-tuning) or ``"method"`` (pretraining); a
            checkpoint must hold it to be loaded.
        every_rank: under DDP every rank calls the handler (each rank's RNG state is gathered, rank 0 writes);
            ``False``: it is attached on rank 0 only, which stores its own RNG state.

    Attributes:
        resumed_from: the checkpoint a run continued from (``None``: a new run).
        resumed_finished: the checkpoint was of a finished run; nothing was trained.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        network: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        resume: str | os.PathLike | None = "never",
        objects: Mapping[str, Any] | None = None,
        scaler: Any = None,
        config: Mapping[str, Any] | None = None,
        every_epochs: int | None = 1,
        keep_previous: bool = False,
        name: str = "last",
        strict: bool = True,
        every: int | None = None,
        extra_state: Callable[[], Mapping[str, Any]] | None = None,
        module_key: str = "network",
        every_rank: bool = True,
    ) -> None:
        if every_epochs is not None and int(every_epochs) < 1:
            raise ValueError(f"every_epochs must be a positive number of epochs or None, got {every_epochs}.")
        if every is not None and int(every) < 1:
            raise ValueError(f"every must be a positive number of iterations or None, got {every}.")
        if every is None and every_epochs is None:
            raise ValueError("every and every_epochs are both None: the run would never be saved.")
        resume = os.fspath(resume) if isinstance(resume, os.PathLike) else resume
        if resume is not None and (not isinstance(resume, str) or not resume):
            raise ValueError(f"resume must be one of {RESUME_MODES}, a checkpoint path or None, got {resume!r}.")
        self.save_dir = Path(save_dir)
        self.network = network
        self.optimizer = optimizer
        self.resume = resume
        self.objects = dict(objects or {})
        self.scaler = scaler
        self.config = dict(config or {})
        self.every_epochs = None if every_epochs is None else int(every_epochs)
        self.keep_previous = bool(keep_previous)
        self.name = name
        self.strict = strict
        self.every = None if every is None else int(every)
        self.extra_state = extra_state
        self.module_key = str(module_key)
        self.every_rank = bool(every_rank)
        self.path = self.save_dir / f"{name}.pt"
        self.resumed_from: str | None = None
        self.resumed_finished = False
        self._last_saved_iteration: int | None = None

    # -- wiring ----------------------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Register at ``STARTED`` (resume or check; not with ``resume=None``), ``EPOCH_COMPLETED`` (save) and, with
        ``every``, ``ITERATION_COMPLETED(every=...)`` (save)."""
        self._preloaded: tuple[Path, dict[str, Any]] | None = None
        if self.every is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self.iteration_completed)
        if self.resume is not None:
            engine.add_event_handler(Events.STARTED, self.started)
        # with resume=None (the caller resumes) the handler keeps its place among the epoch-end handlers
        if self.every_epochs is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        # a checkpoint to resume from is read now, as the config is built: a truncated or foreign file is named in one
        # line before the run starts, not from inside the engine (whose error log prints two tracebacks)
        if self.resume not in (None, "never", "overwrite"):
            path = self._resume_path()
            if path is not None:
                self._preloaded = (path, self._read(path))

    def _read(self, path: Path) -> dict[str, Any]:
        preloaded, self._preloaded = getattr(self, "_preloaded", None), None
        if preloaded is not None and preloaded[0] == path:
            return preloaded[1]
        return load_checkpoint(
            path, required=(self.module_key, "optimizer", "engine"),
            what="a run checkpoint of monai_transfer.engines.RunCheckpoint",
            hint="Pretrained weights are loaded with monai_transfer.weights (`pretrained`), not resumed.",
        )  # fmt: skip

    def _move_last(self, engine: Engine) -> None:
        # ignite runs an event's handlers in the order attached; the checkpoint must hold the state after all of them
        handlers = engine._event_handlers.get(Events.EPOCH_COMPLETED, [])
        mine = [h for h in handlers if h[0] == self.epoch_completed]
        if mine and handlers[-1] is not mine[-1]:
            for h in mine:
                handlers.remove(h)
            handlers.extend(mine)

    def _resume_path(self) -> Path | None:
        if self.resume == "never":
            if self.path.exists():
                raise RunExistsError(
                    f"{self.path} holds a run already ({_describe(self.path)}). Continue it with `--resume auto` "
                    f"(resume='auto'), or start again and replace it with `--overwrite` (resume='overwrite')."
                )
            return None
        if self.resume == "overwrite":
            return None
        if self.resume == "auto":
            if self.path.is_file():
                return self.path
            prev = prev_path(self.path)
            if prev.is_file():
                logger.warning("%s is missing; resuming from the previous checkpoint %s", self.path, prev)
                return prev
            return None
        path = Path(self.resume)
        path = path / f"{self.name}.pt" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
        return path

    # -- events ----------------------------------------------------------------------------------------------------
    def started(self, engine: Engine) -> None:
        """Resume (or check that there is nothing to overwrite) before the first epoch."""
        self._move_last(engine)
        path = self._resume_path()
        if is_main_process() and self.resume != "never":
            clean_stale_tmp(self.save_dir, self.name)
        if path is not None:
            self.load(engine, path)

    def epoch_completed(self, engine: Engine) -> None:
        """Save every ``every_epochs`` epochs, and at the end of the run (last epoch or stopped)."""
        finished = bool(engine.should_terminate) or (
            engine.state.max_epochs is not None and engine.state.epoch >= engine.state.max_epochs
        )
        if engine.state.epoch % self.every_epochs and not finished:
            return
        if self.every is not None and self._last_saved_iteration == engine.state.iteration:
            return  # saved already at this step
        self.save(engine, finished=finished)

    def iteration_completed(self, engine: Engine) -> None:
        """Save every ``every`` iterations; an epoch end saved by epoch is left to :meth:`epoch_completed`, after the
        epoch's other handlers."""
        length = engine.state.epoch_length
        if self.every_epochs is not None and length and engine.state.iteration % length == 0:
            return
        if self._last_saved_iteration != engine.state.iteration:
            self.save(engine, finished=_reached_the_end(engine))

    # -- save / load -----------------------------------------------------------------------------------------------
    def _scaler(self, engine: Engine) -> Any:
        return self.scaler if self.scaler is not None else getattr(engine, "scaler", None)

    def save(self, engine: Engine, finished: bool = False) -> Path:
        """Write the checkpoint now (with ``every_rank``, every rank must call it under DDP; rank 0 writes)."""
        ranks = _gathered_rng() if self.every_rank else None
        if self.every_rank and not is_main_process():
            return self.path
        network = self.network if self.network is not None else engine.network
        optimizer = self.optimizer if self.optimizer is not None else engine.optimizer
        payload = training_payload(
            engine, {self.module_key: network}, optimizer, scaler=self._scaler(engine), objects=self.objects,
            config=self.config, extra=self.extra_state() if self.extra_state is not None else None, rng_ranks=ranks,
            finished=finished,
        )  # fmt: skip
        summary = {"format": CHECKPOINT_FORMAT, **payload["engine"], "finished": payload["finished"]}
        loss = _last_loss(engine)
        if loss is not None:
            summary["loss"] = loss if math.isfinite(loss) else str(loss)
        save_checkpoint(payload, self.path, keep_previous=self.keep_previous, summary=summary)
        self._last_saved_iteration = int(engine.state.iteration)
        if self.every is None:
            logger.info("epoch %d checkpoint -> %s%s", engine.state.epoch, self.path, " (finished)" if finished else "")
        else:
            logger.debug("checkpoint at iteration %d -> %s", engine.state.iteration, self.path)
        return self.path

    def load(self, engine: Engine, path: str | os.PathLike) -> dict[str, Any]:
        """Restore ``engine`` and everything else from ``path`` so that the run continues at the next epoch."""
        path = Path(path)
        ckpt = self._read(path)
        eng = ckpt["engine"]
        st = engine.state
        length = eng.get("epoch_length")
        if length is not None and st.epoch_length is not None and int(length) != int(st.epoch_length):
            raise ValueError(
                f"{path} was written with {length} iterations per epoch, this trainer has {st.epoch_length}: the data "
                f"or the batch size changed, so the run cannot continue exactly. Start a new run (--overwrite)."
            )
        if length and int(eng["iteration"]) != int(eng["epoch"]) * int(length):
            raise CheckpointLoadError(f"{path} was not written at the end of an epoch ({eng}).")
        network = self.network if self.network is not None else engine.network
        optimizer = self.optimizer if self.optimizer is not None else engine.optimizer
        try:
            unwrap(network).load_state_dict(ckpt[self.module_key], strict=self.strict)
        except RuntimeError as e:
            raise CheckpointLoadError(f"{path}: the network's weights do not fit this network: {e}") from e
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler = self._scaler(engine)
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        restore_objects(self.objects, ckpt, path)
        restore_rng(ckpt, path)

        st.epoch, st.iteration = int(eng["epoch"]), int(eng["iteration"])
        if "best_metric" in eng:
            st.best_metric, st.best_metric_epoch = eng["best_metric"], eng.get("best_metric_epoch", -1)
        sampler = getattr(getattr(engine, "data_loader", None), "sampler", None)
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(st.epoch + 1)  # MONAI's Workflow does it again at EPOCH_STARTED
        self.resumed_from = str(path)
        max_epochs = st.max_epochs
        if ckpt.get("finished") or (max_epochs is not None and st.epoch >= max_epochs):
            self.resumed_finished = True
            logger.info("%s: the run had finished at epoch %d; nothing to train", path, st.epoch)
            engine.terminate(skip_completed=True)
        else:
            if eng.get("max_epochs") is not None and eng["max_epochs"] != max_epochs:
                logger.warning("%s was written by a run of %s epochs; this one runs %s (epoch-based schedules "
                               "differ from the old run's)", path, eng["max_epochs"], max_epochs)  # fmt: skip
            logger.info("resumed from %s: epoch %d done, iteration %d", path, st.epoch, st.iteration)
        return ckpt


def _reached_the_end(engine: Engine) -> bool:
    """Whether the engine has run all its iterations (a checkpoint saved by iterations is then ``finished``)."""
    st = engine.state
    return st.max_epochs is not None and st.epoch_length is not None and st.iteration >= st.max_epochs * st.epoch_length


def _last_loss(engine: Engine) -> float | None:
    """The loss of the last step when the trainer's output carries one (the ``SSLTrainer``'s ``StepOutput``)."""
    out = engine.state.output
    loss = out.get("loss") if hasattr(out, "get") else None
    if isinstance(loss, torch.Tensor):
        loss = loss.detach() if loss.numel() == 1 else None
    return float(loss) if loss is not None else None


def _describe(path: Path) -> str:
    import json

    try:  # the JSON summary beside it: no need to read the weights
        e = json.loads(path.with_suffix(".json").read_text())
        return f"epoch {e['epoch']} of {e['max_epochs']}{', finished' if e.get('finished') else ''}"
    except Exception:  # no or a damaged summary: still a run not to overwrite silently
        return "see its last.json"
