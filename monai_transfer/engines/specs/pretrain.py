"""A pretraining run's settings: one typed record that ``monai-transfer pretrain`` (flags and a YAML file of the same
names), :func:`monai_transfer.ssl.pretrain` and a study spec's ``ssl:`` section all build and check the same way.

Fields left ``None`` take the method's recommended value (``MethodSpec.defaults``) or a per-dimension default when
the run starts; the resolved record is written to ``<out>/config.yaml`` so every run can be repeated from its own
output. A YAML file written before the shared names keeps working: ``out`` is read as ``out_dir``, ``data`` as
``datalist``, ``overwrite: true`` as ``resume: overwrite``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from monai_transfer.engines.specs.base import SpecFieldError, TrainingRunSpec, setting
from monai_transfer.transforms.intensity_spec import intensity_spec

__all__ = ["PretrainSpec", "DEFAULT_ROI", "PRETRAIN_ALIASES", "load_pretrain_spec", "shared_names"]

#: crop size per spatial dimension when none is given (the demo volumes are 64^3)
DEFAULT_ROI: dict[int, tuple[int, ...]] = {2: (64, 64), 3: (64, 64, 64)}

#: the names a pretraining YAML file (and ``pretrain(...)``) used before the shared ones -> the shared field
PRETRAIN_ALIASES: dict[str, str] = {"out": "out_dir", "data": "datalist"}


def _resume(value: str) -> None:
    if value not in ("never", "auto", "overwrite") and not os.path.isfile(value):
        raise ValueError(f"never, auto, overwrite or a checkpoint file, got {value!r} (no such file)")


@dataclass
class PretrainSpec(TrainingRunSpec):
    """Everything a pretraining run needs (the shared fields of
    :class:`~monai_transfer.engines.specs.base.TrainingRunSpec` first)."""

    kind: ClassVar[str] = "pretraining"

    seed: int = setting(0, "initialisation, data order and views")
    resume: str = setting(
        "never", "an earlier run in out_dir: never refuses it, auto continues it from OUT/checkpoints/last.pt "
        "(changed settings are refused, named; more epochs go on), overwrite replaces its outputs, or a checkpoint "
        "file to continue from", cli=False, study=False, check=_resume)  # fmt: skip
    progress: bool = setting(True, "no progress bar", flag="--quiet", study=False)
    method: str = setting("", "SSL method (see --list)")
    backbone: str = setting("", "registry backbone ('monai-transfer backbones')", study=False)
    spatial_dims: int = setting(2, "2 or 3", choices=(2, 3), study=False)
    datalist: str = setting("", "datalist JSON of unlabeled images ({'image': path} entries) (or a MedMNIST .npz)",
                            flag="--data")  # fmt: skip
    section: str | None = setting(None, "datalist section (default: 'unlabeled', else 'training')")
    modality: str = setting("ct", "augmentation preset and default intensity mapping (xr is 2-D)",
                            choices=("ct", "mr", "xr"))  # fmt: skip
    intensity: dict[str, Any] | str | None = setting(
        None, "intensity mapping: minmax, percentile (over all voxels), zscore, range (fixed a_min..a_max), none, "
        "imagenet, or a preset (ct_soft_tissue, ct_lung..., mr, xr); default: the modality's preset", cli=False)  # fmt: skip
    roi_size: list[int] | int | None = setting(None, "view crop size (default 64 per axis)", nargs="+")
    in_channels: int = setting(1, "image channels", minimum=1)
    epochs: int = setting(100, "passes over the data", minimum=1)
    batch_size: int = setting(32, "per process (the global batch under torchrun is this times the ranks)", minimum=1)
    optimizer: str | None = setting(None, "adamw or sgd (default: the method's)", choices=("adamw", "sgd"))
    lr: float | None = setting(None, "peak learning rate (default: the method's)", minimum=0.0)
    min_lr: float = setting(1e-6, "final learning rate of the cosine", minimum=0.0)
    warmup_epochs: float | None = setting(None, "linear warm-up (default: 10%% of the run, at most 10)", minimum=0.0)
    weight_decay: float | None = setting(None, "start of the weight-decay schedule (default: the method's)",
                                         minimum=0.0)  # fmt: skip
    weight_decay_end: float | None = setting(None, "cosine end value (default: constant)", minimum=0.0)
    teacher_momentum: list[float] | None = setting(
        None, "START END of the EMA teacher's momentum, cosine (default: the method's)", nargs=2,
        metavar=("START", "END"))  # fmt: skip
    teacher_temperature: list[float] | None = setting(
        None, "DINO: start, end, warm-up epochs of the teacher temperature", cli=False
    )
    grad_clip: float | None = setting(None, "max gradient norm (default: none)", minimum=0.0)
    cache: bool = setting(False, "read and normalise every image once, keep it in memory (fast epochs; the views are "
                          "identical without it)")  # fmt: skip
    pretrained: str | None = setting(None, "start from these weights (checkpoint, bundle or source)", study=False)
    checkpoint_every: int = setting(100, "iterations between checkpoints (and at each epoch end)", minimum=1)
    keep_previous: bool = setting(False, "keep the checkpoint before the newest too (checkpoints/last.prev.pt: twice "
                                  "the disk)")  # fmt: skip
    method_kwargs: dict[str, Any] = setting(factory=dict, help="method options (temperature=0.2)",
                                            flag="--method-arg", nargs="*", metavar="KEY=VALUE")  # fmt: skip
    backbone_kwargs: dict[str, Any] = setting(factory=dict, help="backbone options (ViT img_size: the roi_size)",
                                              flag="--backbone-arg", nargs="*", metavar="KEY=VALUE", study=False)  # fmt: skip
    view_kwargs: dict[str, Any] = setting(factory=dict, help="view options (mask_ratio=0.6)", flag="--view-arg",
                                          nargs="*", metavar="KEY=VALUE")  # fmt: skip
    monitor_data: str | None = setting(None, "labelled datalist for the online kNN monitor (default: none)")
    monitor_every: int = setting(1, "epochs between kNN evaluations", minimum=1)
    monitor_k: int = setting(20, "kNN neighbours", minimum=1)

    def check(self) -> None:
        if self.intensity is not None:
            try:
                self.intensity = intensity_spec(self.intensity, where="intensity")
            except ValueError as err:
                raise SpecFieldError(str(err)) from None
        if self.modality == "xr" and self.spatial_dims == 3:
            raise SpecFieldError(
                "modality: 'xr' (radiograph augmentations) is 2-D; for 3-D data choose modality 'ct' or 'mr' and the "
                "intensity mapping that fits the data (--intensity minmax, percentile, zscore, range, none)"
            )
        if self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise SpecFieldError(f"warmup_epochs: must be within [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if self.roi_size is not None:
            roi = [self.roi_size] if isinstance(self.roi_size, int) else list(self.roi_size)
            if len(roi) not in (1, self.spatial_dims) or any(r < 1 for r in roi):
                raise SpecFieldError(f"roi_size: one positive integer or {self.spatial_dims}, got {self.roi_size!r}")
        if self.teacher_momentum is not None and (
            len(self.teacher_momentum) != 2 or not all(0.0 <= float(m) <= 1.0 for m in self.teacher_momentum)
        ):
            raise SpecFieldError(f"teacher_momentum: [start, end] within [0, 1], got {self.teacher_momentum}")
        if self.teacher_temperature is not None and len(self.teacher_temperature) != 3:
            raise SpecFieldError(f"teacher_temperature: [start, end, warmup_epochs], got {self.teacher_temperature}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], place: str = "", sep: str = ".") -> PretrainSpec:
        """As :meth:`RunSpec.from_mapping`, reading the names of :data:`PRETRAIN_ALIASES` and ``overwrite: true``."""
        return super().from_mapping(shared_names(values, place), place, sep)

    def merged(self, overrides: Mapping[str, Any]) -> PretrainSpec:
        """A copy with ``overrides`` applied (``None`` values are ignored: they mean "not given")."""
        given = shared_names({k: v for k, v in overrides.items() if v is not None}, "overrides")
        return type(self).from_mapping({**self.to_dict(), **given}, "overrides")

    def roi(self) -> tuple[int, ...]:
        """The view crop size, one value per axis."""
        if self.roi_size is None:
            return DEFAULT_ROI[self.spatial_dims]
        roi = [self.roi_size] if isinstance(self.roi_size, int) else list(self.roi_size)
        return tuple(int(r) for r in (roi * self.spatial_dims if len(roi) == 1 else roi))


def shared_names(values: Mapping[str, Any], place: str = "") -> dict[str, Any]:
    """``values`` with the older names (``out``, ``data``, ``overwrite``, ``resume: null``) read as the shared ones; a
    name given both ways is an error."""
    if not isinstance(values, Mapping):
        raise SpecFieldError(f"{place or 'pretraining options'}: expected a mapping, got {values!r}")
    out = dict(values)
    for old, new in PRETRAIN_ALIASES.items():
        if old in out:
            if new in out and out[new] != out[old]:
                raise SpecFieldError(f"{place + '.' if place else ''}{old}: give {old} or {new}, not both")
            out[new] = out.pop(old)
    if "overwrite" in out:
        overwrite = out.pop("overwrite")
        if not isinstance(overwrite, bool):
            raise SpecFieldError(f"{place + '.' if place else ''}overwrite: expected true or false, got {overwrite!r}")
        if overwrite:
            if out.get("resume") not in (None, "never", "overwrite"):
                raise SpecFieldError(f"{place + '.' if place else ''}overwrite: replaces the run; it cannot resume it")
            out["resume"] = "overwrite"
    if "resume" in out and out["resume"] is None:
        out["resume"] = "never"
    return out


def load_pretrain_spec(path: str | os.PathLike) -> PretrainSpec:
    """Read a YAML (or JSON) file of pretraining options; unknown keys and bad values raise ``ValueError`` naming the
    file and the field."""
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
    return PretrainSpec.from_mapping(values, path, ": ")
