"""A pretraining configuration resolved: every option the user left unset takes the method's recommended value.

The run itself is a MONAI bundle config (``monai_transfer.bundle.templates.pretrain``: ``pretrain_config`` builds it
from a resolved :class:`~monai_transfer.ssl.config.PretrainConfig`, ``pretrain`` runs it); its parts live in
:mod:`monai_transfer.ssl.workflow`.
"""

from __future__ import annotations

from typing import Any

from monai_transfer.ssl.config import PretrainConfig

__all__ = ["resolve_config", "PATH_FIELDS", "SCHEDULE_DEFAULTS"]

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
