"""Self-supervised pretraining as a MONAI bundle config, and the function that runs it.

``pretrain_config(config)`` turns a resolved :class:`~monai_transfer.ssl.config.PretrainConfig` into a
``train.json``-style dict (``_target_`` components, ``@`` references) whose parts come from
:mod:`monai_transfer.ssl.workflow`; ``pretrain()`` checks the options, builds that config, applies ``--set``
overrides and runs it with MONAI's ``ConfigWorkflow`` (:func:`monai_transfer.engines.run_config`), the code path of
``python -m monai.bundle run``. The config is saved as ``<out>/configs/pretrain.json``, so

.. code-block:: bash

    python -m monai.bundle run --config_file runs/x/configs/pretrain.json   # the same run again
    monai-transfer pretrain --config runs/x/configs/pretrain.json --out runs/y --set epochs=200

Ids (``--set ID=VALUE`` reaches each; ``#`` separates levels):

===============================  ==================================================================================
``bundle_root``, ``output_dir``  the run's folder (checkpoints, ``encoder.pt``, logs)
``datalist``, ``data_section``   the unlabeled images (section ``null``: ``unlabeled``, else ``training``)
``seed``, ``epochs``,            scalars: ``lr``, ``min_lr``, ``weight_decay(_end)``, ``warmup_epochs``,
``batch_size``, ...              ``teacher_momentum``, ``teacher_temperature``, ``roi_size``, ``amp``...
``intensity``                    the intensity spec (``monai_transfer.transforms.preprocessing``): the transforms
                                 are built from it and it is recorded in the encoder's provenance
``device``, ``network_def``,     the device, the backbone, the SSL method (its options beside ``name``), the
``method``, ``network``,         DDP-wrapped method, the optimizer
``optimizer``
``train#data``, ``#loading``,    the images; reading; ``intensity`` as transforms; the method's random views;
``#intensity``, ``#augmentation``  ``#dataset`` (each sample's views a pure function of seed, epoch and index),
``#dataset``, ``#dataloader``    ``#sampler``, ``#dataloader``
``train#check``                  before training: enough images for a batch; the views are not collapsed
``train#handlers``               schedules, epoch losses, chance-loss flag, kNN monitor, logs, checkpoints
``train#trainer``                the ``SSLTrainer``; ``train#resume`` continues it; ``train#publish`` writes
                                 ``encoder.pt``, ``loss.png``, ``result.json``; ``finetune_bundle`` the bundle
``initialize``, ``run``,         process group and checks; resume, train, publish; close writers and the group
``finalize``
===============================  ==================================================================================
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.ssl.config import PretrainConfig

__all__ = ["CONFIG_NAME", "pretrain_config", "pretrain", "run_pretrain_config", "is_bundle_config", "finetune_bundle"]

logger = logging.getLogger("monai_transfer.ssl")

#: file name of the saved config in ``<out>/configs/``
CONFIG_NAME = "pretrain.json"

_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "adamw": {"_target_": "torch.optim.AdamW"},
    "sgd": {"_target_": "torch.optim.SGD", "momentum": 0.9},
}
_MODALITY_NAMES = {"ct": "CT", "mr": "MR", "xr": "radiograph"}
_FROM_LOSS = "$monai.handlers.from_engine(['loss'], first=True)"
_NOT_MAIN = "$not monai_transfer.utils.distributed.is_main_process()"
_WF = "monai_transfer.ssl.workflow"
#: the outputs of a run, removed by ``overwrite`` before a new run starts in the same folder
_OUTPUTS = ("checkpoints", "tensorboard", "bundle", "encoder.pt", "result.json", "loss.png", "config.yaml",
            f"configs/{CONFIG_NAME}")  # fmt: skip


def _handlers(config: PretrainConfig, spec: Any) -> list[Any]:
    from monai_transfer.ssl.run import PATH_FIELDS

    handlers: list[Any] = ["@train#schedule", "@train#epoch_losses"]
    if spec.chance_loss:
        handlers.append("@train#chance")
    if config.monitor_data:
        handlers.append("@train#monitor")  # before the checkpoint that stores its history
    # its own logger: MONAI's StatsHandler makes the logger it is given print to stdout and stop propagating
    handlers.append({"_target_": "StatsHandler", "_disabled_": _NOT_MAIN, "name": f"{logger.name}.train",
                     "tag_name": "loss", "output_transform": _FROM_LOSS, "iteration_log": False})  # fmt: skip
    if config.tensorboard:
        from monai.utils import optional_import

        if optional_import("torch.utils.tensorboard", name="SummaryWriter")[1]:
            handlers.append({"_target_": "TensorBoardStatsHandler", "_disabled_": _NOT_MAIN, "tag_name": "loss",
                             "log_dir": "$@output_dir + '/tensorboard'", "output_transform": _FROM_LOSS})  # fmt: skip
        else:
            logger.warning("TensorBoard logging is off: the tensorboard package is not installed")
    if config.mlflow_uri:
        params = {
            k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str)) and k not in PATH_FIELDS
        }
        handlers.append({"_target_": "MLFlowHandler", "_disabled_": _NOT_MAIN, "tracking_uri": config.mlflow_uri,
                         "output_transform": _FROM_LOSS, "experiment_name": "monai_transfer_pretrain",
                         "run_name": f"{config.method}-{config.backbone}-{config.spatial_dims}d-seed{config.seed}",
                         "experiment_param": params, "tag_name": "loss"})  # fmt: skip
    if config.progress:
        handlers.append({"_target_": f"{_WF}.LossProgressBar", "_disabled_": _NOT_MAIN})
    handlers.append({"_target_": "monai_transfer.ssl.checkpoint.TrainingCheckpoint", "_disabled_": _NOT_MAIN,
                     "save_dir": "$@output_dir + '/checkpoints'", "every": "@checkpoint_every",
                     "config": {"method": "@method#name", "backbone": "@network_def#name", "seed": "@seed",
                                "epochs": "@epochs", "batch_size": "@batch_size"},
                     "objects": "@train#checkpoint_objects"})  # fmt: skip
    return handlers


def pretrain_config(config: PretrainConfig) -> dict[str, Any]:
    """The bundle config (a dict) of the pretraining run ``config`` describes.

    Method- and family-specific values come from the registries as data: the method's recommended optimiser
    settings (``MethodSpec.defaults``, through :func:`~monai_transfer.ssl.run.resolve_config`), the view options a
    backbone family imposes (``MethodSpec.view_defaults``), the backbone options of a family
    (``ssl.registry.BACKBONE_DEFAULTS``) and the loss's chance value (``MethodSpec.chance_loss``).
    """
    from monai_transfer.networks.registry import get_backbone_config
    from monai_transfer.ssl.registry import BACKBONE_DEFAULTS, get_method_spec
    from monai_transfer.ssl.run import PATH_FIELDS, resolve_config
    from monai_transfer.transforms.preprocessing import describe_intensity

    config = resolve_config(config)
    spec = get_method_spec(config.method)
    family = get_backbone_config(config.backbone).family
    backbone_kwargs = {**BACKBONE_DEFAULTS.get(family, {}), **config.backbone_kwargs}
    views = {**spec.view_defaults.get(family, {}), **config.view_kwargs}
    cache = config.cache
    options = {k: v for k, v in config.to_dict().items() if k not in PATH_FIELDS}
    return {
        "imports": ["$import math", "$import torch", "$import monai", "$import monai_transfer",
                    f"$import {_WF}", "$import monai_transfer.ssl.distributed",
                    "$import monai_transfer.bundle.templates.pretrain"],  # fmt: skip
        "bundle_root": config.out,
        "output_dir": "@bundle_root",
        "datalist": config.data,
        "data_section": config.section,
        "seed": config.seed,
        "spatial_dims": config.spatial_dims,
        "in_channels": config.in_channels,
        "roi_size": list(config.roi()),
        "modality": config.modality,
        "intensity": dict(config.intensity or {}),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
        "lr": config.lr,
        "min_lr": config.min_lr,
        "warmup_epochs": config.warmup_epochs,
        "weight_decay": config.weight_decay,
        "weight_decay_end": config.weight_decay_end,
        "teacher_momentum": config.teacher_momentum,
        "teacher_temperature": config.teacher_temperature,
        "grad_clip": config.grad_clip,
        "checkpoint_every": config.checkpoint_every,
        "resume": config.resume,
        # True when this run started the process group (under torchrun), so that it also ends it
        "owns_group": "$not monai_transfer.ssl.distributed.is_distributed() and "
        "monai_transfer.ssl.distributed.init_distributed()",
        "device": {"_target_": f"{_WF}.run_device", "device": config.device},
        "amp": "$@device.type == 'cuda'" if config.amp is None else bool(config.amp),
        "network_def": {"_target_": f"{_WF}.build_backbone", "name": config.backbone, "spatial_dims": "@spatial_dims",
                        "in_channels": "@in_channels", "seed": "@seed", "pretrained": config.pretrained,
                        **backbone_kwargs},  # fmt: skip
        "method": {"_target_": f"{_WF}.build_method", "name": spec.name, "backbone": "@network_def", "seed": "@seed",
                   "device": "@device", **config.method_kwargs},  # fmt: skip
        "network": "$monai_transfer.ssl.distributed.wrap_ddp(@method, @device)",
        "optimizer": {**_OPTIMIZERS[str(config.optimizer)], "params": "$@method.parameter_groups(@weight_decay)",
                      "lr": "@lr"},  # fmt: skip
        "train": {
            "data": {"_target_": f"{_WF}.load_images", "datalist": "@datalist", "section": "@data_section"},
            "loading": [{"_target_": "LoadImaged", "keys": "image", "image_only": True, "ensure_channel_first": True},
                        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"}],  # fmt: skip
            "intensity": f"${_WF}.intensity_transforms(@intensity, 'image', @in_channels)",
            "preprocessing": {"_target_": "Compose", "transforms": "$@train#loading + @train#intensity"},
            "augmentation": {"_target_": "monai_transfer.ssl.views.make_pretrain_transforms", "method": spec.name,
                             "spatial_dims": "@spatial_dims", "roi_size": "@roi_size", "modality": "@modality",
                             "load": False, "intensity": None, **views},  # fmt: skip
            # --cache: the deterministic head runs once per image; without it, the same steps run per sample
            "transforms": "@train#augmentation" if cache else {
                "_target_": "Compose",
                "transforms": "$@train#loading + @train#intensity + list(@train#augmentation.transforms)"},
            "dataset": {"_target_": "monai_transfer.ssl.data.SeededViewDataset", "data": "$@train#data.items",
                        "transform": "@train#transforms",
                        "cache_transform": "@train#preprocessing" if cache else None},  # fmt: skip
            "sampler": {"_target_": "monai_transfer.ssl.data.SeededSampler", "data_source": "@train#dataset",
                        "seed": "@seed", "drop_last": True},  # fmt: skip
            "dataloader": {"_target_": "torch.utils.data.DataLoader", "dataset": "@train#dataset",
                           "batch_size": "@batch_size", "sampler": "@train#sampler", "num_workers": "@num_workers",
                           "drop_last": True, "collate_fn": "$monai.data.utils.list_data_collate",
                           "generator": "$torch.Generator().manual_seed(@seed)"},  # fmt: skip
            "check": {"_target_": f"{_WF}.check_pretraining_data", "data": "@train#data", "loading": "@train#loading",
                      "intensity": "@train#intensity", "augmentation": "@train#augmentation",
                      "intensity_spec": "@intensity", "batch_size": "@batch_size", "seed": "@seed"},  # fmt: skip
            "schedule": {"_target_": "monai_transfer.ssl.schedules.ScheduleHandler",
                         "total_steps": "$len(@train#dataloader) * @epochs", "epoch_length": "$len(@train#dataloader)",
                         "lr": ["@lr", "@min_lr"],
                         "warmup_steps": "$int(round(@warmup_epochs * len(@train#dataloader)))",
                         "weight_decay": ["@weight_decay", "@weight_decay_end"],
                         "teacher_momentum": "@teacher_momentum", "teacher_temperature": "@teacher_temperature"},
            "epoch_losses": {"_target_": f"{_WF}.EpochLosses"},
            "chance": {"_target_": f"{_WF}.ChanceLossMonitor", "losses": "@train#epoch_losses",
                       "formula": spec.chance_loss, "method": "@method", "batch_size": "@batch_size",
                       "patience": 3, "rtol": 0.01, "warmup_epochs": "@warmup_epochs"},
            "monitor_sets": {"_target_": "monai_transfer.ssl.monitor.monitor_sets", "datalist": config.monitor_data,
                             "spatial_dims": "@spatial_dims", "roi_size": "@roi_size", "intensity": "@intensity"},
            "monitor": {"_target_": "monai_transfer.ssl.monitor.KNNMonitor", "method": None,
                        "train_data": "$@train#monitor_sets[0]", "val_data": "$@train#monitor_sets[1]",
                        "every": config.monitor_every, "k": config.monitor_k},
            "checkpoint_objects": {"epoch_losses": "@train#epoch_losses",
                                   **({"monitor": "@train#monitor"} if config.monitor_data else {})},
            "handlers": _handlers(config, spec),
            "trainer": {"_target_": "monai_transfer.ssl.trainer.SSLTrainer", "device": "@device",
                        "max_epochs": "@epochs", "train_data_loader": "@train#dataloader", "method": "@network",
                        "optimizer": "@optimizer", "amp": "@amp",
                        # asked-for mixed precision off CUDA means bfloat16 (float16 autocast is CUDA-only)
                        "amp_dtype": "$torch.bfloat16 if @amp and @device.type != 'cuda' else None",
                        "grad_clip_norm": "@grad_clip", "train_handlers": "@train#handlers"},
            "resume": {"_target_": f"{_WF}.resume_run", "trainer": "@train#trainer", "resume": "@resume",
                       "checkpoint_dir": "$@output_dir + '/checkpoints'", "objects": "@train#checkpoint_objects"},
            "publish": {"_target_": f"{_WF}.PretrainPublisher", "output_dir": "@output_dir", "method": "@method",
                        "data": "@train#data", "epoch_losses": "@train#epoch_losses", "provenance": "@provenance",
                        "summary": {"method": spec.name, "backbone": config.backbone, "spatial_dims": "@spatial_dims",
                                    "intensity": "@intensity"},
                        "monitor": "@train#monitor" if config.monitor_data else None,
                        "chance": "@train#chance" if spec.chance_loss else None, "device": "@device", "amp": "@amp",
                        "title": f"{spec.name} / {config.backbone} {config.spatial_dims}D"},  # fmt: skip
        },
        "provenance": {
            "method": f"{spec.name} (self-supervised, monai_transfer)",
            "source_data": "{images} unlabeled images, section {section!r} of {source}",
            "modality": _MODALITY_NAMES[config.modality],
            "input_size": "@roi_size",
            "intensity_normalisation": f"monai_transfer intensity {describe_intensity(config.intensity)}",
            "preprocessing": {"intensity": "@intensity"},
            "backbone_name": config.backbone,
            "citation": spec.paper,
            "notes": (
                f"initialised from {os.path.basename(config.pretrained)}"
                if config.pretrained
                else "random initialisation"
            ),
            # paths stay out of published weights: folder names can carry patient or site names
            "extra": {"seed": "@seed", "pretraining_config": options},
        },
        # the fine-tuning bundle written for the encoder (monai_transfer.bundle.create_bundle's arguments)
        "finetune_bundle": {
            "backbone": config.backbone,
            "task": "segmentation",
            "spatial_dims": "@spatial_dims",
            "in_channels": "@in_channels",
            "num_classes": 2,
            "labels": ["background", "foreground"],
            "backbone_kwargs": dict(backbone_kwargs),
            "modality": _MODALITY_NAMES[config.modality],
        },
        "initialize": ["$@owns_group", "$@train#check"],
        "run": [
            "$@train#resume",
            "$@train#publish.start(@train#trainer)",
            "$@train#trainer.run()",
            "$@train#publish(@train#trainer)",
            "$monai_transfer.bundle.templates.pretrain.finetune_bundle(@train#publish, @finetune_bundle)",
        ],
        "finalize": [
            f"${_WF}.close_writers(@train#handlers)",
            "$monai_transfer.ssl.distributed.cleanup() if @owns_group else None",
        ],
    }


def finetune_bundle(publisher: Any, arguments: Mapping[str, Any] | None) -> str | None:
    """Write ``<out>/bundle/``, a fine-tuning bundle starting from the published encoder (rank 0), and add it to the
    run's ``result.json``. ``arguments`` are ``create_bundle``'s (``null`` in the config: no bundle).

    A bundle that cannot be written (a backbone without a segmentation decoder...) is a warning in the log and in
    ``result.json``: the encoder, the run's product, is already saved.
    """
    from monai_transfer.utils.atomic import atomic_write_json
    from monai_transfer.utils.distributed import is_main_process

    result = getattr(publisher, "result", None)
    if not arguments or not result or not is_main_process():
        return None
    out = Path(result["encoder"]).parent / "bundle"
    try:
        from monai_transfer.bundle import create_bundle

        path: str | None = str(create_bundle(out, pretrained=result["encoder"], overwrite=True, **dict(arguments)))
    except Exception as e:  # noqa: BLE001 - the encoder is written; the bundle is a convenience on top
        path = None
        result.setdefault("warnings", []).append(f"no fine-tuning bundle written: {type(e).__name__}: {e}")
        logger.warning("no fine-tuning bundle written for %s: %s", result["encoder"], e)
    result["bundle"] = path
    atomic_write_json(Path(result["encoder"]).parent / "result.json", result)
    return path


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


def is_bundle_config(values: Mapping[str, Any]) -> bool:
    """Whether a loaded YAML/JSON file is a bundle config (``run`` list, ``_target_`` components) rather than a file
    of :class:`PretrainConfig` options."""
    return isinstance(values, Mapping) and not set(values) <= set(PretrainConfig.field_names())


#: how MONAI's config parser wraps an exception raised while it builds a component or evaluates an expression
_WRAPPED = ("Failed to instantiate component", "Failed to evaluate")


def _unwrapped(err: BaseException) -> BaseException:
    """The error MONAI's parser wrapped (a ``FileNotFoundError`` of a missing checkpoint, a ``ValueError`` of a bad
    option, ``NonFiniteLossError``...), so that callers and the command line see what happened."""
    while isinstance(err, RuntimeError) and str(err).startswith(_WRAPPED) and err.__cause__ is not None:
        err = err.__cause__
    return err


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
) -> dict[str, Any]:
    """Run a pretraining bundle config (a dict or a file; ``out`` replaces its ``bundle_root``) and return the run's
    summary (``result.json``).

    The config is saved as ``<out>/configs/pretrain.json`` and run by MONAI's ``ConfigWorkflow``. Everything is
    built and checked before training; a run that fails there leaves ``out`` as it found it.
    """
    import yaml

    from monai_transfer.engines.workflow import load_config, parse_overrides, run_config
    from monai_transfer.utils.atomic import atomic_write_text
    from monai_transfer.utils.distributed import is_main_process

    raw = load_config(config)
    sets = parse_overrides(overrides)
    if out is not None:
        sets = {"bundle_root": os.fspath(out), **sets}
    folder = Path(str(sets.get("bundle_root", raw.get("bundle_root", "."))))
    _refuse_or_clear(folder, sets.get("resume", raw.get("resume")), bool(options is not None and options.overwrite))
    snapshot = _snapshot(folder)
    try:
        run = run_config(raw, folder, overrides=sets, name=CONFIG_NAME, meta=_metadata(raw), run=False)  # + checks
        run.get("train#resume")  # every component built, and the checkpoint to resume from loaded, before training
        if options is not None and is_main_process():
            values = {**options.to_dict(), "overwrite": False}  # repeating the run must not wipe it
            atomic_write_text(folder / "config.yaml", yaml.safe_dump(values, sort_keys=False))
    except BaseException as err:
        _undo(folder, snapshot)
        raise _unwrapped(err) from None
    try:
        run.workflow.run()
    except BaseException as err:
        raise _unwrapped(err) from None
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
    from monai_transfer.ssl.run import resolve_config

    config = resolve_config(config.merged(fields))
    return run_pretrain_config(pretrain_config(config), config.out, overrides, options=config)
