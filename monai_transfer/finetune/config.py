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
from typing import Any

from monai_transfer.engines.templates import load_template, render
from monai_transfer.finetune.datalist_checks import TASKS
from monai_transfer.finetune.task_transforms import transform_components
from monai_transfer.utils.sizes import per_axis

__all__ = [
    "finetune_config",
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


def _loss(task: str, loss: str, class_weights: Sequence[float] | None) -> dict[str, Any]:
    if loss == "auto":
        loss = "dice-ce" if task == "segmentation" else "ce"
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {['auto', *LOSSES]}")
    comp, tasks = LOSSES[loss]
    if task not in tasks:
        raise ValueError(f"loss {loss!r} is for {' and '.join(tasks)}, not {task}")
    out = copy.deepcopy(comp)
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
    backbone: str,
    task: str,
    spatial_dims: int,
    num_classes: int,
    in_channels: int = 1,
    pretrained: str | None = None,
    labels: Sequence[str] | None = None,
    strategy: str = "full",
    strategy_kwargs: Mapping[str, Any] | None = None,
    intensity: Mapping[str, Any] | None = None,
    divisible_by: int = 32,
    spatial_size: Sequence[int] | int | None = None,
    patch_size: Sequence[int] | int | None = None,
    loss: str = "auto",
    class_weights: Sequence[float] | None = None,
    optimizer: str = "adamw",
    key_metric: str | None = None,
    augment: bool = True,
    backbone_kwargs: Mapping[str, Any] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    sections: Sequence[str] = ("training", "validation"),
    dataset_dir: str = "$@bundle_root + '/data'",
    datalist: str = "$@dataset_dir + '/datalist.json'",
    bundle_root: str = ".",
    max_epochs: int = 10,
    tensorboard: bool = True,
    progress: bool = False,
    resume: str = "overwrite",
    mlflow_uri: str | None = None,
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``train.json`` of a fine-tuning run.

    Args:
        backbone: registry name (``monai_transfer.networks.list_backbones()``).
        task: ``"classification"`` or ``"segmentation"``.
        spatial_dims: 2 or 3.
        num_classes: classes (background included for segmentation).
        in_channels: image channels.
        pretrained: a weight source name, a checkpoint path (relative to the bundle: ``"$@bundle_root + '/...'"``) or
            ``None`` (random initialisation).
        labels: class names (the datalist's ``labels``); kept as ``labels`` for MONAI Label and the metadata.
        strategy: fine-tuning strategy name (``monai_transfer.finetune.list_strategies()``).
        strategy_kwargs: its further arguments.
        intensity: the starting point's intensity spec (its provenance ``preprocessing``); ``None``: z-score.
        divisible_by: the backbone's largest stride (segmentation inputs are padded to a multiple).
        spatial_size: classification input size, or ``None`` to keep the images' size.
        patch_size: segmentation training crop (3D: also the sliding window at evaluation).
        loss: ``"auto"``, ``"ce"``, ``"focal"`` or ``"dice-ce"`` (:data:`LOSSES`).
        class_weights: per-class loss weights, or ``None``.
        optimizer: ``"adamw"`` or ``"sgd"``.
        key_metric: ``"mean_dice"``, ``"auroc"`` or ``"accuracy"``; default by task.
        augment: random flips in training.
        backbone_kwargs, head_kwargs: passed to ``create_transfer_net``.
        sections: the datalist's training and validation sections.
        dataset_dir, datalist: where the data is (config expressions, or paths for a run on this machine).
        bundle_root: the folder outputs go under (``models/``, ``eval/``, ``tensorboard/``).
        max_epochs: epochs (``train#trainer#max_epochs``).
        tensorboard: write TensorBoard logs through MONAI's ``TensorBoardStatsHandler``.
        progress: a progress bar over iterations (ignite ``ProgressBar``).
        mlflow_uri: track the run in MLflow (MONAI's ``MLFlowHandler``: training loss per iteration, validation
            metrics per epoch, the run's scalar values as parameters), e.g. ``sqlite:///mlruns.db``.
        resume: what a run does with an earlier run's ``checkpoints/last.pt`` (``RunCheckpoint``): ``"never"``
            (refuse), ``"auto"`` (continue it), ``"overwrite"`` (start again: a bundle's default, since MONAI Label
            retrains in the same folder).
        decision: classification: how the classifier decides, chosen on validation with every best checkpoint and
            written beside it (``models/decision.json``, applied by inference): ``{"rule", "calibrate",
            "one_vs_rest"}``, config ids ``threshold``, ``calibrate``, ``one_vs_rest`` (default Youden's J, no
            temperature).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
    # one value per axis in the config (a CLI's "--patch-size 96" is one number for every axis)
    patch_size = None if patch_size is None else per_axis(patch_size, spatial_dims, "patch_size")
    spatial_size = None if spatial_size is None else per_axis(spatial_size, spatial_dims, "spatial_size")
    key = key_metric or KEY_METRIC_DEFAULT[task]
    metrics = _metrics(task)
    if key not in metrics:
        raise ValueError(f"key_metric for {task} must be one of {sorted(metrics)}, got {key!r}")
    names = list(labels) if labels else [f"class_{i}" for i in range(int(num_classes))]
    if len(names) != int(num_classes):
        raise ValueError(f"{len(names)} label names for num_classes={num_classes}")
    xform = dict(
        spatial_size=spatial_size,
        patch_size=patch_size,
        divisible_by=divisible_by,
        intensity=intensity,
        in_channels=in_channels,
    )
    train_xs, _ = transform_components(task, spatial_dims, num_classes, True, augment=augment, **xform)
    _crop_from_patch_size(train_xs)
    val_xs, corrupt_at = transform_components(task, spatial_dims, num_classes, False, **xform)
    for comp in train_xs + val_xs:  # one class count: --set num_classes=4 reaches the label check too
        if comp["_target_"].endswith(".CheckLabelRanged"):
            comp["num_classes"] = "@num_classes"
    values: dict[str, Any] = {
        "bundle_root": bundle_root,
        "resume": resume,
        "dataset_dir": dataset_dir,
        "datalist": datalist,
        "task": task,
        "spatial_dims": int(spatial_dims),
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
        "labels": names,
        **_decision_ids(task, decision),
        "pretrained": pretrained,
        "patch_size": patch_size,
        "spatial_size": spatial_size,
        "divisible_by": int(divisible_by),
        "intensity": dict(intensity) if intensity is not None else None,
        "network_def#backbone": backbone,
        "network_def#backbone_kwargs": dict(backbone_kwargs or {}),
        "network_def#head_kwargs": dict(head_kwargs or {}),
        "finetune_strategy#name": strategy,
        "optimizer#_target_": _OPTIMIZERS[optimizer],
        "loss": _loss(task, loss, class_weights),
        "train#preprocessing#transforms": train_xs,
        "train#dataset#data": _cases(sections[0], train=True),
        "train#trainer#max_epochs": int(max_epochs),
        "validate#preprocessing#transforms": val_xs,
        "validate#corruption_index": corrupt_at,
        "validate#dataset#data": _cases(sections[1], train=False),
        "validate#inferer": inferer_component(task, spatial_dims, patch_size),
        "validate#postprocessing": _postprocessing(task),
        "validate#key_metric": {key: metrics.pop(key)},
        "validate#additional_metrics": metrics,
        "validate#best_checkpoint#metric_name": key,
        "validate#best_checkpoint#decision#section": sections[1],
        "validate#early_stop#metric_name": key,
    }
    drop = [] if task == "classification" else [*_DECISION_IDS, "validate#best_checkpoint#decision"]
    if optimizer != "sgd":
        drop.append("optimizer#momentum")
    config = render(_TEMPLATES, "train.json", values, drop)
    for name, kwarg in dict(strategy_kwargs or {}).items():  # the strategy's own options, beside name and lr
        config["finetune_strategy"][name] = kwarg
    _add_handlers(
        config,
        tensorboard=tensorboard,
        progress=progress,
        mlflow_uri=mlflow_uri,
        backbone=backbone,
        task=task,
        strategy=strategy,
    )
    return config


def _add_handlers(
    config: dict[str, Any],
    tensorboard: bool,
    progress: bool,
    mlflow_uri: str | None,
    backbone: str,
    task: str,
    strategy: str,
) -> None:
    """Append the optional handlers (``train_handlers.json``: TensorBoard, a progress bar, MLflow) that are on."""
    run_name = f"{backbone}-{task}-{strategy}"
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
    for name, on in (("tensorboard", tensorboard), ("progress", progress), ("mlflow", bool(mlflow_uri))):
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
