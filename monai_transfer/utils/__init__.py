"""Small helpers shared by every layer (the bottom of the import graph)."""

from __future__ import annotations

from monai_transfer.utils.atomic import (
    atomic_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

__all__ = ["atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
