"""MONAI-style array + dictionary transform pairs."""

from __future__ import annotations

from .intensity import (
    CT_WINDOWS,
    PRESETS,
    CTWindow,
    CTWindowD,
    CTWindowd,
    CTWindowDict,
    MRPercentileNormalize,
    MRPercentileNormalizeD,
    MRPercentileNormalized,
    MRPercentileNormalizeDict,
    RadiographNormalize,
    RadiographNormalizeD,
    RadiographNormalized,
    RadiographNormalizeDict,
    intensity_preset,
)

__all__ = [
    "CT_WINDOWS",
    "PRESETS",
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
]
