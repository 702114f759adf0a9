"""The parts a pretraining bundle config wires together (``monai_transfer.ssl.bundle_config.pretrain_config``).

Each is a ``_target_`` component or a function called from the config's ``initialize`` / ``run`` lists, so a
pretraining run is a MONAI bundle config run by ``ConfigWorkflow`` (``python -m monai.bundle run`` runs it too):

* builders: :func:`run_device`, :func:`build_backbone` and :func:`build_method` (weights drawn from generators
  seeded by the config, never the global one), :func:`load_images` (the unlabeled section of a datalist);
* checks before training: :func:`check_method_kwargs` (unknown or mistyped method options, named) and
  :func:`check_pretraining_data` (enough images for a batch; a sample of the views is neither constant nor collapsed
  by the intensity mapping, else :class:`ViewCheckError` naming the mapping and suggesting another);
* handlers: :class:`EpochLosses` (the mean loss per epoch, checkpointed), :class:`ChanceLossMonitor` (a contrastive
  loss stuck at its chance value is flagged), :class:`LossProgressBar`;
* :func:`resume_run` (``resume: "auto"`` or a checkpoint) and :class:`PretrainPublisher` (``encoder.pt`` with its
  provenance, ``loss.png``, ``result.json``).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_transfer.utils.distributed import is_main_process, unwrap, world_size

__all__ = [
    "run_device",
    "build_backbone",
    "build_method",
    "check_method_kwargs",
    "check_batch_size",
    "PretrainData",
    "load_images",
    "intensity_transforms",
    "ViewCheckError",
    "check_pretraining_data",
    "EpochLosses",
    "chance_loss",
    "ChanceLossMonitor",
    "LossProgressBar",
    "close_writers",
    "resume_run",
    "PretrainPublisher",
    "plot_losses",
]

logger = logging.getLogger("monai_transfer.ssl")


# -- builders -----------------------------------------------------------------------------------------------------
def run_device(device: str | torch.device | None = None) -> torch.device:
    """The device of this process: ``device`` (default CUDA when available, else CPU); under ``torchrun`` with more
    than one rank, CUDA becomes ``cuda:LOCAL_RANK``."""
    from monai_transfer.engines.device import default_device
    from monai_transfer.engines.distributed import local_device

    return local_device(device) if world_size() > 1 else default_device(device)


def _seeded(seed: int, stream: int) -> int:
    # independent streams for the backbone (0) and the method's heads (1), both a pure function of the config's seed
    return int(np.random.SeedSequence([int(seed), 0x53534C, int(stream)]).generate_state(1, np.uint32)[0])


def build_backbone(
    name: str,
    spatial_dims: int,
    in_channels: int = 1,
    seed: int = 0,
    pretrained: str | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """``create_backbone(name, ...)`` with its initial weights drawn from a generator seeded by ``seed``.

    Torch's global generator is forked, so building the network leaves no trace on it.
    """
    from monai_transfer.networks import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seeded(seed, 0))
        try:
            return create_backbone(name, spatial_dims, in_channels, pretrained=pretrained, **kwargs)
        except TypeError as e:  # an option the network does not take: name it, without a traceback
            raise ValueError(f"backbone_kwargs: backbone {name!r} does not take {sorted(kwargs)}: {e}") from None


def _options(name: str) -> tuple[str, dict[str, inspect.Parameter], bool]:
    from monai_transfer.ssl.registry import get_method_spec

    spec = get_method_spec(name)
    params = dict(inspect.signature(spec.resolve().__init__).parameters)
    params.pop("self", None)
    params.pop("backbone", None)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return spec.name, {k: p for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}, var_kw


def _type_problem(value: Any, param: inspect.Parameter) -> str | None:
    """Why ``value`` cannot be ``param`` (from its default and its annotation), or ``None``."""
    default = param.default
    note = str(param.annotation) if param.annotation is not inspect.Parameter.empty else ""
    if value is None:
        return None if default is None or "None" in note else "may not be null"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) or note.startswith("bool"):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, float) or note.startswith("float"):
        return None if is_number else "must be a number"
    if isinstance(default, int) or note.startswith("int"):
        return None if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else "must be an integer"
    if isinstance(default, str) and note.startswith("str") and not isinstance(value, str):
        return "must be a string"
    return None


def check_method_kwargs(name: str, kwargs: Mapping[str, Any], where: str = "method_kwargs") -> None:
    """Raise ``ValueError`` naming an option method ``name`` does not take, or a value of the wrong type.

    The message lists the options the method accepts (``--method-arg KEY=VALUE`` / YAML ``method_kwargs``).
    """
    method, params, var_kw = _options(name)
    accepted = ", ".join(f"{k}={p.default!r}" for k, p in params.items())
    for key, value in kwargs.items():
        if key not in params:
            if var_kw:
                continue
            import difflib

            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: SSL method {method!r} has no option {key!r}{hint}; it accepts: {accepted}")
        problem = _type_problem(value, params[key])
        if problem:
            raise ValueError(
                f"{where}: option {key!r} of SSL method {method!r} {problem}, got {value!r} "
                f"(default {params[key].default!r})"
            )


def _planned_world_size() -> int:
    """Ranks of the run: the process group's when it exists, else ``torchrun``'s ``WORLD_SIZE`` (checks run before
    the group is made)."""
    if world_size() > 1:
        return world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_batch_size(
    name: str, batch_size: int, kwargs: Mapping[str, Any] | None = None, world: int | None = None
) -> None:
    """Refuse a batch size method ``name`` cannot learn from, before anything runs.

    The minimum is the method's :attr:`~monai_transfer.ssl.registry.MethodSpec.min_batch` (counted over the global
    batch, per-rank batch x ranks, where the loss gathers across ranks), and 2 per rank when its heads use batch
    norm (``head_norm="batch"``). The last incomplete batch is no concern: pretraining drops it (``drop_last``).

    Args:
        name: the method.
        batch_size: the batch per rank.
        kwargs: the method's options (``head_norm``, ``gather_distributed``).
        world: ranks (default: the process group's, or ``WORLD_SIZE``).

    Raises:
        ValueError: one sentence naming the method, the batch size and the minimum.
    """
    from monai_transfer.ssl.registry import get_method_spec

    spec = get_method_spec(name)
    kwargs = dict(kwargs or {})
    world = _planned_world_size() if world is None else int(world)
    batch = int(batch_size)
    _, params, _ = _options(spec.name)
    gathers = world > 1 and bool(kwargs.get("gather_distributed", "gather_distributed" in params))
    counted = batch * world if spec.min_batch_scope == "global" and gathers else batch
    per = f" per rank x {world} ranks = {counted}" if counted != batch else (" per rank" if world > 1 else "")
    if counted < spec.min_batch:
        least = -(-spec.min_batch // (world if counted != batch else 1))
        raise ValueError(
            f"{spec.name} cannot learn from a batch of {batch}{per}: {spec.min_batch_why or 'its loss needs more'}; "
            f"use --batch-size {least} or more (batch_size >= {least})"
        )
    head_norm = kwargs.get("head_norm", params["head_norm"].default if "head_norm" in params else None)
    if head_norm == "batch" and batch < 2:
        raise ValueError(
            f"{spec.name} cannot learn from a batch of {batch}{' per rank' if world > 1 else ''}: the batch norms of "
            "its heads need 2 samples or more per rank; use --batch-size 2 or more, or --method-arg head_norm=layer"
        )


def build_method(
    name: str,
    backbone: torch.nn.Module,
    seed: int = 0,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """The SSL method ``name`` around ``backbone``, its heads drawn from a generator seeded by ``seed``, on ``device``.

    Under ``torchrun`` with more than one rank, a method whose loss can gather negatives or batch statistics across
    ranks does so (``gather_distributed=True`` unless given): the loss then equals the single-process one.

    Raises:
        ValueError: an option the method does not take or of the wrong type (:func:`check_method_kwargs`).
    """
    from monai_transfer.ssl.registry import create_method

    check_method_kwargs(name, kwargs)
    _, params, _ = _options(name)
    if world_size() > 1 and "gather_distributed" in params:
        kwargs.setdefault("gather_distributed", True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seeded(seed, 1))
        method = create_method(name, backbone, **kwargs)
    return method.to(torch.device(device)) if device is not None else method


@dataclass
class PretrainData:
    """The unlabeled images of a run: ``items`` (``{"image": path}`` only), the ``section`` they came from and the
    datalist's file name (no folder: folder names can carry patient or site names)."""

    items: list[dict[str, Any]]
    section: str
    source: str
    datalist: str = field(default="", repr=False)

    def __len__(self) -> int:
        return len(self.items)


def load_images(datalist: str | os.PathLike, section: str | None = None) -> PretrainData:
    """The images of a datalist section: ``section``, or ``unlabeled`` when the datalist has it, else ``training``.

    Raises:
        FileNotFoundError: the datalist is missing.
        DatalistError: the section is missing (the sections present are named) or empty (said so), or an entry is
            malformed or points at a missing file (named).
    """
    from monai_transfer.data.datalist import DatalistError, load_datalist, load_datalist_file

    path = os.fspath(datalist)
    sections = load_datalist_file(path)
    present = [k for k, v in sections.items() if isinstance(v, list)]
    if section is None:
        section = "unlabeled" if "unlabeled" in sections else "training"
        if section not in sections:
            raise DatalistError(
                f"{path}: no section 'unlabeled' or 'training' to pretrain on; sections present: {present} "
                f"(choose one with --section)"
            )
    elif section not in sections:
        raise DatalistError(f"{path}: no section {section!r}; sections present: {present}")
    if not sections[section]:
        raise DatalistError(f"{path}: section {section!r} is empty (0 images); nothing to pretrain on")
    rows = load_datalist(path, key=section, required_keys=("image",))
    # only the image travels: labels or IDs in the datalist are not needed and must not reach logs
    return PretrainData([{"image": r["image"]} for r in rows], section, os.path.basename(path), datalist=path)


def intensity_transforms(spec: Mapping[str, Any] | None, keys: str = "image", in_channels: int = 1) -> list[Any]:
    """The transforms of an intensity spec (``monai_transfer.transforms.preprocessing``), instantiated."""
    from monai.bundle import ConfigParser

    from monai_transfer.transforms.preprocessing import intensity_components

    return list(ConfigParser({"t": intensity_components(spec, keys, in_channels)}).get_parsed_content("t"))


# -- checks before training ---------------------------------------------------------------------------------------
class ViewCheckError(ValueError):
    """The sampled pretraining views are constant or collapsed: the run would learn nothing."""


#: a share of voxels at one value at or above which an image counts as nearly constant
_FLAT_SHARE = 0.999


def _flatness(x: torch.Tensor, max_values: int = 1_000_000) -> tuple[bool, float]:
    """``(flat, value)``: whether ``x`` is constant or nearly so (``_FLAT_SHARE`` of its voxels at one value)."""
    v = torch.as_tensor(x).detach().float().reshape(-1)
    if v.numel() == 0:
        return True, 0.0
    if v.numel() > max_values:
        v = v[:: int(math.ceil(v.numel() / max_values))]
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi), abs(lo)):
        return True, lo
    values, counts = torch.unique(v, return_counts=True)
    i = int(counts.argmax())
    return float(counts[i]) / v.numel() >= _FLAT_SHARE, float(values[i])


def _suggest(spec: Mapping[str, Any]) -> str:
    name = spec.get("name")
    if name == "minmax":
        return "--intensity percentile (a percentile range over all voxels) or --intensity none"
    return (
        "--intensity minmax (each image's own minimum and maximum to [0, 1]; fits already-normalised or uint8 data), "
        "or --intensity percentile --intensity-arg lower=0.5 upper=99.5 (over all voxels)"
    )


def check_pretraining_data(
    data: PretrainData,
    loading: Sequence[Callable],
    intensity: Sequence[Callable],
    augmentation: Callable,
    intensity_spec: Mapping[str, Any] | None,
    batch_size: int,
    samples: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Check, before training, that the data can train anything; return what was checked.

    * enough images for one full batch per rank;
    * a sample of up to ``samples`` images (spread over the list): after the intensity mapping, at most half may be
      constant or nearly so (99.9 % of the voxels at one value), and at most half of their views may be constant.
      A mapping that collapses the images (an MR percentile preset on binary or mostly-empty uint8 data maps
      everything to 0) is named, with another to try; images that are constant before any mapping are named too.

    Args:
        data: the run's images (:func:`load_images`).
        loading: the transforms reading an image (before the intensity mapping).
        intensity: the intensity transforms.
        augmentation: the random view pipeline (reseeded with ``set_random_state``).
        intensity_spec: the spec behind ``intensity``, for the message.
        batch_size: per rank.
        samples: images sampled.
        seed: seeds the sampled views.

    Raises:
        ValueError: too few images for one batch.
        ViewCheckError: the sampled images or views are constant or collapsed.
    """
    from monai.transforms import Compose

    from monai_transfer.transforms.preprocessing import describe_intensity

    n, world = len(data), world_size()
    if n // world < int(batch_size):
        most = max(1, n // world)
        raise ValueError(
            f"{data.datalist or data.source}: {n} image(s) in section {data.section!r} make no full batch of "
            f"{batch_size}{f' per rank ({world} ranks)' if world > 1 else ''}; lower --batch-size (at most {most})"
        )
    spec = dict(intensity_spec or {})
    where = describe_intensity(spec) if spec else "none"
    picks = sorted({int(i) for i in np.linspace(0, n - 1, num=min(int(samples), n))})
    load, scale = Compose(list(loading)), Compose(list(intensity))
    raw_flat, flat, views_flat, n_views, examples = [], [], 0, 0, []
    for i in picks:
        item = data.items[i]
        name = os.path.basename(str(item["image"]))
        loaded = load(dict(item))
        raw = torch.as_tensor(loaded["image"])
        if not torch.isfinite(raw).all():
            raise ViewCheckError(f"{name}: the image holds NaN or infinite values; fix or remove it from the datalist")
        if _flatness(raw)[0]:
            raw_flat.append(name)
        normalised = scale(loaded)
        is_flat, value = _flatness(normalised["image"])
        if is_flat:
            flat.append(name)
            if len(examples) < 3:
                examples.append(f"{name}: {100 * _FLAT_SHARE:g} % or more of the voxels at {value:.4g}")
        augmentation.set_random_state(seed=(int(seed) + i) % 2**32)
        views = augmentation(dict(normalised))
        for key, view in views.items():
            if isinstance(view, torch.Tensor) and view.is_floating_point() and key != "mask" and view.ndim > 1:
                n_views += 1
                v = view.detach().float()
                views_flat += int(float(v.max() - v.min()) <= 1e-6 * max(1.0, float(v.abs().max())))
    checked = {"images": len(picks), "flat_images": len(flat), "views": n_views, "constant_views": views_flat}
    if len(raw_flat) * 2 > len(picks):
        raise ViewCheckError(
            f"{data.source}: {len(raw_flat)} of {len(picks)} sampled images are constant or nearly so as read "
            f"(e.g. {', '.join(raw_flat[:3])}), before any intensity mapping: there is nothing to learn from; check "
            f"the images and the datalist"
        )
    if len(flat) * 2 > len(picks) or (n_views and views_flat * 2 > n_views):
        raise ViewCheckError(
            f"{data.source}: the intensity mapping {where} collapses the images: {len(flat)} of {len(picks)} sampled "
            f"images are constant or nearly so after it ({'; '.join(examples) or 'their views are constant'}), and "
            f"{views_flat} of {n_views} views are constant, so pretraining would learn nothing. Choose a mapping that "
            f"fits the data: {_suggest(spec)} (YAML: intensity: {{name: minmax}}; bundle: --set intensity=...)"
        )
    logger.info("checked %d images and %d views with intensity %s: none collapsed", len(picks), n_views, where)
    return checked


# -- handlers ------------------------------------------------------------------------------------------------------
class EpochLosses:
    """Mean training loss per epoch (``losses``, also ``engine.state.metrics["epoch_loss"]``) and the range of the
    iteration losses within each epoch (``ranges``: ``[min, max]``); a stateful object for
    :class:`~monai_transfer.ssl.checkpoint.TrainingCheckpoint`, so a resumed run keeps the earlier epochs."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.ranges: list[list[float]] = []
        self.running: dict[str, float] = self._empty()

    @staticmethod
    def _empty() -> dict[str, float]:
        return {"sum": 0.0, "n": 0, "min": math.inf, "max": -math.inf}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_mean)

    def _accumulate(self, engine: Engine) -> None:
        value = float(engine.state.output["loss"])
        r = self.running
        r["sum"] += value
        r["n"] += 1
        r["min"], r["max"] = min(r["min"], value), max(r["max"], value)

    def _epoch_mean(self, engine: Engine) -> None:
        r = self.running
        self.losses.append(r["sum"] / max(r["n"], 1))
        self.ranges.append([r["min"], r["max"]])
        engine.state.metrics["epoch_loss"] = self.losses[-1]
        self.running = self._empty()

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "ranges": [list(r) for r in self.ranges], "running": dict(self.running)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.losses = [float(v) for v in state.get("losses", [])]
        self.ranges = [[float(a), float(b)] for a, b in state.get("ranges", [])]
        self.running = {**self._empty(), **dict(state.get("running", {}))}


def chance_loss(formula: str | None, method: torch.nn.Module, batch_size: int) -> float | None:
    """The chance value of a contrastive loss: ``formula`` (``MethodSpec.chance_loss``) evaluated with ``batch``
    (``batch_size``, times the number of ranks when the loss gathers across them), ``queue_size`` and ``temperature``
    (read from the method's ``criterion``) and ``log``."""
    if not formula:
        return None
    criterion = getattr(unwrap(method), "criterion", None)
    gathers = bool(getattr(criterion, "gather_distributed", False))
    names = {
        "log": math.log,
        "batch": int(batch_size) * (world_size() if gathers else 1),
        "queue_size": int(getattr(criterion, "queue_size", 0) or 0),
        "temperature": float(getattr(criterion, "temperature", 1.0)),
    }
    return float(eval(formula, {"__builtins__": {}}, names))  # noqa: S307 - a formula from the method registry


class ChanceLossMonitor:
    """Flag a contrastive loss that stays at its chance value: the embeddings then carry no information.

    At every epoch end, when every iteration loss of the last ``patience`` epochs lay within ``rtol`` (relative) of
    ``chance``, a warning is logged once and kept in ``warnings`` (and in ``result.json``). A run that learns slowly
    also starts near chance, but its iteration losses scatter around it; collapsed embeddings (constant views, a
    temperature far too high) give the chance value at every step. The state is that of :class:`EpochLosses`, so a
    resumed run decides the same.

    Args:
        losses: the run's :class:`EpochLosses`.
        formula: ``MethodSpec.chance_loss``; ``None`` disables the monitor.
        method: the SSL method (its ``criterion`` gives the temperature and queue size).
        batch_size: per rank.
        patience: epochs at chance before the run is flagged.
        rtol: relative distance from chance still counted as chance.
        warmup_epochs: epochs of learning-rate warm-up, not counted (a loss may rest at chance while the rate is
            tiny).
    """

    def __init__(
        self,
        losses: EpochLosses,
        formula: str | None,
        method: torch.nn.Module,
        batch_size: int,
        patience: int = 3,
        rtol: float = 0.01,
        warmup_epochs: float = 0.0,
    ) -> None:
        self.losses = losses
        self.formula = formula
        self.chance = chance_loss(formula, method, batch_size)
        self.patience = max(1, int(patience))
        self.rtol = float(rtol)
        self.skip = int(math.ceil(float(warmup_epochs or 0.0)))
        self.warnings: list[str] = []

    def attach(self, engine: Engine) -> None:
        if self.chance is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def stuck(self) -> bool:
        """Whether every iteration loss of the last ``patience`` epochs lay at chance."""
        last = self.losses.ranges[self.skip :][-self.patience :]
        if self.chance is None or len(last) < self.patience:
            return False
        tol = self.rtol * abs(self.chance)
        return all(abs(lo - self.chance) <= tol and abs(hi - self.chance) <= tol for lo, hi in last)

    def __call__(self, engine: Engine) -> None:
        if self.warnings or not self.stuck():
            return
        msg = (
            f"the loss has stayed at its chance value {self.chance:.4f} ({self.formula}) for {self.patience} epochs "
            f"(last {self.losses.losses[-1]:.4f}): the encoder is not learning. Check that the views are not "
            f"constant (the intensity mapping), lower the temperature or raise the learning rate"
        )
        self.warnings.append(msg)
        logger.warning(msg)


class LossProgressBar:
    """ignite's ``ProgressBar`` showing the loss, attachable from a config (``attach(engine)`` only)."""

    def __init__(self, persist: bool = False) -> None:
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar
        from monai.handlers import from_engine

        ProgressBar(persist=self.persist).attach(engine, output_transform=from_engine(["loss"], first=True))


def close_writers(handlers: Sequence[Any] | None) -> None:
    """Close the event writers of the handlers that hold one (``TensorBoardStatsHandler``)."""
    for h in handlers or ():
        close = getattr(h, "close", None)
        if callable(close) and hasattr(h, "_writer"):
            close()


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


# -- outputs -------------------------------------------------------------------------------------------------------
def plot_losses(path: str | os.PathLike, losses: Sequence[float], title: str) -> None:
    """The loss curve as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai_transfer.utils.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), list(losses), marker="o" if len(losses) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


class PretrainPublisher:
    """After training, on rank 0: ``encoder.pt`` (the exported encoder and its provenance), ``loss.png`` and
    ``result.json`` in ``output_dir``. Called with the trainer (``"$@train#publish(@train#trainer)"``); the summary
    is returned and kept as ``result``.

    Args:
        output_dir: the run's folder.
        method: the SSL method (possibly DDP-wrapped).
        data: the run's images (counted in the provenance; no paths).
        epoch_losses: the run's :class:`EpochLosses`.
        provenance: the static fields of the encoder's ``Provenance`` (its ``extra`` gains epochs, iterations,
            final loss); ``source_data`` may hold ``{images}``, ``{section}`` and ``{source}``.
        summary: static fields of ``result.json`` (method, backbone, intensity...).
        monitor: the kNN monitor, if any (its history goes to ``knn_accuracy``).
        chance: the :class:`ChanceLossMonitor`, if any (its value and warnings go to ``result.json``).
        device: the run's device; precision: the run's amp / layout / compile decision
            (``monai_transfer.engines.resolve_precision``), written into ``result.json`` with its reason.
        title: the loss plot's title.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        method: torch.nn.Module,
        data: PretrainData,
        epoch_losses: EpochLosses,
        provenance: Mapping[str, Any],
        summary: Mapping[str, Any],
        monitor: Any = None,
        chance: ChanceLossMonitor | None = None,
        device: Any = None,
        precision: Mapping[str, Any] | None = None,
        title: str = "",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.method = method
        self.data = data
        self.epoch_losses = epoch_losses
        self.provenance = dict(provenance)
        self.summary = dict(summary)
        self.monitor = monitor
        self.chance = chance
        self.device = device
        self.precision = dict(precision or {"amp": False})
        self.amp = bool(self.precision.get("amp"))
        self.title = title
        self.result: dict[str, Any] = {}
        self._t0: float | None = None
        self._start_iteration = 0

    def start(self, trainer: Engine) -> None:
        """Start the clock (the config's ``run`` calls this just before training, after any resume)."""
        self._t0 = time.perf_counter()
        self._start_iteration = int(trainer.state.iteration)

    def __call__(self, trainer: Engine) -> dict[str, Any]:
        from monai_transfer.engines.environment import environment_record
        from monai_transfer.utils.atomic import atomic_write_json
        from monai_transfer.weights import Provenance, save_pretrained

        seconds = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        if not is_main_process():
            return {}
        losses = list(self.epoch_losses.losses)
        st = trainer.state
        prov = dict(self.provenance)
        prov["source_data"] = str(prov.get("source_data", "")).format(
            images=len(self.data), section=self.data.section, source=self.data.source
        )
        prov["extra"] = {
            **dict(prov.get("extra") or {}),
            "epochs": int(st.epoch),
            "iterations": int(st.iteration),
            "final_epoch_loss": losses[-1] if losses else None,
        }
        encoder_path = save_pretrained(unwrap(self.method).export_encoder(), self.output_dir / "encoder.pt",
                                       Provenance.from_dict(prov))  # fmt: skip
        if losses:
            plot_losses(self.output_dir / "loss.png", losses, self.title)
        resumed_from = getattr(trainer, "resumed_from", None)
        result_file = self.output_dir / "result.json"
        if int(st.iteration) == self._start_iteration and result_file.is_file():
            # a finished run resumed again trains nothing: keep the time the training took
            import json

            seconds = float(json.loads(result_file.read_text()).get("seconds", 0.0))
        warnings = list(self.chance.warnings) if self.chance is not None else []
        self.result = {
            **self.summary,
            "images": len(self.data),
            "section": self.data.section,
            "epochs": int(st.epoch),
            "iterations": int(st.iteration),
            "epoch_losses": losses,
            "knn_accuracy": self.monitor.history if self.monitor is not None else None,
            "chance_loss": self.chance.chance if self.chance is not None else None,
            "warnings": warnings,
            "encoder": str(encoder_path),
            "resumed_from": resumed_from,
            "seconds": round(seconds, 2),
            "device": str(self.device),
            "world_size": world_size(),
            "amp": self.amp,
            "precision": self.precision,
            # CPU model and flags, threads, library versions: what the same numbers need (docs/finetune.md)
            "environment": environment_record(),
        }
        atomic_write_json(result_file, self.result)
        return self.result
