"""Heads mapping a backbone's pooled embedding to task outputs."""

from __future__ import annotations

from monai_transfer.networks.heads.classification import ClassificationHead

__all__ = ["ClassificationHead"]
