"""monai_transfer: transfer learning and self-supervised pretraining for 2D and 3D medical imaging."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
