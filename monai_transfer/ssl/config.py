"""The pretraining configuration: one record that the command line, a YAML file and Python all fill.

``monai-transfer pretrain --method simclr --backbone resnet18 --spatial-dims 2 --data d.json --out runs/x`` and
``monai-transfer pretrain --config x.yaml`` with

.. code-block:: yaml

    method: simclr
    backbone: resnet18
    spatial_dims: 2
    data: d.json
    out: runs/x

build the same ``PretrainConfig``; flags given on the command line override the file. Fields left ``None`` take
the method's recommended value (``MethodSpec.defaults``) or a per-dimension default when the run starts, and the
resolved record is written to ``<out>/config.yaml`` so every run can be repeated from its own output.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["PretrainConfig", "load_config", "intensity_spec", "INTENSITY_PARAMS", "DEFAULT_ROI"]

#: crop size per spatial dimension when none is given (the demo volumes are 64^3)
DEFAULT_ROI: dict[int, tuple[int, ...]] = {2: (64, 64), 3: (64, 64, 64)}


#: parameters each intensity scheme of ``monai_transfer.transforms.preprocessing`` reads (``preset`` passes any
#: further keyword arguments on to the named preset's transform); an unknown key is an error, never ignored
INTENSITY_PARAMS: dict[str, tuple[str, ...] | None] = {
    "zscore": ("nonzero",),
    "imagenet": ("mean", "std"),
    "range": ("a_min", "a_max", "b_min", "b_max", "clip"),
    "minmax": ("minv", "maxv"),
    "percentile": ("lower", "upper", "b_min", "b_max"),
    "preset": None,
    "none": (),
}


def intensity_spec(value: Any, where: str = "config") -> dict[str, Any]:
    """Check an intensity spec and return it as a dict: ``"minmax"`` -> ``{"name": "minmax"}``; a preset name
    (``"ct_lung"``, ``"mr"``) -> ``{"name": "preset", "preset": "ct_lung"}``.

    Raises:
        ValueError: an unknown scheme or preset, an unknown or missing parameter, named with ``where``.
    """
    from monai_transfer.transforms.intensity import PRESETS
    from monai_transfer.transforms.preprocessing import INTENSITY_SCHEMES, intensity_components

    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: intensity must be a scheme name or a mapping with 'name', got {value!r}")
    spec = dict(value)
    name = str(spec.get("name", ""))
    if name not in INTENSITY_SCHEMES and name.lower() in PRESETS:
        spec = {**spec, "name": "preset", "preset": name.lower()}
        name = "preset"
    if name not in INTENSITY_SCHEMES:
        raise ValueError(
            f"{where}: unknown intensity {name!r}; schemes: {sorted(INTENSITY_SCHEMES)}, presets: {list(PRESETS)}"
        )
    accepted = INTENSITY_PARAMS.get(name, None)
    if accepted is not None:
        unknown = sorted(set(spec) - {"name", *accepted})
        if unknown:
            raise ValueError(
                f"{where}: intensity {name!r} has no parameter {unknown[0]!r}; it accepts {list(accepted) or 'none'}"
            )
    if name == "preset" and str(spec.get("preset", "")).lower() not in PRESETS:
        raise ValueError(f"{where}: intensity preset {spec.get('preset')!r} is unknown; known: {list(PRESETS)}")
    try:
        intensity_components(spec)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return spec


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs.

    Attributes:
        method: SSL method (``monai-transfer pretrain --list``).
        backbone: registry backbone (``monai-transfer backbones``).
        spatial_dims: 2 or 3.
        data: datalist JSON with an ``unlabeled`` (else ``training``) section of ``{"image": path}`` entries.
        out: output folder (checkpoints, encoder, logs, plots).
        section: datalist section; ``None``: ``unlabeled`` if present, else ``training``.
        modality: ``ct``, ``mr`` or ``xr``: picks the augmentation preset and the default intensity normalisation.
        intensity: the intensity normalisation as a spec of ``monai_transfer.transforms.preprocessing``
            (``{"name": "minmax"}``, ``{"name": "percentile", "lower": 0.5, "upper": 99.5}``, ``{"name": "none"}``,
            ``{"name": "preset", "preset": "ct_lung"}``...; a bare name is accepted); ``None``: the modality's preset.
            It is recorded in the encoder's provenance, so fine-tuning feeds the encoder what it saw.
        roi_size: crop size of a view, one value per axis (or one value for all); default 64 per axis.
        in_channels: image channels.
        epochs: passes over the data.
        batch_size: per process (the global batch under ``torchrun`` is this times the number of ranks).
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9); ``None``: the method's recommendation.
        lr: peak learning rate after warm-up; ``None``: the method's recommendation.
        min_lr: final learning rate of the cosine schedule.
        warmup_epochs: linear warm-up length (may be fractional); ``None``: 10 % of the run, at most 10 epochs.
        weight_decay: start of the weight-decay schedule; ``None``: the method's recommendation.
        weight_decay_end: end of the cosine weight-decay schedule; ``None``: constant.
        teacher_momentum: ``[start, end]`` of the EMA momentum (cosine); ``None``: the method's recommendation.
        teacher_temperature: DINO only, ``[start, end, warmup_epochs]`` (linear warm-up then constant).
        grad_clip: clip the gradient norm to this value; ``None``: no clipping.
        amp: ``"auto"`` (``None``), ``"on"`` or ``"off"`` (or a boolean): CUDA AMP; on CPU bfloat16 autocast where a
            short cached probe of the backbone at ``roi_size`` measures that it pays (``monai_transfer.engines.precision``).
        channels_last: ``"auto"`` (``None``; on for a 2D CNN in bfloat16 on CPU only), ``"on"``, ``"off"``: channels-last
            memory for the backbone's weights.
        compile: ``"on"`` compiles the backbone (``nn.Module.compile``; a failure is said once and the run goes eager).
        device: ``cpu``, ``cuda``, ``cuda:1``...; ``None``: CUDA when available.
        num_workers: data-loading processes.
        cache: read and normalise every image once and keep it in memory; only the random views run per epoch
            (fast epochs; needs memory for the whole dataset). The views are identical with and without it.
        seed: seeds the weights' initialisation, the data order and every random view.
        pretrained: initialise the backbone from these weights (a checkpoint, bundle or known source) before SSL.
        checkpoint_every: iterations between training checkpoints (always also at each epoch end).
        keep_previous: keep the checkpoint before the newest too (``last.prev.pt``: twice the disk).
        resume: ``None``; ``"auto"`` (continue from ``<out>/checkpoints/last.pt`` if it exists); or a path.
        overwrite: replace the outputs of an earlier run in ``out`` (without it, and without ``resume``, a folder
            holding a run is refused).
        method_kwargs: the method's own options (``temperature``, ``mask_ratio``, ``out_dim``...).
        backbone_kwargs: backbone options (ViT ``img_size`` defaults to ``roi_size``).
        view_kwargs: view-recipe options (``mask_patch_size``, ``num_local_views``...).
        monitor_data: labelled datalist for the online kNN monitor; ``None``: no monitor.
        monitor_every: epochs between kNN evaluations.
        monitor_k: neighbours of the kNN monitor.
        tensorboard: write TensorBoard logs under ``<out>/tensorboard``.
        mlflow_uri: MLflow tracking URI (for example ``sqlite:///runs/mlruns.db``); ``None``: no MLflow.
        progress: show a progress bar.
    """

    method: str = ""
    backbone: str = ""
    spatial_dims: int = 2
    data: str = ""
    out: str = ""
    section: str | None = None
    modality: str = "ct"
    intensity: dict[str, Any] | None = None
    roi_size: list[int] | None = None
    in_channels: int = 1
    epochs: int = 100
    batch_size: int = 32
    optimizer: str | None = None
    lr: float | None = None
    min_lr: float = 1e-6
    warmup_epochs: float | None = None
    weight_decay: float | None = None
    weight_decay_end: float | None = None
    teacher_momentum: list[float] | None = None
    teacher_temperature: list[float] | None = None
    grad_clip: float | None = None
    amp: bool | str | None = None
    channels_last: bool | str | None = None
    compile: bool | str = "off"
    device: str | None = None
    num_workers: int = 0
    cache: bool = False
    seed: int = 0
    pretrained: str | None = None
    checkpoint_every: int = 100
    keep_previous: bool = False
    resume: str | None = None
    overwrite: bool = False
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    view_kwargs: dict[str, Any] = field(default_factory=dict)
    monitor_data: str | None = None
    monitor_every: int = 1
    monitor_k: int = 20
    tensorboard: bool = True
    mlflow_uri: str | None = None
    progress: bool = True

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "config") -> PretrainConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` naming them and ``where`` they came from."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{where}: unknown pretraining option(s) {unknown}; known: {cls.field_names()}")
        values = dict(values)
        if values.get("intensity") is not None:
            values["intensity"] = intensity_spec(values["intensity"], where=where)
        config = cls(**values)
        config.validate(where)
        return config

    def merged(self, overrides: Mapping[str, Any]) -> PretrainConfig:
        """A copy with ``overrides`` applied (``None`` values are ignored: they mean "not given")."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return PretrainConfig.from_dict({**self.to_dict(), **given}, where="overrides")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, where: str = "config") -> None:
        """Raise ``ValueError`` naming the first option that cannot work (type and range checks only)."""
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"{where}: spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if self.intensity is not None and not isinstance(self.intensity, dict):
            raise ValueError(f"{where}: intensity must be a mapping, got {self.intensity!r}")
        if self.modality not in ("ct", "mr", "xr"):
            raise ValueError(f"{where}: modality must be 'ct', 'mr' or 'xr', got {self.modality!r}")
        if self.modality == "xr" and self.spatial_dims == 3:
            raise ValueError(
                f"{where}: modality 'xr' (radiograph augmentations) is 2-D; for 3-D data choose modality 'ct' or 'mr' "
                f"and the intensity mapping that fits the data (--intensity minmax, percentile, zscore, range, none)"
            )
        for name in ("epochs", "batch_size", "in_channels", "checkpoint_every", "monitor_every", "monitor_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
        if self.num_workers < 0:
            raise ValueError(f"{where}: num_workers must be >= 0, got {self.num_workers}")
        if self.optimizer is not None and self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"{where}: optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        for name in ("lr", "weight_decay", "weight_decay_end", "grad_clip"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{where}: {name} must be a non-negative number, got {value!r}")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"{where}: warmup_epochs must be within [0, epochs={self.epochs}], got {self.warmup_epochs}"
            )
        if self.roi_size is not None:
            roi = [self.roi_size] if isinstance(self.roi_size, int) else list(self.roi_size)
            if len(roi) not in (1, self.spatial_dims) or any(not isinstance(r, int) or r < 1 for r in roi):
                raise ValueError(
                    f"{where}: roi_size must be one positive integer or {self.spatial_dims}, got {self.roi_size!r}"
                )
        if self.teacher_momentum is not None and (
            len(self.teacher_momentum) != 2 or not all(0.0 <= float(m) <= 1.0 for m in self.teacher_momentum)
        ):
            raise ValueError(
                f"{where}: teacher_momentum must be [start, end] within [0, 1], got {self.teacher_momentum}"
            )
        if self.teacher_temperature is not None and len(self.teacher_temperature) != 3:
            raise ValueError(
                f"{where}: teacher_temperature must be [start, end, warmup_epochs], got {self.teacher_temperature}"
            )
        for name in ("method_kwargs", "backbone_kwargs", "view_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{where}: {name} must be a mapping, got {getattr(self, name)!r}")

    def roi(self) -> tuple[int, ...]:
        """The view crop size, one value per axis."""
        if self.roi_size is None:
            return DEFAULT_ROI[self.spatial_dims]
        roi = [self.roi_size] if isinstance(self.roi_size, int) else list(self.roi_size)
        return tuple(int(r) for r in (roi * self.spatial_dims if len(roi) == 1 else roi))


def load_config(path: str | os.PathLike) -> PretrainConfig:
    """Read a YAML (or JSON) pretraining config; unknown keys and bad values raise ``ValueError`` naming the file."""
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretraining config not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of options, got {type(values).__name__}")
    return PretrainConfig.from_dict(values, where=path)
