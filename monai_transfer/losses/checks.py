"""Input checks shared by the SSL losses."""

from __future__ import annotations

import torch

__all__ = ["check_pair"]


def check_pair(name: str, z1: torch.Tensor, z2: torch.Tensor, min_batch: int = 1) -> None:
    """Raise ``ValueError`` unless ``z1`` and ``z2`` are both ``(B, D)`` with the same shape and ``B >= min_batch``."""
    if z1.ndim != 2 or z2.ndim != 2:
        raise ValueError(f"{name} expects two embeddings of shape (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if z1.shape != z2.shape:
        raise ValueError(
            f"{name} expects inputs of the same shape (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    if z1.shape[0] < min_batch:
        raise ValueError(f"{name} needs a batch size of at least {min_batch}, got {z1.shape[0]}.")
