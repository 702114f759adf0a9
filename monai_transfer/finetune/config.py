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
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from monai_transfer.finetune.tasks import TASKS, transform_components
from monai_transfer.utils.sizes import per_axis

__all__ = [
    "finetune_config",
    "evaluate_config",
    "network_def_component",
    "KEY_METRIC_DEFAULT",
    "LOSSES",
    "inferer_component",
    "precision_component",
    "precision_inferer",
]

KEY_METRIC_DEFAULT = {"classification": "auroc", "segmentation": "mean_dice"}

#: loss name -> (component, tasks it fits); "auto" picks the first entry fitting the task
LOSSES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "dice-ce": ({"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True}, ("segmentation",)),
    "ce": ({"_target_": "monai_transfer.losses.LabelCrossEntropyLoss"}, ("classification", "segmentation")),
    "focal": ({"_target_": "FocalLoss", "to_onehot_y": True, "use_softmax": True, "gamma": 2.0},
              ("classification", "segmentation")),
}  # fmt: skip

_OPTIMIZERS = {
    "adamw": {"_target_": "torch.optim.AdamW"},
    "sgd": {"_target_": "torch.optim.SGD", "momentum": 0.9},
}

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
        "accuracy": {"_target_": "ignite.metrics.Accuracy",
                     "output_transform": "$monai_transfer.finetune.trainer.stack_for_accuracy"},
    }  # fmt: skip


def _postprocessing(task: str) -> dict[str, Any]:
    if task == "segmentation":
        xs = [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False],
             "to_onehot": ["@num_classes", "@num_classes"]},
        ]  # fmt: skip
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
        return {"_target_": "SlidingWindowInferer", "roi_size": "@patch_size", "sw_batch_size": 4, "overlap": 0.25,
                "mode": "gaussian"}  # fmt: skip
    return {"_target_": "SimpleInferer"}


def _crop_from_patch_size(xs: list[dict[str, Any]]) -> None:
    """Point the training crop (and the padding to it) at the top-level ``patch_size``, in place, so that one value
    (``--patch_size``) sets both the crop and the sliding window, as it does in the model zoo's configs."""
    for i, x in enumerate(xs):
        if x.get("_target_") == "RandSpatialCropd":
            x["roi_size"] = "@patch_size"
            if i > 0 and xs[i - 1].get("_target_") == "SpatialPadd":
                xs[i - 1]["spatial_size"] = "@patch_size"


def _dataset(section: str, train: bool) -> dict[str, Any]:
    part = "train" if train else "validate"
    fraction = "@label_fraction" if train else "1.0"
    data = (f"$monai_transfer.finetune.datalist_cases(@datalist, '{section}', task=@task, num_classes=@num_classes, "
            f"label_fraction={fraction}, seed=@seed)")  # fmt: skip
    return {"_target_": "CacheDataset", "data": data, "transform": f"@{part}#preprocessing", "cache_rate": 1.0,
            "num_workers": 0, "progress": False}  # fmt: skip


#: MONAI's engines autocast "cuda" only: their amp is the CUDA half of the decision, PrecisionInferer the CPU half
_MONAI_AMP = "$monai_transfer.engines.monai_amp(@precision)"


def precision_component(
    training: bool,
    batch_size: Any = "@batch_size",
    input_size: str = "$@patch_size or @spatial_size",
    record: str | None = None,
) -> dict[str, Any]:
    """``precision``: the run's ``amp`` / ``channels_last`` / ``compile`` resolved once for its device and network
    (``monai_transfer.engines.resolve_precision``: on CPU a short cached probe of this network at the run's input
    size), written into ``result.json``; a training run records it next to its checkpoint, and a resumed run keeps
    it. ``record``: where a run that is not training writes it (an inference run: beside its predictions)."""
    if training:
        record = {"record": "$@run_checkpoint_dir + '/precision.json'", "resume": "@resume"}
    else:
        record = {} if record is None else {"record": record}
    return {"_target_": "monai_transfer.engines.resolve_precision", "amp": "@amp", "device": "@device",
            "network": "@network_def", "spatial_dims": "@spatial_dims", "in_channels": "@in_channels",
            "input_size": input_size, "batch_size": batch_size,
            "channels_last": "@channels_last", "compile": "@compile", "training": training, **record}  # fmt: skip


def precision_inferer(inferer: str) -> str:
    """The engine's ``inferer``: ``inferer`` (a reference) under the run's precision. Wrapped where the engine uses it,
    so that ``validate#inferer#overlap=...`` still reaches the window; an expression, which MONAI's property check of
    ``train#trainer#inferer`` and ``validate#evaluator#inferer`` accepts as it accepts a reference."""
    return f"$monai_transfer.engines.PrecisionInferer({inferer}, @precision)"


def network_def_component(
    backbone: str,
    backbone_kwargs: Mapping[str, Any] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    trained: bool = False,
) -> dict[str, Any]:
    """``network_def``: ``create_transfer_net`` over the config's ``task``, ``spatial_dims``, ``in_channels`` and
    ``num_classes``; ``trained`` (``train.json``) adds the starting weights (``@pretrained``, strict) and the seed of
    the new layers."""
    start = {"pretrained": "@pretrained", "strict": True} if trained else {}
    return {
        "_target_": "monai_transfer.networks.create_transfer_net",
        "backbone": backbone,
        "task": "@task",
        "spatial_dims": "@spatial_dims",
        "in_channels": "@in_channels",
        "num_classes": "@num_classes",
        **start,
        "backbone_kwargs": dict(backbone_kwargs or {}),
        "head_kwargs": dict(head_kwargs or {}),
        **({"seed": "@seed"} if trained else {}),
    }


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
    xform = {"spatial_size": spatial_size, "patch_size": patch_size, "divisible_by": divisible_by,
             "intensity": intensity, "in_channels": in_channels}  # fmt: skip
    train_xs, _ = transform_components(task, spatial_dims, num_classes, True, augment=augment, **xform)
    _crop_from_patch_size(train_xs)
    val_xs, corrupt_at = transform_components(task, spatial_dims, num_classes, False, **xform)
    for comp in train_xs + val_xs:  # one class count: --set num_classes=4 reaches the label check too
        if comp["_target_"].endswith(".CheckLabelRanged"):
            comp["num_classes"] = "@num_classes"
    train_handlers: list[Any] = [
        {"_target_": "monai_transfer.engines.WarmupCosineHandler", "optimizer": "@optimizer",
         "warmup_epochs": "@warmup_epochs", "final_factor": "@final_lr_factor", "schedule": "@lr_schedule"},
        {"_target_": "monai_transfer.finetune.StrategyHandlers", "strategy": "@finetune_strategy",
         "optimizer": "@optimizer"},
        {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True,
         "interval": "@val_interval"},
        {"_target_": "StatsHandler", "tag_name": "train_loss", "output_transform": _FROM_LOSS, "iteration_log": False},
        # the order of batches and augmentations of epoch e is a function of (seed, e): resumable exactly
        {"_target_": "monai_transfer.engines.EpochSeedHandler", "seed": "@seed", "transform": "@train#preprocessing",
         "loader": "@train#dataloader"},
        # last.pt at every epoch end (after validation): exact resume; "never" refuses to overwrite a run
        {"_target_": "monai_transfer.engines.RunCheckpoint", "save_dir": "@run_checkpoint_dir", "network": "@network",
         "optimizer": "@optimizer", "resume": "@resume", "config": {"seed": "@seed"},
         "objects": {"best": "@validate#handlers#1", "early_stop": "@validate#handlers#2",
                     "evaluator": "@validate#evaluator"}},
    ]  # fmt: skip
    val_handlers: list[Any] = [
        {"_target_": "StatsHandler", "iteration_log": False},
        {"_target_": "monai_transfer.finetune.trainer.AtomicBestCheckpoint", "path": "$@ckpt_dir + '/model.pt'",
         "network": "@network", "metric_name": key, "weights_only": True,
         **({"decision": {"rule": "@threshold", "calibrate": "@calibrate", "one_vs_rest": "@one_vs_rest",
                          "section": sections[1]}} if task == "classification" else {})},
        {"_target_": "monai_transfer.finetune.trainer.EarlyStopOnMetric", "patience": "@patience",
         "metric_name": key},
    ]  # fmt: skip
    if tensorboard:
        train_handlers.append({"_target_": "TensorBoardStatsHandler", "log_dir": "@tensorboard_dir",
                               "tag_name": "train_loss", "output_transform": _FROM_LOSS})  # fmt: skip
        val_handlers.append({"_target_": "TensorBoardStatsHandler", "log_dir": "@tensorboard_dir",
                             "iteration_log": False})  # fmt: skip
    if progress:
        train_handlers.append({"_target_": "ignite.handlers.ProgressBar", "persist": False})
    if mlflow_uri:
        params = {k: f"@{k}" for k in ("seed", "label_fraction", "batch_size", "lr", "weight_decay", "head_lr_mult",
                                       "warmup_epochs", "task", "num_classes")}  # fmt: skip
        tracking = {"_target_": "MLFlowHandler", "tracking_uri": mlflow_uri, "experiment_name": "monai_transfer_finetune",
                    "run_name": f"{backbone}-{task}-{strategy}"}  # fmt: skip
        train_handlers.append({**tracking, "output_transform": _FROM_LOSS, "tag_name": "train_loss",
                               "experiment_param": {**params, "backbone": backbone, "strategy": strategy}})  # fmt: skip
        # the evaluator's metrics go to the same run (MONAI's handler reuses the active run of its experiment)
        val_handlers.append({**tracking, "iteration_log": False, "close_on_complete": False})
    strategy_args = {"lr": "@lr", "weight_decay": "@weight_decay", "head_lr_mult": "@head_lr_mult",
                     **dict(strategy_kwargs or {})}  # fmt: skip
    key_metric_comp = {key: metrics.pop(key)}
    return {
        "imports": ["$import torch", "$import monai", "$import monai_transfer"],
        "bundle_root": bundle_root,
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "tensorboard_dir": "$@bundle_root + '/tensorboard'",
        "run_checkpoint_dir": "$@bundle_root + '/checkpoints'",
        "resume": resume,
        "dataset_dir": dataset_dir,
        "datalist": datalist,
        "device": "$monai_transfer.engines.default_device()",
        "seed": 0,
        "task": task,
        "spatial_dims": int(spatial_dims),
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
        "labels": names,
        **_decision_ids(task, decision),
        "pretrained": pretrained,
        "label_fraction": 1.0,
        "batch_size": 8,
        "num_workers": 0,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "head_lr_mult": 1.0,
        "lr_schedule": "cosine",
        "warmup_epochs": 0.0,
        "final_lr_factor": 0.0,
        "patience": None,
        "val_interval": 1,
        # "auto": CUDA AMP; on CPU bfloat16 only where a probe measures that it pays (monai_transfer.engines.precision)
        "amp": "auto",
        "channels_last": "auto",
        "compile": "off",
        "patch_size": None if patch_size is None else patch_size,
        # facts of the transform chain above, for readers and for the inference bundle made from this run
        "spatial_size": spatial_size,
        "divisible_by": int(divisible_by),
        "intensity": dict(intensity) if intensity is not None else None,
        "network_def": network_def_component(backbone, backbone_kwargs, head_kwargs, trained=True),
        # no fixed size: the size of the first validation image (deterministic transforms, no random draws)
        "precision": precision_component(
            training=True,
            input_size="$@patch_size or @spatial_size or "
            "monai_transfer.engines.precision.sample_size(@validate#dataset)",
        ),
        "network": "$monai_transfer.engines.prepare_network(@network_def.to(@device), @precision, @spatial_dims)",
        "finetune_strategy": {"_target_": "monai_transfer.finetune.create_strategy", "name": strategy, **strategy_args},
        "optimizer": {**_OPTIMIZERS[optimizer], "params": "$@finetune_strategy.apply(@network)", "lr": "@lr",
                      "weight_decay": "@weight_decay"},  # fmt: skip
        "loss": _loss(task, loss, class_weights),
        "train": {
            "preprocessing": {"_target_": "Compose", "transforms": train_xs},
            "dataset": _dataset(sections[0], train=True),
            "sampler": {"_target_": "monai_transfer.engines.EpochSampler", "data_source": "@train#dataset",
                        "seed": "@seed", "shuffle": True},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": "@batch_size",
                           "sampler": "@train#sampler", "shuffle": False, "num_workers": "@num_workers",
                           "generator": "$torch.Generator().manual_seed(@seed)",
                           "drop_last": "$len(@train#dataset) % @batch_size == 1 and len(@train#dataset) > 1"},
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": train_handlers,
            "trainer": {"_target_": "SupervisedTrainer", "max_epochs": int(max_epochs), "device": "@device",
                        "train_data_loader": "@train#dataloader", "network": "@network", "optimizer": "@optimizer",
                        "loss_function": "@loss", "inferer": precision_inferer("@train#inferer"),
                        "train_handlers": "@train#handlers", "amp": _MONAI_AMP,
                        # gradients freed, not zeroed, between steps (PyTorch's default since 2.0): no memset of every
                        # gradient per step and a lower peak; a parameter that gets no gradient in a step is skipped
                        "optim_set_to_none": True},
        },  # fmt: skip
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": val_xs},
            # where a robustness corruption acts on what the network sees (monai_transfer.finetune.evaluate)
            "corruption_index": corrupt_at,
            "dataset": _dataset(sections[1], train=False),
            "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": "@batch_size",
                           "shuffle": False, "num_workers": "@num_workers"},
            "inferer": inferer_component(task, spatial_dims, patch_size),
            "postprocessing": _postprocessing(task),
            "key_metric": key_metric_comp,
            "additional_metrics": metrics,
            "handlers": val_handlers,
            "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                          "val_data_loader": "@validate#dataloader", "network": "@network",
                          "inferer": precision_inferer("@validate#inferer"), "postprocessing": "@validate#postprocessing",
                          "key_val_metric": "@validate#key_metric", "additional_metrics": "@validate#additional_metrics",
                          "val_handlers": "@validate#handlers", "amp": _MONAI_AMP},
        },  # fmt: skip
        "initialize": [
            # dropout draws from torch's global generator: seeded per run (run_config restores the caller's state)
            "$torch.manual_seed(@seed)",
            "$[h.set_trainer(@train#trainer) for h in @validate#handlers if hasattr(h, 'set_trainer')]",
        ],
        "run": ["$@train#trainer.run()"],
        "finalize": [],
    }


def evaluate_config(section: str = "test") -> dict[str, Any]:
    """``evaluate.json``: merged over ``train.json``, it loads ``models/model.pt`` and evaluates ``section``.

    Metrics go to ``eval/metrics.csv`` (MONAI's ``MetricsSaver``); per-case records and intervals come from
    ``monai-transfer evaluate``.
    """
    return {
        "network_def#pretrained": None,
        "validate#dataset#data": f"$monai_transfer.finetune.datalist_cases(@datalist, '{section}', task=@task, "
        "num_classes=@num_classes)",
        "validate#handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@ckpt_dir + '/model.pt'", "load_dict": {"model": "@network"},
             "map_location": "cpu"},
            {"_target_": "StatsHandler", "iteration_log": False},
            {"_target_": "MetricsSaver", "save_dir": "@output_dir", "metrics": "*"},
        ],  # fmt: skip
        "initialize": [],
        "run": ["$@validate#evaluator.run()"],
    }
