"""The preprocessing contract: a starting point's intensity mapping as data, turned into bundle components.

A pretrained backbone saw its inputs through one intensity mapping (ImageNet mean/std on [0, 1] images, a CT window,
an MR percentile scaling, a z-score...). Fine-tuning, evaluation and inference must feed it the same mapping, so the
mapping is recorded with the weights (``Provenance.preprocessing``) as a small dict::

    {"intensity": {"name": "imagenet", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    {"intensity": {"name": "range", "a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 1.0, "clip": true}}
    {"intensity": {"name": "preset", "preset": "mr"}}

and :func:`intensity_components` turns it into MONAI bundle components (``_target_`` dicts), so that every run's
config holds its preprocessing explicitly, where ``--set`` can reach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["INTENSITY_SCHEMES", "DEFAULT_INTENSITY", "intensity_components", "intensity_of", "describe_intensity"]

#: the mapping used when a starting point records none (random init, or an older checkpoint)
DEFAULT_INTENSITY: dict[str, Any] = {"name": "zscore"}


def _mean_over_channels(values: Sequence[float], in_channels: int) -> list[float]:
    vals = [float(v) for v in values]
    if len(vals) == in_channels:
        return vals
    # weights converted by channel surgery (RGB -> 1 channel sums the filters), so one channel sees the mean statistic
    m = sum(vals) / len(vals)
    return [m] * in_channels


def _zscore(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    return [{"_target_": "NormalizeIntensityd", "keys": keys, "nonzero": bool(spec.get("nonzero", False)),
             "channel_wise": True}]  # fmt: skip


def _imagenet(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    mean = _mean_over_channels(spec.get("mean", (0.485, 0.456, 0.406)), in_channels)
    std = _mean_over_channels(spec.get("std", (0.229, 0.224, 0.225)), in_channels)
    return [
        # medical images have no fixed 0..255 range: each image is scaled to [0, 1] first, as photographs are
        {"_target_": "ScaleIntensityd", "keys": keys, "minv": 0.0, "maxv": 1.0},
        {"_target_": "NormalizeIntensityd", "keys": keys, "subtrahend": mean, "divisor": std, "channel_wise": True},
    ]


def _range(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    return [{"_target_": "ScaleIntensityRanged", "keys": keys, "a_min": float(spec["a_min"]),
             "a_max": float(spec["a_max"]), "b_min": float(spec.get("b_min", 0.0)),
             "b_max": float(spec.get("b_max", 1.0)), "clip": bool(spec.get("clip", True))}]  # fmt: skip


def _minmax(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    return [{"_target_": "ScaleIntensityd", "keys": keys, "minv": float(spec.get("minv", 0.0)),
             "maxv": float(spec.get("maxv", 1.0)), "channel_wise": True}]  # fmt: skip


def _percentile(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    return [{"_target_": "ScaleIntensityRangePercentilesd", "keys": keys, "lower": float(spec.get("lower", 0.5)),
             "upper": float(spec.get("upper", 99.5)), "b_min": float(spec.get("b_min", 0.0)),
             "b_max": float(spec.get("b_max", 1.0)), "clip": True, "channel_wise": True}]  # fmt: skip


def _preset(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "preset")}
    return [{"_target_": "monai_transfer.transforms.intensity_preset", "name": str(spec["preset"]), "keys": keys,
             **kwargs}]  # fmt: skip


def _none(spec: Mapping[str, Any], keys: str, in_channels: int) -> list[dict[str, Any]]:
    return []


#: scheme name -> builder of the bundle components (data, not an if-chain)
INTENSITY_SCHEMES = {
    "zscore": _zscore,
    "imagenet": _imagenet,
    "range": _range,
    "minmax": _minmax,
    "percentile": _percentile,
    "preset": _preset,
    "none": _none,
}


def intensity_components(
    spec: Mapping[str, Any] | None, keys: str = "image", in_channels: int = 1
) -> list[dict[str, Any]]:
    """The bundle components (``_target_`` dicts) of an intensity spec (``None``: :data:`DEFAULT_INTENSITY`).

    Raises:
        ValueError: an unknown scheme name or a missing parameter, named.
    """
    spec = dict(spec or DEFAULT_INTENSITY)
    name = str(spec.get("name", ""))
    if name not in INTENSITY_SCHEMES:
        raise ValueError(f"unknown intensity scheme {name!r}; known: {sorted(INTENSITY_SCHEMES)}")
    try:
        return INTENSITY_SCHEMES[name](spec, keys, int(in_channels))
    except KeyError as e:
        raise ValueError(f"intensity scheme {name!r} needs parameter {e.args[0]!r}; got {spec}") from None


def intensity_of(preprocessing: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The intensity spec inside a provenance ``preprocessing`` record, or ``None``."""
    if not preprocessing:
        return None
    value = preprocessing.get("intensity")
    return dict(value) if isinstance(value, Mapping) else None


def describe_intensity(spec: Mapping[str, Any] | None) -> str:
    """One line for logs and READMEs: ``imagenet(mean=[...], std=[...])``."""
    spec = dict(spec or DEFAULT_INTENSITY)
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec.get('name')}({args})"
