"""monai_transfer: transfer learning and self-supervised pretraining for 2D and 3D medical imaging."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"  # part of every result's identity (monai_transfer.utils.identity): bump when results change

#: subpackages, imported on first use: ``import monai_transfer`` stays cheap, and a bundle config's
#: ``$import monai_transfer`` reaches ``monai_transfer.engines.default_device()`` in its expressions
SUBPACKAGES = ("bundle", "data", "engines", "evaluation", "finetune", "losses", "networks", "ssl", "transforms",
               "utils", "weights")  # fmt: skip

__all__ = ["__version__", *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
