"""Modality intensity presets as MONAI array/dictionary transform pairs.

* :class:`CTWindow` / :class:`CTWindowd`: a Hounsfield-unit window (level L, width W) mapped linearly to
  ``[out_min, out_max]``: ``L - W/2 -> out_min``, ``L + W/2 -> out_max``, clipped. Presets in :data:`CT_WINDOWS`.
* :class:`MRPercentileNormalize` / :class:`MRPercentileNormalized`: per-channel percentiles (over non-zero voxels by
  default, i.e. the head/body) mapped to ``[out_min, out_max]`` (Nyul-free robust scaling common for MRI).
* :class:`RadiographNormalize` / :class:`RadiographNormalized`: percentile scaling of a projection radiograph, then
  inversion for ``MONOCHROME1`` (low values bright) so that every radiograph reads ``MONOCHROME2`` (bone bright).
  Apply the DICOM modality and VOI LUTs first with :func:`monai_transfer.data.radiograph.read_radiograph`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils.type_conversion import convert_to_tensor

__all__ = [
    "CT_WINDOWS",
    "CTWindow",
    "CTWindowd",
    "CTWindowD",
    "CTWindowDict",
    "MRPercentileNormalize",
    "MRPercentileNormalized",
    "MRPercentileNormalizeD",
    "MRPercentileNormalizeDict",
    "RadiographNormalize",
    "RadiographNormalized",
    "RadiographNormalizeD",
    "RadiographNormalizeDict",
    "intensity_preset",
    "PRESETS",
]

#: CT windows as (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct_soft_tissue": (40.0, 400.0),
    "ct_abdomen": (50.0, 400.0),
    "ct_mediastinum": (50.0, 350.0),
    "ct_liver": (30.0, 150.0),
    "ct_lung": (-600.0, 1500.0),
    "ct_bone": (400.0, 1800.0),
    "ct_brain": (40.0, 80.0),
    "ct_subdural": (75.0, 215.0),
}


def _float(img: NdarrayOrTensor) -> torch.Tensor:
    t = convert_to_tensor(img, track_meta=True)
    return t.float() if not torch.is_floating_point(t) else t


class CTWindow(Transform):
    """Map a HU window ``[level - width/2, level + width/2]`` to ``[out_min, out_max]`` (clipped by default).

    Args:
        preset: a name in :data:`CT_WINDOWS` (``"ct_soft_tissue"``, ``"ct_lung"``, ``"ct_bone"``, ...).
        level: window level (centre) in HU; overrides the preset's.
        width: window width in HU; overrides the preset's.
        out_min: output value at the window's lower edge.
        out_max: output value at the window's upper edge.
        clip: clip to ``[out_min, out_max]``.
    """

    def __init__(
        self,
        preset: str | None = None,
        level: float | None = None,
        width: float | None = None,
        out_min: float = 0.0,
        out_max: float = 1.0,
        clip: bool = True,
    ) -> None:
        if preset is not None and preset not in CT_WINDOWS:
            raise ValueError(f"unknown CT window preset {preset!r}; known: {sorted(CT_WINDOWS)}")
        pl, pw = CT_WINDOWS[preset] if preset else (None, None)
        self.level = float(level if level is not None else pl if pl is not None else np.nan)
        self.width = float(width if width is not None else pw if pw is not None else np.nan)
        if not np.isfinite(self.level) or not np.isfinite(self.width) or self.width <= 0:
            raise ValueError("give a preset or a level and a positive width")
        self.out_min, self.out_max, self.clip = float(out_min), float(out_max), clip

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """Window ``img`` (HU, any shape); returns a float tensor (MetaTensor metadata kept)."""
        x = _float(img)
        lo = self.level - self.width / 2
        y = (x - lo) / self.width * (self.out_max - self.out_min) + self.out_min
        if self.clip:
            y = y.clamp(min(self.out_min, self.out_max), max(self.out_min, self.out_max))
        return y


class CTWindowd(MapTransform):
    """Dictionary version of :class:`CTWindow`."""

    backend = [torch.Tensor]

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        """Args: keys; allow_missing_keys; the keyword arguments of :class:`CTWindow`."""
        super().__init__(keys, allow_missing_keys)
        self.t = CTWindow(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = self.t(d[k])
        return d


def _percentile_scale(
    x: torch.Tensor, lower: float, upper: float, out_min: float, out_max: float, clip: bool, nonzero: bool
) -> torch.Tensor:
    out = torch.empty_like(x)
    for c in range(x.shape[0]):
        xc = x[c]
        vals = xc[xc != 0] if nonzero else xc.reshape(-1)
        if vals.numel() == 0:
            out[c] = xc * 0 + out_min
            continue
        v = vals.detach().double().cpu().numpy()
        lo, hi = (float(p) for p in np.percentile(v, [lower, upper]))
        scale = (out_max - out_min) / (hi - lo) if hi > lo else 0.0
        yc = (xc - lo) * scale + out_min
        if clip:
            yc = yc.clamp(min(out_min, out_max), max(out_min, out_max))
        if nonzero:
            yc = torch.where(xc != 0, yc, torch.zeros_like(yc) + out_min)
        out[c] = yc
    return out


class MRPercentileNormalize(Transform):
    """Scale each channel so its ``lower``/``upper`` percentiles map to ``out_min``/``out_max``.

    Args:
        lower: lower percentile (0-100).
        upper: upper percentile (0-100).
        out_min: value of the lower percentile.
        out_max: value of the upper percentile.
        clip: clip to ``[out_min, out_max]``.
        nonzero: percentiles over non-zero voxels (skull-stripped or masked MRI); zeros map to ``out_min``.
    """

    def __init__(
        self,
        lower: float = 1.0,
        upper: float = 99.0,
        out_min: float = 0.0,
        out_max: float = 1.0,
        clip: bool = True,
        nonzero: bool = True,
    ) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
        self.lower, self.upper, self.out_min, self.out_max = lower, upper, out_min, out_max
        self.clip, self.nonzero = clip, nonzero

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """Normalise a channel-first image."""
        x = _float(img)
        return _percentile_scale(x, self.lower, self.upper, self.out_min, self.out_max, self.clip, self.nonzero)


class MRPercentileNormalized(MapTransform):
    """Dictionary version of :class:`MRPercentileNormalize`."""

    backend = [torch.Tensor]

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        """Args: keys; allow_missing_keys; the keyword arguments of :class:`MRPercentileNormalize`."""
        super().__init__(keys, allow_missing_keys)
        self.t = MRPercentileNormalize(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = self.t(d[k])
        return d


def _photometric_from_meta(img: Any) -> str | None:
    if isinstance(img, MetaTensor):
        for k in ("PhotometricInterpretation", "photometric_interpretation", "0028|0004"):
            v = img.meta.get(k)
            if v:
                return str(v).strip()
    return None


class RadiographNormalize(Transform):
    """Percentile-scale a radiograph to ``[out_min, out_max]`` and invert ``MONOCHROME1`` images.

    Args:
        lower: lower percentile (0-100); 0 is the minimum.
        upper: upper percentile (0-100); 100 is the maximum.
        out_min: output minimum.
        out_max: output maximum.
        invert: force inversion on/off; ``None`` inverts when the photometric interpretation is ``MONOCHROME1``.
    """

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        out_min: float = 0.0,
        out_max: float = 1.0,
        invert: bool | None = None,
    ) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
        self.lower, self.upper, self.out_min, self.out_max, self.invert = lower, upper, out_min, out_max, invert

    def __call__(self, img: NdarrayOrTensor, photometric: str | None = None) -> torch.Tensor:
        """Normalise ``img``; ``photometric`` (e.g. ``"MONOCHROME1"``) overrides the MetaTensor's metadata."""
        pi = photometric if photometric is not None else _photometric_from_meta(img)
        x = _float(img)
        y = _percentile_scale(x, self.lower, self.upper, self.out_min, self.out_max, True, False)
        inv = self.invert if self.invert is not None else (pi or "").upper() == "MONOCHROME1"
        if inv:
            y = (self.out_max + self.out_min) - y
        if isinstance(y, MetaTensor) and pi is not None:
            y.meta["PhotometricInterpretation"] = "MONOCHROME2" if inv or pi.upper() == "MONOCHROME2" else pi
        return y


class RadiographNormalized(MapTransform):
    """Dictionary version of :class:`RadiographNormalize`.

    Args:
        keys: image keys.
        photometric_key: data key holding the photometric interpretation (a string); when absent from the data,
            the image's MetaTensor metadata is used.
        allow_missing_keys: skip missing keys.
        kwargs: the keyword arguments of :class:`RadiographNormalize`.
    """

    backend = [torch.Tensor]

    def __init__(
        self,
        keys: KeysCollection,
        photometric_key: str | None = "photometric_interpretation",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.photometric_key = photometric_key
        self.t = RadiographNormalize(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pi = d.get(self.photometric_key) if self.photometric_key else None
        for k in self.key_iterator(d):
            d[k] = self.t(d[k], photometric=str(pi) if pi is not None else None)
        return d


CTWindowD = CTWindowDict = CTWindowd
MRPercentileNormalizeD = MRPercentileNormalizeDict = MRPercentileNormalized
RadiographNormalizeD = RadiographNormalizeDict = RadiographNormalized

#: Preset names accepted by :func:`intensity_preset`.
PRESETS: tuple[str, ...] = (*CT_WINDOWS, "mr", "mri", "xr", "radiograph")


def intensity_preset(name: str, keys: KeysCollection | None = None, **kwargs: Any) -> Transform | MapTransform:
    """The intensity transform for a modality preset: a CT window name, ``"mr"``/``"mri"``, ``"xr"``/``"radiograph"``.

    Args:
        name: preset name (see :data:`PRESETS`).
        keys: return the dictionary version on these keys; default the array version.
        kwargs: passed to the transform (e.g. ``out_min=-1``).
    """
    n = name.lower()
    if n in CT_WINDOWS:
        return CTWindowd(keys, preset=n, **kwargs) if keys is not None else CTWindow(preset=n, **kwargs)
    if n in ("mr", "mri"):
        return MRPercentileNormalized(keys, **kwargs) if keys is not None else MRPercentileNormalize(**kwargs)
    if n in ("xr", "radiograph", "cr", "dx"):
        return RadiographNormalized(keys, **kwargs) if keys is not None else RadiographNormalize(**kwargs)
    raise ValueError(f"unknown intensity preset {name!r}; known: {list(PRESETS)}")
