"""A whole fine-tuning run to an output folder (``finetune``) and the evaluation of its checkpoint (``evaluate``).

>>> from monai_transfer.data import make_demo_data
>>> paths = make_demo_data("demo", n_subjects=12, size=32)
>>> result = finetune("resnet10", None, "segmentation", "llrd", label_fraction=0.5, seed=0,
...                   datalist=paths["tissue_seg_2d"], out_dir="runs/llrd_0.5", epochs=5)
>>> evaluate("runs/llrd_0.5", paths["tissue_seg_2d"], section="test")["mean_dice"]

Files written (only under ``out_dir``): ``best_model.pt`` (weights and build config, written atomically),
``result.json`` (atomic), ``tensorboard/`` when tensorboard is installed, ``test_cases.json`` when a test section
exists.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.losses import DiceCELoss, FocalLoss
from monai.utils import set_determinism

from monai_transfer.data.datalist import DatalistError, load_datalist, load_datalist_file
from monai_transfer.data.splits import label_fractions
from monai_transfer.finetune.strategies import FinetuneStrategy, create_strategy
from monai_transfer.finetune.tasks import (
    TASKS,
    check_num_classes,
    class_counts,
    infer_spatial_dims,
    make_loader,
    make_transforms,
)
from monai_transfer.finetune.trainer import (
    AtomicBestCheckpoint,
    default_device,
    make_evaluator,
    make_inferer,
    make_trainer,
)
from monai_transfer.losses import LabelCrossEntropyLoss, balanced_class_weights
from monai_transfer.utils.atomic import atomic_write, atomic_write_json

__all__ = ["finetune", "evaluate", "LOSSES", "CHECKPOINT_NAME", "RESULT_NAME"]

logger = logging.getLogger(__name__)

LOSSES = ("auto", "ce", "focal", "dice-ce")
CHECKPOINT_NAME = "best_model.pt"
RESULT_NAME = "result.json"


def _load_sections(
    datalist: str | os.PathLike, sections: Sequence[str], required: Sequence[str], optional: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    props = load_datalist_file(datalist)
    out = {}
    for name in list(sections) + list(optional):
        if name not in props:
            if name in optional:
                continue
            present = [k for k, v in props.items() if isinstance(v, list)]
            raise DatalistError(f"{os.fspath(datalist)}: no section {name!r}; sections present: {present}")
        out[name] = load_datalist(datalist, name, required_keys=required)
    return {k: v for k, v in props.items() if not isinstance(v, list)}, out


def _make_loss(task: str, loss: str, weights: list[float] | None, focal_gamma: float) -> tuple[torch.nn.Module, str]:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {list(LOSSES)}")
    if loss == "auto":
        loss = "dice-ce" if task == "segmentation" else "ce"
    w = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    if loss == "ce":
        return LabelCrossEntropyLoss(weight=w), loss
    if loss == "focal":
        return FocalLoss(to_onehot_y=True, use_softmax=True, gamma=focal_gamma, weight=w), loss
    if task != "segmentation":
        raise ValueError("loss 'dice-ce' is for segmentation; use 'ce' or 'focal' for classification")
    return DiceCELoss(to_onehot_y=True, softmax=True, weight=w), loss


def finetune(
    backbone: str = "resnet18",
    pretrained: str | None = None,
    task: str = "classification",
    strategy: str | FinetuneStrategy = "full",
    label_fraction: float = 1.0,
    seed: int = 0,
    datalist: str | os.PathLike = "",
    out_dir: str | os.PathLike = "",
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    head_lr_mult: float = 1.0,
    strategy_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    in_channels: int = 1,
    loss: str = "auto",
    class_weights: str | Sequence[float] | None = None,
    focal_gamma: float = 2.0,
    optimizer: str = "adamw",
    patience: int | None = None,
    key_metric: str | None = None,
    spatial_size: Sequence[int] | int | None = None,
    patch_size: Sequence[int] | int | None = None,
    augment: bool = True,
    train_section: str = "training",
    val_section: str = "validation",
    test_section: str | None = "test",
    backbone_kwargs: Mapping[str, Any] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    strict: bool = True,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = False,
    tensorboard: bool = True,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Fine-tune a (pretrained) backbone on a datalist and write the best checkpoint and ``result.json``.

    Training runs on MONAI's ``SupervisedTrainer``, validated every epoch by a ``SupervisedEvaluator`` (mean Dice or
    AUROC), with early stopping, an atomically written best checkpoint, optional TensorBoard, fixed seeds
    (``monai.utils.set_determinism``) and AMP on CUDA. After training the best checkpoint is evaluated on
    ``test_section`` when the datalist has it.

    Args:
        backbone: registry name (``monai_transfer.networks.list_backbones()``).
        pretrained: ``None`` (random init), a checkpoint path or a known source name (``create_backbone``).
        task: ``"classification"`` or ``"segmentation"``.
        strategy: a name from ``list_strategies()`` (``"freeze-2"`` for ``freeze-k`` with k=2) or a built strategy.
        label_fraction: share of the training section used, in ``(0, 1]``: the nested, class-stratified,
            patient-level subset of ``monai_transfer.data.label_fractions`` for ``seed`` (deterministic; a smaller
            fraction is always a subset of a larger one).
        seed: seed of the label subset, the weights' initialisation, shuffling and augmentation.
        datalist: MSD-style datalist JSON with ``train_section`` and ``val_section`` (and optionally ``test_section``).
        out_dir: output folder (created); nothing is written elsewhere.
        epochs: maximum epochs.
        batch_size: batch size of training and validation.
        lr: base learning rate (the strategy derives per-stage rates from it).
        weight_decay: weight decay (not applied to norms and biases).
        head_lr_mult: learning-rate multiplier of the head, with any strategy.
        strategy_kwargs: further strategy arguments (``{"decay": 0.65}``, ``{"k": 2}``, ``{"lp_epochs": 3}``...).
        num_classes: classes (background included for segmentation); default: from the datalist.
        spatial_dims: 2 or 3; default: the datalist's ``tensorImageSize`` or the first image.
        in_channels: image channels.
        loss: ``"auto"`` (``"ce"`` for classification, ``"dice-ce"`` for segmentation), ``"ce"``, ``"focal"``
            (MONAI ``FocalLoss``, Lin et al. 2017, arXiv:1708.02002) or ``"dice-ce"`` (MONAI ``DiceCELoss``).
        class_weights: ``None``, ``"balanced"`` (inverse training-label frequencies of the subset used), or a list.
        focal_gamma: focusing parameter of the focal loss.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum 0.9).
        patience: early-stopping patience in epochs on the validation key metric (``None``: train all epochs).
        key_metric: ``"mean_dice"`` (segmentation), ``"auroc"`` or ``"accuracy"`` (classification); default the
            first; classification falls back to accuracy (with a warning) when the validation set has one class.
        spatial_size: classification input size (images are resized), ``None`` to keep the images' size.
        patch_size: segmentation training crop; for 3D also the sliding-window size of evaluation.
        augment: random flips during training.
        train_section, val_section, test_section: datalist sections.
        backbone_kwargs, head_kwargs, strict: passed to ``create_transfer_net``.
        device: default CUDA when available, else CPU.
        amp: mixed precision; default on for CUDA.
        progress: show a progress bar.
        tensorboard: write TensorBoard logs under ``out_dir/tensorboard`` (logged once and skipped when the package
            is missing).
        num_workers: data-loader workers.

    Returns:
        A dict (also saved as ``out_dir/result.json``): ``best_metric``, ``best_metric_name``, ``best_epoch``,
        ``epochs_run``, ``test`` (metrics or ``None``), ``checkpoint``, ``result_json``, ``out_dir``, ``n_train``,
        ``n_train_total``, ``n_val``, the run's settings and ``duration_s``.

    Raises:
        ValueError: unknown strategy/loss/task, ``num_classes`` disagreeing with the labels, a label outside
            ``[0, num_classes)``, a NaN in an image (the file is named).
        DatalistError: a missing section or key, or a missing file.
    """
    t0 = time.perf_counter()
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not datalist or not out_dir:
        raise ValueError("give datalist and out_dir")
    if not 0 < float(label_fraction) <= 1:
        raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    strat = create_strategy(
        strategy,
        **({} if isinstance(strategy, FinetuneStrategy) else {"lr": lr, "weight_decay": weight_decay,
                                                              "head_lr_mult": head_lr_mult, **dict(strategy_kwargs or {})}),
    )  # fmt: skip
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {list(LOSSES)}")
    out = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out, exist_ok=True)

    props, sections = _load_sections(datalist, [train_section, val_section], ("image", "label"),
                                     [test_section] if test_section else [])  # fmt: skip
    train_all, val = sections[train_section], sections[val_section]
    if task == "classification":
        # every section's labels must be in range; the class count comes from the training section
        n_cls = check_num_classes(train_all, task, num_classes, props)
        for name, rows in sections.items():
            check_num_classes(rows, task, n_cls, props) if name == train_section else _check_range(rows, n_cls)
    else:
        n_cls = check_num_classes(train_all, task, num_classes, props)
    patient_key = "patient_id" if all("patient_id" in e for e in train_all) else None
    subset = label_fractions(
        train_all,
        [float(label_fraction)],
        seed=seed,
        label_key="label" if task == "classification" else None,
        patient_key=patient_key,
    )[float(label_fraction)]
    dims = int(spatial_dims) if spatial_dims is not None else infer_spatial_dims(train_all, props)

    dev = default_device(device)
    use_amp = (dev.type == "cuda") if amp is None else bool(amp)
    set_determinism(seed=seed)
    from monai_transfer.networks import create_transfer_net

    net_config = {
        "backbone": backbone,
        "task": task,
        "spatial_dims": dims,
        "in_channels": int(in_channels),
        "num_classes": n_cls,
        "backbone_kwargs": dict(backbone_kwargs or {}),
        "head_kwargs": dict(head_kwargs or {}),
    }
    net = create_transfer_net(pretrained=pretrained, strict=strict, **net_config)
    divisible_by = int(max(s.stride for s in net.backbone.feature_info))
    groups = strat.apply(net)
    opt = (
        torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        if optimizer == "adamw"
        else torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    )
    net = net.to(dev)

    weights: list[float] | None = None
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or a list, got {class_weights!r}")
        counts = class_counts(subset, task, n_cls)
        weights = balanced_class_weights(counts)
        logger.info("class counts %s -> balanced weights %s", counts, weights)
    elif class_weights is not None:
        weights = [float(w) for w in class_weights]
        if len(weights) != n_cls:
            raise ValueError(f"class_weights has {len(weights)} entries but num_classes={n_cls}")
    loss_fn, loss_name = _make_loss(task, loss, weights, focal_gamma)

    xform = {"task": task, "spatial_dims": dims, "num_classes": n_cls, "spatial_size": spatial_size,
             "patch_size": patch_size, "divisible_by": divisible_by}  # fmt: skip
    train_loader = make_loader(subset, make_transforms(train=True, augment=augment, **xform), batch_size, True, seed,
                               num_workers=num_workers)  # fmt: skip
    val_loader = make_loader(
        val, make_transforms(train=False, **xform), batch_size, False, seed, num_workers=num_workers
    )
    inferer = make_inferer(task, dims, patch_size)

    if task == "classification" and key_metric in (None, "auroc"):
        val_classes = {int(float(e["label"])) for e in val}
        if len(val_classes) < 2:
            if key_metric == "auroc":
                raise ValueError(f"AUROC needs two classes in {val_section!r}; it has {sorted(val_classes)}")
            logger.warning("validation section has one class %s: AUROC undefined, using accuracy", val_classes)
            key_metric = "accuracy"
    evaluator = make_evaluator(net, val_loader, task, n_cls, dev, inferer, use_amp, key_metric)
    key_name = evaluator.state.key_metric_name
    ckpt_path = os.path.join(out, CHECKPOINT_NAME)
    config = {
        "network": net_config,
        "transforms": xform,
        "key_metric": key_name,
        "pretrained": pretrained,
        "strategy": strat.to_dict(),
        "label_fraction": float(label_fraction),
        "seed": int(seed),
    }
    checkpoint = AtomicBestCheckpoint(ckpt_path, net, key_name, extra={"config": config})
    trainer = make_trainer(
        net,
        opt,
        loss_fn,
        train_loader,
        epochs,
        dev,
        evaluator=evaluator,
        strategy_handlers=strat.handlers(opt),
        amp=use_amp,
        patience=patience,
        progress=progress,
        log_dir=os.path.join(out, "tensorboard") if tensorboard else None,
        checkpoint=checkpoint,
    )
    try:
        trainer.run()
    finally:
        writer = getattr(trainer, "tb_writer", None)
        if writer is not None:
            writer.close()
    if checkpoint.best_metric is None:
        # every validation metric was NaN: keep the last weights so that the run still has a checkpoint
        logger.warning("no finite validation %s; saving the last epoch's weights", key_name)
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        with atomic_write(ckpt_path) as tmp:
            torch.save({"network": state, "epoch": trainer.state.epoch, "metric": float("nan"),
                        "metric_name": key_name, "config": config}, tmp)  # fmt: skip

    test_metrics = None
    if test_section and test_section in sections and sections[test_section]:
        test_metrics = evaluate(ckpt_path, datalist, section=test_section, batch_size=batch_size, device=dev, amp=amp)
        cases = test_metrics.pop("cases", None)
        if cases is not None:
            atomic_write_json(os.path.join(out, "test_cases.json"), {"section": test_section, "cases": cases})
    result = {
        "best_metric": checkpoint.best_metric,
        "best_metric_name": key_name,
        "best_epoch": checkpoint.best_epoch,
        "epochs_run": int(trainer.state.epoch),
        "test": test_metrics,
        "checkpoint": ckpt_path,
        "result_json": os.path.join(out, RESULT_NAME),
        "out_dir": out,
        "datalist": os.path.abspath(os.fspath(datalist)),
        "backbone": backbone,
        "pretrained": pretrained,
        "task": task,
        "strategy": strat.to_dict(),
        "label_fraction": float(label_fraction),
        "seed": int(seed),
        "n_train": len(subset),
        "n_train_total": len(train_all),
        "n_val": len(val),
        "num_classes": n_cls,
        "spatial_dims": dims,
        "loss": loss_name,
        "class_weights": weights,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "device": str(dev),
        "amp": use_amp,
        "duration_s": round(time.perf_counter() - t0, 3),
    }
    atomic_write_json(result["result_json"], _json_safe(result))
    return result


def _check_range(rows: Sequence[Mapping[str, Any]], n_cls: int) -> None:
    for e in rows:
        v = e.get("label")
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"classification label {v!r} of {e.get('image')} is not a class index") from None
        if not math.isfinite(f) or f != int(f) or not 0 <= f < n_cls:
            raise ValueError(f"label {v!r} of {e.get('image')} is outside [0, {n_cls}) (num_classes={n_cls})")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def evaluate(
    checkpoint: str | os.PathLike,
    datalist: str | os.PathLike,
    section: str = "test",
    batch_size: int = 8,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    cases: bool = True,
    corruption: Callable | None = None,
) -> dict[str, Any]:
    """Evaluate a fine-tuned checkpoint (``best_model.pt`` or the run's ``out_dir``) on one datalist section.

    The network, its transforms and the sliding-window size are rebuilt from the configuration stored in the
    checkpoint; the weights load strictly (``torch.load(weights_only=True)``).

    Args:
        checkpoint: a checkpoint written by ``finetune``, or the run's output folder.
        datalist: MSD-style datalist JSON.
        section: the section evaluated.
        batch_size: evaluation batch size.
        device: default CUDA when available, else CPU.
        amp: mixed precision; default on for CUDA.
        cases: include per-case records (``"cases"``: classification ``label``/``prob``, segmentation ``dice`` per
            foreground class) for confidence intervals and paired tests.
        corruption: a dictionary transform applied to each loaded image before normalisation (robustness runs).

    Returns:
        ``{"section", "n", <metrics>, "checkpoint", ["cases"]}``: ``mean_dice`` for segmentation; ``auroc`` (``None``
        when the section has one class) and ``accuracy`` for classification.
    """
    path = os.fspath(checkpoint)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "network" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a monai_transfer fine-tuning checkpoint (needs 'network' and 'config')")
    config = payload["config"]
    net_config = dict(config["network"])
    task, n_cls = net_config["task"], int(net_config["num_classes"])
    _props, sections = _load_sections(datalist, [section], ("image", "label"))
    rows = sections[section]
    if not rows:
        raise ValueError(f"section {section!r} of {os.fspath(datalist)} is empty")
    if task == "classification":
        _check_range(rows, n_cls)
    from monai_transfer.networks import create_transfer_net

    net = create_transfer_net(**net_config)
    net.load_state_dict(payload["network"], strict=True)
    dev = default_device(device)
    use_amp = (dev.type == "cuda") if amp is None else bool(amp)
    net = net.to(dev).eval()
    xform = dict(config["transforms"])
    loader = make_loader(
        rows, make_transforms(train=False, corruption=corruption, **xform), batch_size, False, cache=False
    )
    inferer = make_inferer(task, int(xform["spatial_dims"]), xform.get("patch_size"))
    key = None
    if task == "classification":
        key = "auroc" if len({int(float(e["label"])) for e in rows}) > 1 else "accuracy"
    evaluator = make_evaluator(net, loader, task, n_cls, dev, inferer, use_amp, key, collect_cases=True)
    evaluator.run()
    metrics: dict[str, Any] = {"section": section, "n": len(rows), "checkpoint": path}
    for name, value in evaluator.state.metrics.items():
        metrics[name] = float(value)
    if task == "classification":
        metrics.setdefault("auroc", None)
    if cases:
        metrics["cases"] = evaluator.case_collector.cases
    return metrics
