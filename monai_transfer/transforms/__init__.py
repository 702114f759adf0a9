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

# corruptions at five severities for robustness evaluation (monai_transfer.transforms.corruptions)
from .corruptions import (  # noqa: E402
    CORRUPTIONS,
    SEVERITIES,
    Corrupt,
    CorruptD,
    Corruptd,
    CorruptDict,
    RandCorrupt,
    RandCorruptD,
    RandCorruptd,
    RandCorruptDict,
    corrupt,
)

__all__ += [
    "CORRUPTIONS",
    "SEVERITIES",
    "Corrupt",
    "Corruptd",
    "CorruptD",
    "CorruptDict",
    "RandCorrupt",
    "RandCorruptd",
    "RandCorruptD",
    "RandCorruptDict",
    "corrupt",
]
