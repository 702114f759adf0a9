"""Where a set of pretrained weights came from, kept beside the weights themselves.

Transfer results depend on the pretraining method, the data and its modality, the input size and voxel spacing,
and the intensity normalisation the network saw. A checkpoint that forgets these invites a silent mismatch at
fine-tuning time, so ``save_pretrained`` writes a ``Provenance`` record with every checkpoint and
``load_pretrained`` returns it in ``LoadReport.provenance``. The idea follows model cards (Mitchell et al., 2019,
arXiv:1810.03993) and timm's ``PretrainedCfg``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = ["Provenance"]


def _tuple_or_none(value: Any) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Provenance:
    """A record of how a set of weights was produced.

    Attributes:
        method: pretraining method, e.g. ``"supervised (ImageNet-1k)"``, ``"SimCLR"``, ``"SwinUNETR SSL"``.
        source_data: the data the weights were trained on, e.g. ``"ImageNet-1k"``, ``"5,050 public CT volumes"``.
        modality: imaging modality, e.g. ``"natural images"``, ``"CT"``, ``"MR"``, ``"CXR"``.
        input_size: the spatial input (crop) size used in pretraining, one value per axis.
        spacing: voxel/pixel spacing in mm the data were resampled to, one value per axis (``None``: native).
        intensity_normalisation: how intensities were mapped before the network, in words or as a transform.
        licence: licence of the weights (and any restriction of the training data).
        url: where the weights were published.
        sha256: SHA-256 of the published file (full digest, or the prefix the publisher gives).
        backbone_name: registry name of the backbone the weights fit (``monai_transfer.networks.list_backbones``).
        spatial_dims: 2 or 3.
        in_channels: number of input channels the weights expect.
        citation: the paper to cite.
        notes: anything else a user should know.
        preprocessing: the same facts as data, read by fine-tuning, evaluation and inference to build their
            transforms: ``{"intensity": {"name": "imagenet", "mean": [...], "std": [...]}}`` (schemes in
            ``monai_transfer.transforms.preprocessing``); empty when unknown.
        extra: free-form metadata that fits no field above (kept on a round trip).
    """

    method: str = ""
    source_data: str = ""
    modality: str = ""
    input_size: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    intensity_normalisation: str = ""
    licence: str = ""
    url: str = ""
    sha256: str = ""
    backbone_name: str = ""
    spatial_dims: int | None = None
    in_channels: int | None = None
    citation: str = ""
    notes: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # frozen dataclass: normalise sequences (lists from JSON) to tuples so equality survives a round trip
        object.__setattr__(self, "input_size", _tuple_or_none(self.input_size))
        object.__setattr__(self, "spacing", _tuple_or_none(self.spacing))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        out = asdict(self)
        for key in ("input_size", "spacing"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Build from a dict; keys that are not fields go to ``extra`` rather than being lost."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names and k != "extra"}
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in names})
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        return cls.from_dict(json.loads(text))

    def update(self, **changes: Any) -> Provenance:
        """A copy with some fields changed (the record itself is immutable)."""
        return replace(self, **changes)

    def fill_from_module(self, module: Any) -> Provenance:
        """Fill ``backbone_name``, ``spatial_dims`` and ``in_channels`` from a backbone where they are empty."""
        changes: dict[str, Any] = {}
        if not self.backbone_name and getattr(module, "backbone_name", None):
            changes["backbone_name"] = str(module.backbone_name)
        if self.spatial_dims is None and getattr(module, "spatial_dims", None) is not None:
            changes["spatial_dims"] = int(module.spatial_dims)
        if self.in_channels is None and getattr(module, "in_channels", None) is not None:
            changes["in_channels"] = int(module.in_channels)
        return replace(self, **changes) if changes else self

    def summary(self, keys: Sequence[str] = ("method", "source_data", "modality", "licence", "url")) -> str:
        """One line naming the main facts, for logs and report tables."""
        parts = [f"{k}={getattr(self, k)}" for k in keys if getattr(self, k)]
        return ", ".join(parts) if parts else "(no provenance fields set)"
