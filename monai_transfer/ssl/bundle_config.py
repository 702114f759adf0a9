"""Self-supervised pretraining as a MONAI bundle config.

``pretrain_config(config)`` turns a resolved :class:`~monai_transfer.ssl.config.PretrainConfig` into a
``train.json``-style dict (``_target_`` components, ``@`` references) whose parts come from
``monai_transfer.ssl.build``, ``images``, ``checks``, ``handlers``, ``resume`` and ``publish``;
:func:`monai_transfer.ssl.run.pretrain` checks the options, builds that config,
applies ``--set`` overrides and runs it with MONAI's ``ConfigWorkflow`` (:func:`monai_transfer.engines.run_config`),
the code path of ``python -m monai.bundle run``. ``monai_transfer.bundle.templates.pretrain`` re-exports it beside
the other bundle templates. The config is saved as ``<out>/configs/pretrain.json``, so

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

The last step of ``run`` writes the fine-tuning bundle of the encoder with
``monai_transfer.bundle.templates.pretrain.finetune_bundle`` (``create_bundle``'s arguments are the config's
``finetune_bundle``; ``null`` writes none). The config names that function as data; this module imports nothing from
the bundle layer above it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from monai_transfer.engines.precision import normalize_choice
from monai_transfer.ssl.config import PretrainConfig

__all__ = ["CONFIG_NAME", "pretrain_config", "is_bundle_config"]

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
_SSL = "monai_transfer.ssl"


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
        handlers.append({"_target_": f"{_SSL}.handlers.LossProgressBar", "_disabled_": _NOT_MAIN})
    # saves only (resumed by ssl.resume.resume_run before run(), also mid-epoch), on rank 0, the method under "method"
    handlers.append({"_target_": "monai_transfer.engines.RunCheckpoint", "_disabled_": _NOT_MAIN,
                     "save_dir": "$@output_dir + '/checkpoints'", "resume": None, "every": "@checkpoint_every",
                     "module_key": "method", "every_rank": False,
                     "config": {"method": "@method#name", "backbone": "@network_def#name", "seed": "@seed",
                                "epochs": "@epochs", "batch_size": "@batch_size"},
                     "objects": "@train#checkpoint_objects", "keep_previous": "@keep_previous_checkpoint"})  # fmt: skip
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
                    f"$import {_SSL}.images", f"$import {_SSL}.handlers", "$import monai_transfer.engines.distributed",
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
        "keep_previous_checkpoint": bool(config.keep_previous),
        "resume": config.resume,
        # True when this run started the process group (under torchrun), so that it also ends it
        "owns_group": "$not monai_transfer.engines.distributed.is_distributed() and "
        "monai_transfer.engines.distributed.init_distributed()",
        "device": {"_target_": f"{_SSL}.build.run_device", "device": config.device},
        # "auto": CUDA AMP; on CPU bfloat16 only where a probe of the backbone measures that it pays
        "amp": normalize_choice(config.amp),
        "channels_last": normalize_choice(config.channels_last, "channels_last"),
        "compile": normalize_choice(config.compile, "compile"),
        "precision": {"_target_": "monai_transfer.engines.resolve_precision", "amp": "@amp", "device": "@device",
                      "network": "@network_def", "spatial_dims": "@spatial_dims", "in_channels": "@in_channels",
                      "input_size": "@roi_size", "batch_size": "@batch_size", "channels_last": "@channels_last",
                      "compile": "@compile", "record": "$@output_dir + '/checkpoints/precision.json'",
                      "resume": "@resume"},  # fmt: skip
        "network_def": {"_target_": f"{_SSL}.build.build_backbone", "name": config.backbone,
                        "spatial_dims": "@spatial_dims", "in_channels": "@in_channels", "seed": "@seed",
                        "pretrained": config.pretrained,
                        **backbone_kwargs},  # fmt: skip
        "method": {"_target_": f"{_SSL}.build.build_method", "name": spec.name, "seed": "@seed",
                   "backbone": "$monai_transfer.engines.prepare_network(@network_def, @precision, @spatial_dims)",
                   "device": "@device", **config.method_kwargs},  # fmt: skip
        # the heads and decoders get the backbone's bfloat16 convolution guard too (a no-op outside CPU bfloat16)
        "network": "$monai_transfer.engines.distributed.wrap_ddp(monai_transfer.engines.guard_bf16_convs(@method, "
        "@precision), @device)",
        "optimizer": {**_OPTIMIZERS[str(config.optimizer)], "params": "$@method.parameter_groups(@weight_decay)",
                      "lr": "@lr"},  # fmt: skip
        "train": {
            "data": {"_target_": f"{_SSL}.images.load_images", "datalist": "@datalist", "section": "@data_section"},
            "loading": [{"_target_": "monai_transfer.transforms.checks.ReadImaged", "keys": "image", "image_only": True,
                         "ensure_channel_first": True},
                        # every image, not only the sample the data check looks at: a NaN is named with its file
                        {"_target_": "monai_transfer.transforms.checks.CheckFinited", "keys": "image"},
                        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"}],  # fmt: skip
            "intensity": f"${_SSL}.images.intensity_transforms(@intensity, 'image', @in_channels)",
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
            "sampler": {"_target_": "monai_transfer.engines.EpochSampler", "data_source": "@train#dataset",
                        "seed": "@seed", "drop_last": True, "sample_seeds": True},  # fmt: skip
            "dataloader": {"_target_": "torch.utils.data.DataLoader", "dataset": "@train#dataset",
                           "batch_size": "@batch_size", "sampler": "@train#sampler", "num_workers": "@num_workers",
                           "drop_last": True, "collate_fn": "$monai.data.utils.list_data_collate",
                           "generator": "$torch.Generator().manual_seed(@seed)"},  # fmt: skip
            "check": {"_target_": f"{_SSL}.checks.check_pretraining_data", "data": "@train#data",
                      "loading": "@train#loading", "intensity": "@train#intensity",
                      "augmentation": "@train#augmentation", "intensity_spec": "@intensity",
                      "batch_size": "@batch_size", "seed": "@seed"},  # fmt: skip
            "schedule": {"_target_": "monai_transfer.ssl.schedules.ScheduleHandler",
                         "total_steps": "$len(@train#dataloader) * @epochs", "epoch_length": "$len(@train#dataloader)",
                         "lr": ["@lr", "@min_lr"],
                         "warmup_steps": "$int(round(min(@warmup_epochs, @epochs / 2) * len(@train#dataloader)))",
                         "weight_decay": ["@weight_decay", "@weight_decay_end"],
                         "teacher_momentum": "@teacher_momentum", "teacher_temperature": "@teacher_temperature"},
            "epoch_losses": {"_target_": f"{_SSL}.handlers.EpochLosses"},
            "chance": {"_target_": f"{_SSL}.handlers.ChanceLossMonitor", "losses": "@train#epoch_losses",
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
                        "optimizer": "@optimizer", "precision": "@precision",
                        "grad_clip_norm": "@grad_clip", "train_handlers": "@train#handlers"},
            "resume": {"_target_": f"{_SSL}.resume.resume_run", "trainer": "@train#trainer", "resume": "@resume",
                       "checkpoint_dir": "$@output_dir + '/checkpoints'", "objects": "@train#checkpoint_objects"},
            "publish": {"_target_": f"{_SSL}.publish.PretrainPublisher", "output_dir": "@output_dir",
                        "method": "@method", "data": "@train#data", "epoch_losses": "@train#epoch_losses",
                        "provenance": "@provenance",
                        "summary": {"method": spec.name, "backbone": config.backbone, "spatial_dims": "@spatial_dims",
                                    "intensity": "@intensity"},
                        "monitor": "@train#monitor" if config.monitor_data else None,
                        "chance": "@train#chance" if spec.chance_loss else None, "device": "@device",
                        "precision": "@precision",
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
            f"${_SSL}.handlers.close_writers(@train#handlers)",
            "$monai_transfer.engines.distributed.cleanup() if @owns_group else None",
        ],
    }


def is_bundle_config(values: Mapping[str, Any]) -> bool:
    """Whether a loaded YAML/JSON file is a bundle config (a ``run`` list, ``_target_`` components) rather than a file
    of :class:`PretrainConfig` options (whose unknown keys are then named as such, not run)."""
    if not isinstance(values, Mapping):
        return False
    return "run" in values or any(isinstance(v, Mapping) and "_target_" in v for v in values.values())
