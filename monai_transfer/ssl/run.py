"""``pretrain``: one self-supervised run, from its options to published encoder weights, as a MONAI bundle config.

:func:`resolve_config` fills every option the user left unset with the method's recommended value;
:func:`~monai_transfer.ssl.bundle_config.pretrain_config` builds the run's bundle config from it; :func:`pretrain`
(or :func:`run_pretrain_config`, for a saved or hand-written config) applies ``--set`` overrides and runs it with
MONAI's ``ConfigWorkflow``. Writes into ``out`` only:

* ``configs/pretrain.json`` (+ ``metadata.json``): the config that ran (``python -m monai.bundle run`` repeats it);
  ``config.yaml``: the resolved options;
* ``checkpoints/last.pt`` (+ ``last.prev.pt``, ``last.json``): atomic training checkpoints for exact resume;
* ``encoder.pt``: the encoder's weights with a provenance record (its intensity mapping as data);
* ``result.json``: losses per epoch, kNN monitor history, warnings, timings; ``loss.png``: the loss curve;
* ``tensorboard/`` (and an MLflow run when ``mlflow_uri`` is set); ``bundle/``: a fine-tuning bundle of the encoder.

Everything is built and checked before training starts; a run that fails there leaves ``out`` as it found it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.ssl.bundle_config import CONFIG_NAME
from monai_transfer.ssl.config import PretrainConfig

__all__ = ["pretrain", "run_pretrain_config", "resolve_config", "PATH_FIELDS", "SCHEDULE_DEFAULTS"]


#: configuration fields holding local paths, left out of the provenance record published with the weights and of
#: shared trackers (folder names can carry patient or site names)
PATH_FIELDS: tuple[str, ...] = ("data", "out", "pretrained", "resume", "monitor_data", "mlflow_uri")

#: options taken from ``MethodSpec.defaults`` when the user gives none, with the fallback of methods that recommend
#: nothing (``None``: the option stays unset)
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "weight_decay_end": None,  # None: constant (the start value)
    "teacher_momentum": None,
    "teacher_temperature": None,
}


def _value(name: str, value: Any, epochs: int) -> Any:
    if isinstance(value, (tuple, list)):
        values = [float(v) for v in value]
        if name == "teacher_temperature" and len(values) == 3:
            values[2] = float(min(values[2], epochs))  # a warm-up never outlasts the run
        return values
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _check_view_kwargs(method: str, config: PretrainConfig) -> None:
    """An option the method's view recipe does not take is named now (its values are checked when the run builds the
    views, with the backbone's own values for the options a backbone family imposes)."""
    import inspect

    from monai_transfer.ssl.views import make_pretrain_transforms, make_views

    own = set(inspect.signature(make_pretrain_transforms).parameters)
    options = {k: v for k, v in config.view_kwargs.items() if k not in own}
    if not options:
        return
    try:
        make_views(method, config.spatial_dims, config.roi(), config.modality, **options)
    except TypeError as e:
        raise ValueError(f"view_kwargs: the view recipe of {method!r} does not take {sorted(options)} ({e})") from None
    except ValueError:
        pass


def resolve_config(config: PretrainConfig) -> PretrainConfig:
    """Fill the ``None`` fields from the method's recommendations (``MethodSpec.defaults``) and check the
    method/backbone pair and the method's options.

    Raises:
        ValueError: a required option is missing, the method does not fit the backbone, or a method option is
            unknown or of the wrong type (named, with the options the method accepts).
    """
    from monai_transfer.ssl.registry import check_method_backbone
    from monai_transfer.ssl.views import pretrain_intensity
    from monai_transfer.ssl.workflow import check_method_kwargs

    for name in ("method", "backbone", "data", "out"):
        if not getattr(config, name):
            raise ValueError(f"pretraining needs {name!r} (see `monai-transfer pretrain --help`)")
    spec = check_method_backbone(config.method, config.backbone, config.spatial_dims)
    check_method_kwargs(spec.name, config.method_kwargs)
    _check_view_kwargs(spec.name, config)
    values = config.to_dict()
    values["method"] = spec.name
    values["roi_size"] = list(config.roi())
    for name, fallback in SCHEDULE_DEFAULTS.items():
        if values[name] is None:
            values[name] = _value(name, spec.defaults.get(name, fallback), config.epochs)
    if values["weight_decay_end"] is None:
        values["weight_decay_end"] = values["weight_decay"]
    if values["warmup_epochs"] is None:
        values["warmup_epochs"] = min(10.0, 0.1 * config.epochs)
    if values["intensity"] is None:
        values["intensity"] = pretrain_intensity(config.modality)
    return PretrainConfig.from_dict(values, where="resolved config")


#: the outputs of a run, removed by ``overwrite`` before a new run starts in the same folder
_OUTPUTS = ("checkpoints", "tensorboard", "bundle", "encoder.pt", "result.json", "loss.png", "config.yaml",
            f"configs/{CONFIG_NAME}")  # fmt: skip


def _metadata(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``configs/metadata.json`` of a pretraining run (MONAI reads it into ``_meta_``)."""
    import monai
    import numpy
    import torch

    from monai_transfer import __version__

    method = raw.get("method", {}).get("name", "?") if isinstance(raw.get("method"), Mapping) else "?"
    backbone = raw.get("network_def", {}).get("name", "?") if isinstance(raw.get("network_def"), Mapping) else "?"
    return {
        "version": "0.1.0",
        "changelog": {"0.1.0": "pretraining run"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"monai_transfer": __version__},
        "name": f"{method} pretraining of {backbone}",
        "task": "self-supervised pretraining",
        "description": f"{method} self-supervised pretraining of a {backbone} encoder (monai_transfer)",
        "authors": "",
        "copyright": "",
    }


def _snapshot(out: Path) -> tuple[bool, set[Path], bytes | None]:
    saved = out / "configs" / CONFIG_NAME
    existing = set(out.rglob("*")) if out.exists() else set()
    return out.exists(), existing, saved.read_bytes() if saved.is_file() else None


def _undo(out: Path, snapshot: tuple[bool, set[Path], bytes | None]) -> None:
    """Remove what a run that failed before training wrote into ``out`` (and ``out`` itself if it made it)."""
    existed, before, saved = snapshot
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in sorted(set(out.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if saved is not None:
        (out / "configs" / CONFIG_NAME).write_bytes(saved)


def _refuse_or_clear(out: Path, resume: Any, overwrite: bool) -> None:
    last = out / "checkpoints" / "last.pt"
    if resume is not None or not last.is_file():
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} holds a pretraining run ({last}); continue it with --resume auto, choose another --out, or "
            f"replace it with --overwrite"
        )
    from monai_transfer.utils.distributed import is_main_process

    if is_main_process():
        for name in _OUTPUTS:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def run_pretrain_config(
    config: Mapping[str, Any] | str | os.PathLike,
    out: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    options: PretrainConfig | None = None,
    overwrite: bool | None = None,
) -> dict[str, Any]:
    """Run a pretraining bundle config (a dict or a file; ``out`` replaces its ``bundle_root``) and return the run's
    summary (``result.json``).

    ``options`` (the run's ``PretrainConfig``, when it was built from one) is saved as ``config.yaml``. A folder that
    holds a run is refused unless the config resumes it or ``overwrite`` (default ``options.overwrite``) is set.

    The config is saved as ``<out>/configs/pretrain.json`` and run by MONAI's ``ConfigWorkflow``. Everything is
    built and checked before training; a run that fails there leaves ``out`` as it found it.
    """
    import yaml

    from monai_transfer.engines.workflow import load_config, parse_overrides, run_config, unwrap_config_error
    from monai_transfer.utils.atomic import atomic_write_text
    from monai_transfer.utils.distributed import is_main_process

    raw = load_config(config)
    sets = parse_overrides(overrides)
    if out is not None:
        sets = {"bundle_root": os.fspath(out), **sets}
    folder = Path(str(sets.get("bundle_root", raw.get("bundle_root", "."))))
    if overwrite is None:
        overwrite = bool(options is not None and options.overwrite)
    _refuse_or_clear(folder, sets.get("resume", raw.get("resume")), overwrite)
    snapshot = _snapshot(folder)
    try:
        run = run_config(raw, folder, overrides=sets, name=CONFIG_NAME, meta=_metadata(raw), run=False)  # + checks
        run.get("train#resume")  # every component built, and the checkpoint to resume from loaded, before training
        if options is not None and is_main_process():
            values = {**options.to_dict(), "overwrite": False}  # repeating the run must not wipe it
            atomic_write_text(folder / "config.yaml", yaml.safe_dump(values, sort_keys=False))
    except BaseException as err:
        _undo(folder, snapshot)
        raise unwrap_config_error(err) from None
    try:
        run.workflow.run()
    except BaseException as err:
        raise unwrap_config_error(err) from None
    finally:
        run.workflow.finalize()
    return dict(run.get("train#publish").result)


def pretrain(
    config: PretrainConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Pretrain a backbone with a self-supervised method; save its encoder with provenance and a fine-tuning bundle.

    Runs the same way in one process and under ``torchrun`` (one process per device; ranks share the work, rank 0
    writes the outputs). A run killed at any point continues exactly with ``resume="auto"``.

    Args:
        config: a ``PretrainConfig`` or a mapping of its fields.
        overrides: ``id=value`` settings of the bundle config (``["epochs=3", "train#chance#patience=5"]``).
        fields: fields that replace those of ``config`` (``None`` values are ignored).

    Returns:
        The summary also written to ``<out>/result.json``.
    """
    if config is None:
        config = PretrainConfig()
    elif isinstance(config, Mapping):
        config = PretrainConfig.from_dict(config)
    from monai_transfer.ssl.bundle_config import pretrain_config

    config = resolve_config(config.merged(fields))
    return run_pretrain_config(pretrain_config(config), config.out, overrides, options=config)
