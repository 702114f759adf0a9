"""The fine-tuning and evaluation configs of a run (a bundle's ``train.json`` and ``evaluate.json``), as dicts in MONAI's
model-zoo layout.

``finetune_config`` is the ``train.json`` every fine-tuning run executes (the command line's ``finetune`` builds it
from its flags, ``bundle create`` writes it): MONAI's ``SupervisedTrainer`` validated every epoch by a
``SupervisedEvaluator``, the network from ``monai_transfer.networks.create_transfer_net``, the optimizer over the
fine-tuning strategy's parameter groups, warm-up + cosine learning rates, the starting point's intensity mapping, the
best checkpoint written atomically to ``models/model.pt`` (a bare ``state_dict``, as MONAI's ``CheckpointLoader``,
``ckpt_export`` and MONAI Label read it). Ids follow the model zoo (``bundle_root``, ``ckpt_dir``, ``dataset_dir``,
``network_def``, ``train#trainer#max_epochs``, ``train#dataset#data``...) so that MONAI's workflow properties and
MONAI Label's bundle tasks find what they read. Scalars a user tunes sit at the top level (``lr``, ``batch_size``,
``label_fraction``, ``seed``...) where ``--set lr=1e-4`` reaches them.

The static part of each config is a JSON template beside this module (``templates/train.json``, the optional handlers
of ``templates/train_handlers.json``, ``templates/evaluate.json``); the functions here compute the values that depend
on the task and the run and set them by id (``monai_transfer.engines.templates.render``). What the templates encode:

* components another one uses are referenced by id, never by list position: the run checkpoint
  (``RunCheckpoint``, exact resume) names the best-checkpoint writer and early stopping as
  ``@validate#best_checkpoint`` and ``@validate#early_stop``, and ``validate#handlers`` lists them by reference, so
  reordering or extending a handler list cannot hand resume the wrong object; ``train#handlers`` stays a list of
  components (MONAI Label inserts its checkpoint loader there and MONAI's property check reads its ``_target_``s);
* ``precision``: the run's ``amp`` / ``channels_last`` / ``compile`` resolved once for its device and network
  (``monai_transfer.engines.resolve_precision``), recorded beside the run checkpoint and kept by a resumed run;
  MONAI's engines autocast CUDA only, so their ``amp`` is the CUDA half of the decision and
  ``monai_transfer.engines.PrecisionInferer`` (wrapped where the engine uses the inferer, so that
  ``validate#inferer#overlap=...`` still reaches the window) the CPU half;
* the order of batches and augmentations of epoch e is a function of (seed, e) (``EpochSampler``,
  ``EpochSeedHandler``): resumable exactly; gradients are freed, not zeroed, between steps (``optim_set_to_none``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.engines.specs import FinetuneSpec, SpecFieldError, value_ids
from monai_transfer.engines.templates import load_template, render
from monai_transfer.finetune.task_transforms import transform_components
from monai_transfer.utils.sizes import per_axis

__all__ = [
    "finetune_config",
    "strategy_parts",
    "evaluate_config",
    "KEY_METRIC_DEFAULT",
    "LOSSES",
    "inferer_component",
]

KEY_METRIC_DEFAULT = {"classification": "auroc", "segmentation": "mean_dice"}

#: loss name -> (component, tasks it fits); "auto" picks the first entry fitting the task
LOSSES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "dice-ce": ({"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True}, ("segmentation",)),
    "ce": ({"_target_": "monai_transfer.losses.LabelCrossEntropyLoss"}, ("classification", "segmentation")),
    "focal": (
        {"_target_": "FocalLoss", "to_onehot_y": True, "use_softmax": True, "gamma": 2.0},
        ("classification", "segmentation"),
    ),
}

#: optimizer name -> its class (``templates/train.json`` holds SGD's momentum, dropped for AdamW)
_OPTIMIZERS = {"adamw": "torch.optim.AdamW", "sgd": "torch.optim.SGD"}

#: the package of the JSON templates this module renders (``train.json``, ``train_handlers.json``, ``evaluate.json``)
_TEMPLATES = "monai_transfer.finetune.templates"

#: a classifier's decision ids (dropped from a segmentation config)
_DECISION_IDS = ("threshold", "calibrate", "one_vs_rest")

_FROM_LOSS = "$monai.handlers.from_engine(['loss'], first=True)"
_FROM_PRED_LABEL = "$monai.handlers.from_engine(['pred', 'label'])"


def _loss(task: str, loss: str, class_weights: Sequence[float] | None, gamma: float) -> dict[str, Any]:
    if loss == "auto":
        loss = "dice-ce" if task == "segmentation" else "ce"
    if loss not in LOSSES:
        raise SpecFieldError(f"loss: unknown {loss!r}; known: {['auto', *LOSSES]}")
    comp, tasks = LOSSES[loss]
    if task not in tasks:
        raise SpecFieldError(f"loss: {loss!r} is for {' and '.join(tasks)}, not {task}")
    out = copy.deepcopy(comp)
    if out.get("gamma") is not None:
        out["gamma"] = float(gamma)
    if class_weights is not None:
        out["weight"] = f"$torch.tensor({[float(w) for w in class_weights]})"
    return out


def _metrics(task: str) -> dict[str, dict[str, Any]]:
    if task == "segmentation":
        return {
            "mean_dice": {"_target_": "MeanDice", "include_background": False, "output_transform": _FROM_PRED_LABEL}
        }
    return {
        "auroc": {"_target_": "ROCAUC", "output_transform": _FROM_PRED_LABEL},
        "accuracy": {
            "_target_": "ignite.metrics.Accuracy",
            "output_transform": "$monai_transfer.finetune.trainer.stack_for_accuracy",
        },
    }


def _postprocessing(task: str) -> dict[str, Any]:
    if task == "segmentation":
        xs = [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "AsDiscreted",
                "keys": ["pred", "label"],
                "argmax": [True, False],
                "to_onehot": ["@num_classes", "@num_classes"],
            },
        ]
    else:
        xs = [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "label", "to_onehot": "@num_classes"},
        ]
    return {"_target_": "Compose", "transforms": xs}


def _decision_ids(task: str, decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """A classifier's decision settings as config ids (``threshold``: the rule, ``calibrate``, ``one_vs_rest``)."""
    if task != "classification":
        return {}
    from monai_transfer.finetune.decision import decision_settings

    d = decision_settings(**dict(decision or {}))
    return {"threshold": d["rule"], "calibrate": d["calibrate"], "one_vs_rest": d["one_vs_rest"]}


def inferer_component(task: str, spatial_dims: int, patch_size: Any) -> dict[str, Any]:
    if task == "segmentation" and spatial_dims == 3 and patch_size is not None:
        return {
            "_target_": "SlidingWindowInferer",
            "roi_size": "@patch_size",
            "sw_batch_size": 4,
            "overlap": 0.25,
            "mode": "gaussian",
        }
    return {"_target_": "SimpleInferer"}


def _crop_from_patch_size(xs: list[dict[str, Any]]) -> None:
    """Point the training crop (and the padding to it) at the top-level ``patch_size``, in place, so that one value
    (``--patch_size``) sets both the crop and the sliding window, as it does in the model zoo's configs."""
    for i, x in enumerate(xs):
        if x.get("_target_") == "RandSpatialCropd":
            x["roi_size"] = "@patch_size"
            if i > 0 and xs[i - 1].get("_target_") == "SpatialPadd":
                xs[i - 1]["spatial_size"] = "@patch_size"


def _cases(section: str, train: bool) -> str:
    """The ``data`` expression of a dataset: the datalist's ``section`` (training: at ``@label_fraction``)."""
    fraction = "@label_fraction" if train else "1.0"
    return (
        f"$monai_transfer.finetune.datalist_cases(@datalist, '{section}', task=@task, num_classes=@num_classes, "
        f"label_fraction={fraction}, seed=@seed)"
    )


def finetune_config(
    spec: FinetuneSpec,
    labels: Sequence[str] | None = None,
    divisible_by: int = 32,
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``train.json`` of a fine-tuning run, rendered from its checked spec.

    Every field of the spec that shapes a config is read here; the values with a ``config_id`` (``lr``, ``epochs``,
    ``seed``...) are set at their ids, so that ``--set lr=1e-4`` reaches them and a new field with a ``config_id``
    reaches the config without a line here. What the data settles must be settled in ``spec`` first
    (:func:`monai_transfer.finetune.plan.plan_finetune` does it for a run; the bundle writer for a bundle):
    ``spatial_dims``, ``class_weights`` as a list (not ``"balanced"``), ``intensity`` (``None``: z-score) and
    ``pretrained`` as the config reads it (a source name, an absolute path, or a ``$@bundle_root`` expression).

    Args:
        spec: the run's settings. Its ``datalist`` and ``out_dir`` become the config's ``datalist`` (with
            ``dataset_dir`` its folder) and ``bundle_root``; left empty, the config reads a bundle's own layout
            (``bundle_root`` ``.``, ``data/datalist.json``).
        labels: class names (background first for segmentation); default ``class_0``... for ``spec.num_classes``.
        divisible_by: the backbone's largest stride (segmentation inputs are padded to a multiple).
        decision: classification: how the classifier decides, chosen on validation with every best checkpoint and
            written beside it (``models/decision.json``, applied by inference): ``{"rule", "calibrate",
            "one_vs_rest"}``, config ids ``threshold``, ``calibrate``, ``one_vs_rest`` (default Youden's J, no
            temperature).

    Raises:
        SpecFieldError: a field not settled, or not fitting the others (the field named).
    """
    task, dims = spec.task, spec.spatial_dims
    if dims is None:
        raise SpecFieldError("spatial_dims: give 2 or 3 (a run takes it from its images)")
    if isinstance(spec.class_weights, str):
        raise SpecFieldError("class_weights: 'balanced' is computed from the training labels; give the weights")
    names = list(labels) if labels else [f"class_{i}" for i in range(int(spec.num_classes or 0))]
    if not names or (spec.num_classes is not None and len(names) != spec.num_classes):
        raise SpecFieldError(f"num_classes: {spec.num_classes} for the label names {names}")
    key = spec.key_metric or KEY_METRIC_DEFAULT[task]
    metrics = _metrics(task)
    if key not in metrics:
        raise SpecFieldError(f"key_metric: for {task} one of {sorted(metrics)}, got {key!r}")
    strategy, strategy_kwargs = strategy_parts(spec.strategy, spec.strategy_kwargs)
    values = {
        **_layout_values(spec),
        **_network_values(spec, dims, names, divisible_by),
        **_decision_ids(task, decision),
        "finetune_strategy#name": strategy,
        "optimizer#_target_": _OPTIMIZERS[spec.optimizer],
        "loss": _loss(task, spec.loss, spec.class_weights, spec.focal_gamma),
        **_data_values(spec, dims, len(names), divisible_by),
        "validate#postprocessing": _postprocessing(task),
        "validate#key_metric": {key: metrics.pop(key)},
        "validate#additional_metrics": metrics,
        "validate#best_checkpoint#metric_name": key,
        "validate#best_checkpoint#decision#section": spec.val_section,
        "validate#early_stop#metric_name": key,
    }
    drop = [] if task == "classification" else [*_DECISION_IDS, "validate#best_checkpoint#decision"]
    if spec.optimizer != "sgd":
        drop.append("optimizer#momentum")
    config = render(_TEMPLATES, "train.json", values, drop)
    config["finetune_strategy"].update(strategy_kwargs)  # the strategy's own options, beside name and lr
    for name, cid in value_ids(type(spec)).items():  # the run's values, where --set reaches them
        _set(config, cid, getattr(spec, name))
    config["amp"], config["channels_last"], config["compile"] = spec.amp, spec.channels_last, spec.compile
    if spec.device is not None:
        config["device"] = f"$torch.device({str(spec.device)!r})"
    _add_handlers(config, spec, strategy)
    return config


def strategy_parts(strategy: Any, kwargs: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A spec's strategy (a name, or a built :class:`~monai_transfer.finetune.strategies.FinetuneStrategy`) as its
    name and options."""
    if isinstance(strategy, str):
        return strategy, dict(kwargs or {})
    options = dict(strategy.to_dict())
    return str(options.pop("name", strategy.name)), options


def _layout_values(spec: FinetuneSpec) -> dict[str, Any]:
    """Where the config reads its data and writes its outputs: the run's own paths, or a bundle's layout."""
    if spec.datalist:
        data = {"dataset_dir": str(Path(spec.datalist).parent), "datalist": spec.datalist}
    else:
        data = {"dataset_dir": "$@bundle_root + '/data'", "datalist": "$@dataset_dir + '/datalist.json'"}
    return {"bundle_root": spec.out_dir or ".", **data}


def _network_values(spec: FinetuneSpec, dims: int, names: list[str], divisible_by: int) -> dict[str, Any]:
    return {
        "task": spec.task,
        "spatial_dims": int(dims),
        "in_channels": int(spec.in_channels),
        "num_classes": len(names),
        "labels": names,
        "pretrained": spec.pretrained,
        "divisible_by": int(divisible_by),
        "intensity": dict(spec.intensity) if spec.intensity is not None else None,
        "network_def#backbone": spec.backbone,
        "network_def#backbone_kwargs": dict(spec.backbone_kwargs),
        "network_def#head_kwargs": dict(spec.head_kwargs),
        "network_def#strict": bool(spec.strict),
    }


def _data_values(spec: FinetuneSpec, dims: int, num_classes: int, divisible_by: int) -> dict[str, Any]:
    """The datasets, their transforms and the validation inferer."""
    task = spec.task
    # one value per axis in the config (a CLI's "--patch-size 96" is one number for every axis)
    patch_size = None if spec.patch_size is None else per_axis(spec.patch_size, dims, "patch_size")
    spatial_size = None if spec.spatial_size is None else per_axis(spec.spatial_size, dims, "spatial_size")
    xform = dict(spatial_size=spatial_size, patch_size=patch_size, divisible_by=divisible_by,
                 intensity=spec.intensity, in_channels=spec.in_channels)  # fmt: skip
    train_xs, _ = transform_components(task, dims, num_classes, True, augment=spec.augment, **xform)
    _crop_from_patch_size(train_xs)
    val_xs, corrupt_at = transform_components(task, dims, num_classes, False, **xform)
    for comp in train_xs + val_xs:  # one class count: --set num_classes=4 reaches the label check too
        if comp["_target_"].endswith(".CheckLabelRanged"):
            comp["num_classes"] = "@num_classes"
    return {
        "patch_size": patch_size,
        "spatial_size": spatial_size,
        "train#preprocessing#transforms": train_xs,
        "train#dataset#data": _cases(spec.train_section, train=True),
        "validate#preprocessing#transforms": val_xs,
        "validate#corruption_index": corrupt_at,
        "validate#dataset#data": _cases(spec.val_section, train=False),
        "validate#inferer": inferer_component(task, dims, patch_size),
    }


def _set(config: dict[str, Any], cid: str, value: Any) -> None:
    parts = cid.split("#")
    node = config
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def _add_handlers(config: dict[str, Any], spec: FinetuneSpec, strategy: str) -> None:
    """Append the optional handlers (``train_handlers.json``: TensorBoard, a progress bar, MLflow) that are on."""
    backbone, mlflow_uri = spec.backbone, spec.mlflow_uri
    run_name = f"{backbone}-{spec.task}-{strategy}"
    parts = render(
        _TEMPLATES,
        "train_handlers.json",
        {
            "mlflow#train#tracking_uri": mlflow_uri,
            "mlflow#train#run_name": run_name,
            "mlflow#train#experiment_param#backbone": backbone,
            "mlflow#train#experiment_param#strategy": strategy,
            "mlflow#validate#tracking_uri": mlflow_uri,
            "mlflow#validate#run_name": run_name,
        },
    )
    # MLflow: the evaluator's metrics go to the same run (MONAI's handler reuses the active run of its experiment)
    for name, on in (("tensorboard", spec.tensorboard), ("progress", spec.progress), ("mlflow", bool(mlflow_uri))):
        if on:
            for engine, handler in parts[name].items():
                config[engine]["handlers"].append(handler)


def evaluate_config(section: str = "test") -> dict[str, Any]:
    """``evaluate.json``: merged over ``train.json``, it loads ``models/model.pt`` and evaluates ``section``.

    Metrics go to ``eval/metrics.csv`` (MONAI's ``MetricsSaver``); per-case records and intervals come from
    ``monai-transfer evaluate``.
    """
    config = load_template(_TEMPLATES, "evaluate.json")
    config["validate#dataset#data"] = (
        f"$monai_transfer.finetune.datalist_cases(@datalist, '{section}', task=@task, num_classes=@num_classes)"
    )
    return config
