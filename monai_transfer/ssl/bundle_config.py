"""Self-supervised pretraining as a MONAI bundle config.

``resolve_config(config)`` fills the options a user left unset with the method's recommendations;
``pretrain_config(config)`` renders the resolved :class:`~monai_transfer.engines.specs.PretrainSpec` into a
``train.json``-style dict (``_target_`` components, ``@`` references) from the JSON template
``ssl/templates/pretrain.json`` (and its optional handlers, ``pretrain_handlers.json``), whose parts come from
``monai_transfer.ssl.build``, ``images``, ``checks``, ``handlers``, ``resume`` and ``publish``;
:func:`monai_transfer.ssl.run.pretrain` checks the options, builds that config,
applies ``--set`` overrides and runs it with MONAI's ``ConfigWorkflow`` (:func:`monai_transfer.engines.run_config`),
the code path of ``python -m monai.bundle run``. The config is saved as ``<out>/configs/pretrain.json``, so

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
                                 ``encoder.pt``, ``loss.png``, ``result.json``; ``train#inferer``: MONAI's train
                                 property table asks for one (the trainer runs the method's own forward)
``finetune_bundle``              ``create_bundle``'s arguments for a fine-tuning bundle of the encoder
``initialize``, ``run``,         process group and checks; resume, train, publish; close writers and the group
``finalize``
===============================  ==================================================================================

The config ends with the published encoder: writing its fine-tuning bundle is the bundle layer's step, which a
caller that wants one adds (``monai_transfer.bundle.templates.pretrain.pretrain_config``: this config plus that
step; the command line's ``pretrain`` and the pretraining bundles use it). Nothing here names a layer above ``ssl``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from monai_transfer.engines.precision import normalize_choice
from monai_transfer.engines.specs.pretrain import PretrainSpec
from monai_transfer.engines.templates import render

__all__ = ["CONFIG_NAME", "pretrain_config", "is_bundle_config", "resolve_config", "PATH_FIELDS", "SCHEDULE_DEFAULTS"]

logger = logging.getLogger("monai_transfer.ssl")

#: file name of the saved config in ``<out>/configs/``
CONFIG_NAME = "pretrain.json"

#: configuration fields holding local paths, left out of the provenance record published with the weights and of
#: shared trackers (folder names can carry patient or site names)
PATH_FIELDS: tuple[str, ...] = ("datalist", "out_dir", "pretrained", "resume", "monitor_data", "mlflow_uri")

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

#: the package of the templates rendered here (``pretrain.json`` and its optional ``pretrain_handlers.json``)
_TEMPLATES = "monai_transfer.ssl.templates"
#: optimizer name -> its class (``pretrain.json`` holds SGD's momentum, dropped for AdamW)
_OPTIMIZERS = {"adamw": "torch.optim.AdamW", "sgd": "torch.optim.SGD"}
_MODALITY_NAMES = {"ct": "CT", "mr": "MR", "xr": "radiograph"}
#: the run config's scalars, set from the options of the same name
_SCALARS = (
    "data_section",
    "seed",
    "spatial_dims",
    "in_channels",
    "modality",
    "epochs",
    "batch_size",
    "num_workers",
    "lr",
    "min_lr",
    "warmup_epochs",
    "weight_decay",
    "weight_decay_end",
    "teacher_momentum",
    "teacher_temperature",
    "grad_clip",
    "checkpoint_every",
)


def _value(name: str, value: Any, epochs: int) -> Any:
    if isinstance(value, (tuple, list)):
        values = [float(v) for v in value]
        if name == "teacher_temperature" and len(values) == 3:
            values[2] = float(min(values[2], epochs))  # a warm-up never outlasts the run
        return values
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _check_view_kwargs(method: str, config: PretrainSpec) -> None:
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


def resolve_config(config: PretrainSpec) -> PretrainSpec:
    """Fill the ``None`` fields from the method's recommendations (``MethodSpec.defaults``) and check the
    method/backbone pair and the method's options.

    Raises:
        ValueError: a required option is missing, the method does not fit the backbone, or a method option is
            unknown or of the wrong type (named, with the options the method accepts).
    """
    from monai_transfer.ssl.checks import check_batch_size, check_method_kwargs
    from monai_transfer.ssl.registry import check_method_backbone
    from monai_transfer.ssl.views import pretrain_intensity

    for name, flag in (("method", "--method"), ("backbone", "--backbone"), ("datalist", "--data"), ("out_dir", "--out")):
        if not getattr(config, name):
            raise ValueError(f"pretraining needs {name!r} ({flag}; see `monai-transfer pretrain --help`)")
    spec = check_method_backbone(config.method, config.backbone, config.spatial_dims)
    check_method_kwargs(spec.name, config.method_kwargs)
    check_batch_size(spec.name, config.batch_size, config.method_kwargs)
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
    return PretrainSpec.from_mapping(values, "resolved config")


def _handlers(config: PretrainSpec, spec: Any) -> list[Any]:
    """``train#handlers``: the named handlers of ``pretrain_handlers.json`` that this run uses, in that file's order
    (the kNN monitor before the checkpoint that stores its history)."""
    tensorboard = bool(config.tensorboard)
    if tensorboard:
        from monai.utils import optional_import

        tensorboard = optional_import("torch.utils.tensorboard", name="SummaryWriter")[1]
        if not tensorboard:
            logger.warning("TensorBoard logging is off: the tensorboard package is not installed")
    params = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str)) and k not in PATH_FIELDS}
    parts = render(
        _TEMPLATES,
        "pretrain_handlers.json",
        {
            "mlflow#tracking_uri": config.mlflow_uri,
            "mlflow#run_name": f"{config.method}-{config.backbone}-{config.spatial_dims}d-seed{config.seed}",
            "mlflow#experiment_param": params,
        },
    )
    used = {
        "chance": bool(spec.chance_loss),
        "monitor": bool(config.monitor_data),
        "tensorboard": tensorboard,
        "mlflow": bool(config.mlflow_uri),
        "progress": bool(config.progress),
    }
    return [handler for name, handler in parts.items() if used.get(name, True)]


def pretrain_config(config: PretrainSpec) -> dict[str, Any]:
    """The bundle config (a dict) of the pretraining run ``config`` describes: ``templates/pretrain.json`` with the
    run's values set by id.

    Method- and family-specific values come from the registries as data: the method's recommended optimiser
    settings (``MethodSpec.defaults``, through :func:`resolve_config`), the view options a backbone family imposes
    (``MethodSpec.view_defaults``), the backbone options of a family (``ssl.registry.BACKBONE_DEFAULTS``) and the
    loss's chance value (``MethodSpec.chance_loss``).
    """
    from monai_transfer.networks.registry import get_backbone_config
    from monai_transfer.ssl.registry import BACKBONE_DEFAULTS, get_method_spec
    from monai_transfer.transforms.preprocessing import describe_intensity

    config = resolve_config(config)
    spec = get_method_spec(config.method)
    family = get_backbone_config(config.backbone).family
    backbone_kwargs = {**BACKBONE_DEFAULTS.get(family, {}), **config.backbone_kwargs}
    options = {k: v for k, v in config.to_dict().items() if k not in PATH_FIELDS}
    values: dict[str, Any] = {
        **{name: getattr(config, "section" if name == "data_section" else name) for name in _SCALARS},
        "bundle_root": config.out_dir,
        "datalist": config.datalist,
        "resume": config.resume if config.resume not in ("never", "overwrite") else None,  # "auto" or a checkpoint
        "roi_size": list(config.roi()),
        "intensity": dict(config.intensity or {}),
        "keep_previous_checkpoint": bool(config.keep_previous),
        "device#device": config.device,
        # "auto": CUDA AMP; on CPU bfloat16 only where a probe of the backbone measures that it pays
        "amp": normalize_choice(config.amp),
        "channels_last": normalize_choice(config.channels_last, "channels_last"),
        "compile": normalize_choice(config.compile, "compile"),
        "network_def#name": config.backbone,
        "network_def#pretrained": config.pretrained,
        "method#name": spec.name,
        "optimizer#_target_": _OPTIMIZERS[str(config.optimizer)],
        "train#augmentation#method": spec.name,
        "train#chance#formula": spec.chance_loss,
        "train#monitor_sets#datalist": config.monitor_data,
        "train#monitor#every": config.monitor_every,
        "train#monitor#k": config.monitor_k,
        "train#handlers": _handlers(config, spec),
        "train#publish#summary#method": spec.name,
        "train#publish#summary#backbone": config.backbone,
        "train#publish#title": f"{spec.name} / {config.backbone} {config.spatial_dims}D",
        "provenance#method": f"{spec.name} (self-supervised, monai_transfer)",
        "provenance#modality": _MODALITY_NAMES[config.modality],
        "provenance#intensity_normalisation": f"monai_transfer intensity {describe_intensity(config.intensity)}",
        "provenance#backbone_name": config.backbone,
        "provenance#citation": spec.paper,
        "provenance#notes": (
            f"initialised from {os.path.basename(config.pretrained)}" if config.pretrained else "random initialisation"
        ),
        # paths stay out of published weights: folder names can carry patient or site names
        "provenance#extra#pretraining_config": options,
        "finetune_bundle#backbone": config.backbone,
        "finetune_bundle#backbone_kwargs": dict(backbone_kwargs),
        "finetune_bundle#modality": _MODALITY_NAMES[config.modality],
    }
    if config.cache:  # the deterministic head runs once per image; without it, the same steps run per sample
        values.update(
            {"train#transforms": "@train#augmentation", "train#dataset#cache_transform": "@train#preprocessing"}
        )
    drop = [] if config.optimizer == "sgd" else ["optimizer#momentum"]
    if not config.monitor_data:
        drop.append("train#checkpoint_objects#monitor")
        values["train#publish#monitor"] = None
    if not spec.chance_loss:
        values["train#publish#chance"] = None
    rendered = render(_TEMPLATES, "pretrain.json", values, drop)
    # the open parts: a family's backbone options, the method's options, the views a family imposes
    rendered["network_def"].update(backbone_kwargs)
    rendered["method"].update(config.method_kwargs)
    rendered["train"]["augmentation"].update({**spec.view_defaults.get(family, {}), **config.view_kwargs})
    return rendered


def is_bundle_config(values: Mapping[str, Any]) -> bool:
    """Whether a loaded YAML/JSON file is a bundle config (a ``run`` list, ``_target_`` components) rather than a file
    of :class:`PretrainSpec` options (whose unknown keys are then named as such, not run)."""
    if not isinstance(values, Mapping):
        return False
    return "run" in values or any(isinstance(v, Mapping) and "_target_" in v for v in values.values())
