"""An intensity mapping given as data (``"minmax"``, ``{"name": "percentile", "lower": 0.5}``, a preset name), checked
and written out in full: what a pretraining run records in its encoder's provenance, so fine-tuning feeds the encoder
what it saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["intensity_spec", "INTENSITY_PARAMS"]


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
