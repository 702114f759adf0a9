"""From ``finetune``'s arguments to the run's bundle config, with every input checked before anything is written.

The plan reads a checked :class:`~monai_transfer.engines.specs.FinetuneSpec` and the datalist once: the sections exist, every classification label is one of the declared classes
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_transfer.data.datalist import load_datalist_file
from monai_transfer.engines.specs import FinetuneSpec, value_ids
from monai_transfer.finetune.cases import datalist_cases
from monai_transfer.finetune.config import KEY_METRIC_DEFAULT, finetune_config, strategy_parts
from monai_transfer.finetune.datalist_checks import check_num_classes, class_counts, infer_spatial_dims
from monai_transfer.finetune.strategies import create_strategy
from monai_transfer.transforms.checks import check_image_files
from monai_transfer.transforms.preprocessing import describe_intensity, intensity_of

__all__ = ["FinetunePlan", "plan_finetune"]

logger = logging.getLogger(__name__)


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


def plan_finetune(spec: FinetuneSpec, decision: Mapping[str, Any] | None = None) -> FinetunePlan:
    """Check a fine-tuning spec's inputs against its data and build its config; ``decision`` is the classifier's
    checked decision settings (:func:`monai_transfer.finetune.decision.decision_settings`)."""
    if not spec.datalist or not spec.out_dir:
        raise ValueError("give datalist and out_dir")
    task, datalist = spec.task, spec.datalist
    name, kwargs = strategy_parts(spec.strategy, spec.strategy_kwargs)
    create_strategy(name, **{"lr": spec.lr, "weight_decay": spec.weight_decay, **kwargs})  # checks them
    train_s, val_s, test_s = spec.train_section, spec.val_section, spec.test_section
    props = load_datalist_file(datalist)
    train_all = datalist_cases(datalist, str(train_s), task=task, num_classes=spec.num_classes)
    labels = _labels(props, task, spec.num_classes, train_all)
    n_cls = len(labels)
    subset = datalist_cases(datalist, str(train_s), task, n_cls, spec.label_fraction, spec.seed)
    val = datalist_cases(datalist, str(val_s), task, n_cls)
    test = datalist_cases(datalist, str(test_s), task, n_cls, required=False) if test_s else []
    if not subset or not val:
        raise ValueError(f"{os.fspath(datalist)}: the {'training subset' if not subset else val_s} is empty")
    dims = int(spec.spatial_dims) if spec.spatial_dims is not None else infer_spatial_dims(train_all, props)
    if test:  # training and validation images are read (and checked) as the run starts; the test ones only after it
        check_image_files(test, ("image", "label") if task == "segmentation" else ("image",), dims,
                          where=f"{os.fspath(datalist)} [{test_s}]")  # fmt: skip
    key = spec.key_metric or KEY_METRIC_DEFAULT[task]
    if task == "classification" and key == "auroc" and len({int(float(e["label"])) for e in val}) < 2:
        if spec.key_metric == "auroc":
            raise ValueError(f"AUROC needs two classes in {val_s!r}; it has one")
        logger.warning("validation section has one class: AUROC undefined, using accuracy")
        key = "accuracy"
    weights = _class_weights(spec.class_weights, subset, task, n_cls)
    intensity, intensity_note = _intensity(spec.pretrained, spec.backbone, spec.intensity)
    from monai_transfer.networks import create_backbone

    probe = create_backbone(spec.backbone, spatial_dims=dims, in_channels=spec.in_channels, **spec.backbone_kwargs)
    settled = spec.replace(spatial_dims=dims, num_classes=n_cls, key_metric=key, class_weights=weights,
                           intensity=intensity, pretrained=_pretrained_ref(spec.pretrained), strategy=name,
                           strategy_kwargs=kwargs, datalist=str(Path(datalist).resolve()),
                           out_dir=str(Path(spec.out_dir).resolve()))  # fmt: skip
    config = finetune_config(settled, labels, int(max(s.stride for s in probe.feature_info)), decision)
    values = {name: getattr(spec, name) for name in value_ids(type(spec))}
    facts = {"datalist": str(Path(datalist).resolve()), "backbone": spec.backbone, "pretrained": spec.pretrained,
             "task": task, "strategy": {"name": name, **kwargs}, "num_classes": n_cls, "labels": labels,
             "spatial_dims": dims, "n_train": len(subset), "n_train_total": len(train_all), "n_val": len(val),
             "test_section": test_s, "n_test": len(test), "key_metric": key, "loss": spec.loss,
             "class_weights": weights, **intensity_note, **values}  # fmt: skip
    return FinetunePlan(config=config, facts=facts)


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
