"""Sizes given per axis or once for all axes (``--spatial-size 64`` means 64 along every axis)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["per_axis"]


def per_axis(value: int | Sequence[int], spatial_dims: int, name: str = "size") -> list[int]:
    """``value`` as one integer per spatial axis: an int or a one-element sequence is repeated.

    Raises:
        ValueError: a sequence of another length than 1 or ``spatial_dims``, named.
    """
    values = [int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]
    if len(values) == 1:
        return values * int(spatial_dims)
    if len(values) != spatial_dims:
        raise ValueError(
            f"{name} {values} has {len(values)} values for {spatial_dims} spatial axes; give 1 or {spatial_dims}"
        )
    return values
