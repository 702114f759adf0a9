"""From ``finetune``'s arguments to the run's bundle config, with every input checked before anything is written.

The plan reads the datalist once: the sections exist, every classification label is one of the declared classes
(the case is named otherwise), the class count agrees with the datalist's ``labels``, the label subset is not
empty, and every test image can be read (training and validation images are read as the run starts, test images
only once it has trained). It takes the starting point's intensity mapping from its provenance unless the user gives
one (then the departure is recorded and warned about). What it returns is data: the config (``finetune_config``) with
the run's values set, and the facts ``result.json`` reports.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_transfer.data.datalist import load_datalist_file
from monai_transfer.engines.precision import normalize_choice
from monai_transfer.finetune.cases import datalist_cases
from monai_transfer.finetune.config import KEY_METRIC_DEFAULT, finetune_config
from monai_transfer.finetune.strategies import FinetuneStrategy, create_strategy
from monai_transfer.finetune.tasks import TASKS, check_num_classes, class_counts, infer_spatial_dims
from monai_transfer.transforms.checks import check_image_files
from monai_transfer.transforms.preprocessing import describe_intensity, intensity_of

__all__ = ["FinetunePlan", "plan_finetune"]

logger = logging.getLogger(__name__)

#: finetune() argument -> config id it sets (the rest shape the config itself)
VALUE_IDS = {
    "seed": "seed",
    "label_fraction": "label_fraction",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "head_lr_mult": "head_lr_mult",
    "warmup_epochs": "warmup_epochs",
    "patience": "patience",
    "num_workers": "num_workers",
    "epochs": "train#trainer#max_epochs",
    "resume": "resume",
}


@dataclass
class FinetunePlan:
    """A checked fine-tuning run: its config and the facts its result reports."""

    config: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)


def _labels(props: Mapping[str, Any], task: str, num_classes: int | None, rows: list[dict[str, Any]]) -> list[str]:
    declared = props.get("labels") if isinstance(props.get("labels"), Mapping) else None
    if declared:
        n = len(declared)
        if num_classes is not None and int(num_classes) != n:
            extra = "; num_classes counts the background" if task == "segmentation" else ""
            raise ValueError(f"num_classes={num_classes} but the datalist declares {n} labels {dict(declared)}{extra}")
        return [str(declared.get(str(i), declared.get(i, f"class_{i}"))) for i in range(n)]  # type: ignore[call-overload]
    n = check_num_classes(rows, task, num_classes, props)
    return [f"class_{i}" for i in range(n)]


def _intensity(pretrained: Any, backbone: str, given: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    from monai_transfer.weights.starting_point import starting_provenance

    recorded = intensity_of(starting_provenance(pretrained, backbone).get("preprocessing"))
    if given is None:
        return recorded, {"intensity": recorded, "intensity_source": "starting point" if recorded else "default"}
    given = dict(given)
    note: dict[str, Any] = {"intensity": given, "intensity_source": "user"}
    if recorded is not None and given != recorded:
        msg = (f"intensity {describe_intensity(given)} departs from the starting point's "
               f"{describe_intensity(recorded)}: the encoder was pretrained on differently scaled inputs")  # fmt: skip
        warnings.warn(msg, UserWarning, stacklevel=3)
        note["intensity_override"] = {"used": given, "starting_point": recorded, "warning": msg}
    return given, note


def plan_finetune(
    backbone: str,
    pretrained: str | None,
    task: str,
    strategy: str | FinetuneStrategy,
    datalist: str | os.PathLike,
    out_dir: str | os.PathLike,
    values: Mapping[str, Any],
    strategy_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    in_channels: int = 1,
    loss: str = "auto",
    class_weights: str | Sequence[float] | None = None,
    focal_gamma: float = 2.0,
    optimizer: str = "adamw",
    key_metric: str | None = None,
    spatial_size: Sequence[int] | int | None = None,
    patch_size: Sequence[int] | int | None = None,
    augment: bool = True,
    sections: Sequence[str | None] = ("training", "validation", "test"),
    backbone_kwargs: Mapping[str, Any] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    strict: bool = True,
    device: str | None = None,
    amp: bool | str | None = None,
    channels_last: bool | str | None = None,
    compile: bool | str | None = "off",
    tensorboard: bool = True,
    progress: bool = False,
    intensity: Mapping[str, Any] | None = None,
    mlflow_uri: str | None = None,
    decision: Mapping[str, Any] | None = None,
) -> FinetunePlan:
    """Check ``finetune``'s inputs and build its config (arguments as in :func:`monai_transfer.finetune.finetune`;
    ``values`` holds the scalars of :data:`VALUE_IDS`)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not datalist or not out_dir:
        raise ValueError("give datalist and out_dir")
    if int(values["epochs"]) < 1 or int(values["batch_size"]) < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {values['epochs']} and {values['batch_size']}")
    strat = strategy if isinstance(strategy, FinetuneStrategy) else None
    name = strategy.name if strat is not None else str(strategy)
    kwargs = strat.to_dict() if strat is not None else dict(strategy_kwargs or {})
    kwargs.pop("name", None)
    create_strategy(name, **{"lr": values["lr"], "weight_decay": values["weight_decay"], **kwargs})  # checks them
    train_s, val_s, test_s = sections
    props = load_datalist_file(datalist)
    train_all = datalist_cases(datalist, str(train_s), task=task, num_classes=num_classes)
    labels = _labels(props, task, num_classes, train_all)
    n_cls = len(labels)
    subset = datalist_cases(datalist, str(train_s), task, n_cls, values["label_fraction"], values["seed"])
    val = datalist_cases(datalist, str(val_s), task, n_cls)
    test = datalist_cases(datalist, str(test_s), task, n_cls, required=False) if test_s else []
    if not subset or not val:
        raise ValueError(f"{os.fspath(datalist)}: the {'training subset' if not subset else val_s} is empty")
    dims = int(spatial_dims) if spatial_dims is not None else infer_spatial_dims(train_all, props)
    if test:  # training and validation images are read (and checked) as the run starts; the test ones only after it
        check_image_files(test, ("image", "label") if task == "segmentation" else ("image",), dims,
                          where=f"{os.fspath(datalist)} [{test_s}]")  # fmt: skip
    key = key_metric or KEY_METRIC_DEFAULT[task]
    if task == "classification" and key == "auroc" and len({int(float(e["label"])) for e in val}) < 2:
        if key_metric == "auroc":
            raise ValueError(f"AUROC needs two classes in {val_s!r}; it has one")
        logger.warning("validation section has one class: AUROC undefined, using accuracy")
        key = "accuracy"
    weights = _class_weights(class_weights, subset, task, n_cls)
    spec, intensity_note = _intensity(pretrained, backbone, intensity)
    from monai_transfer.networks import create_backbone

    probe = create_backbone(backbone, spatial_dims=dims, in_channels=in_channels, **dict(backbone_kwargs or {}))
    out = Path(out_dir).resolve()
    config = finetune_config(
        backbone, task, dims, n_cls, in_channels, pretrained=_pretrained_ref(pretrained), labels=labels,
        strategy=name, strategy_kwargs=kwargs, intensity=spec,
        divisible_by=int(max(s.stride for s in probe.feature_info)), spatial_size=spatial_size, patch_size=patch_size,
        loss=loss, class_weights=weights, optimizer=optimizer, key_metric=key, augment=augment,
        backbone_kwargs=backbone_kwargs, head_kwargs=head_kwargs, sections=(str(train_s), str(val_s)),
        dataset_dir=str(Path(datalist).resolve().parent), datalist=str(Path(datalist).resolve()), bundle_root=str(out),
        max_epochs=int(values["epochs"]), tensorboard=tensorboard, progress=progress, mlflow_uri=mlflow_uri,
        decision=decision,
    )  # fmt: skip
    config["network_def"]["strict"] = bool(strict)
    if config["loss"].get("gamma") is not None:
        config["loss"]["gamma"] = float(focal_gamma)
    for arg, cid in VALUE_IDS.items():
        _set(config, cid, values[arg])
    if device is not None:
        config["device"] = f"$torch.device({str(device)!r})"
    config["amp"] = normalize_choice(amp)
    config["channels_last"] = normalize_choice(channels_last, "channels_last")
    config["compile"] = normalize_choice(compile, "compile")
    facts = {"datalist": str(Path(datalist).resolve()), "backbone": backbone, "pretrained": pretrained, "task": task,
             "strategy": {"name": name, **kwargs}, "num_classes": n_cls, "labels": labels, "spatial_dims": dims,
             "n_train": len(subset), "n_train_total": len(train_all), "n_val": len(val), "test_section": test_s,
             "n_test": len(test), "key_metric": key, "loss": loss, "class_weights": weights, **intensity_note,
             **{k: values[k] for k in VALUE_IDS}}  # fmt: skip
    return FinetunePlan(config=config, facts=facts)


def _set(config: dict[str, Any], cid: str, value: Any) -> None:
    parts = cid.split("#")
    node = config
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def _pretrained_ref(pretrained: str | None) -> str | None:
    """A file or folder becomes an absolute path (the run is on this machine); a source name stays a name."""
    if pretrained is None:
        return None
    p = Path(pretrained)
    return str(p.resolve()) if p.exists() else str(pretrained)


def _class_weights(class_weights: Any, subset: list[dict[str, Any]], task: str, n_cls: int) -> list[float] | None:
    from monai_transfer.losses import balanced_class_weights

    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or a list, got {class_weights!r}")
        counts = class_counts(subset, task, n_cls)
        weights = balanced_class_weights(counts)
        logger.info("class counts %s -> balanced weights %s", counts, weights)
        return [float(w) for w in weights]
    weights = [float(w) for w in class_weights]
    if len(weights) != n_cls:
        raise ValueError(f"class_weights has {len(weights)} entries but num_classes={n_cls}")
    return weights
