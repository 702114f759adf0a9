"""Slice geometry: normals, sorting along the normal, spacing, gaps and affines (LPS -> RAS).

DICOM patient coordinates are LPS. MONAI's readers (``ITKReader``, ``PydicomReader``) return RAS affines, so the
affines built here are RAS: ``diag(-1, -1, 1, 1) @ affine_lps``. The array axes are (X, Y, Z) = (column index,
row index, slice index), slices ascending along ``normal = row_cosine x column_cosine`` -- the order and axes of
``monai.transforms.LoadImage(reader="ITKReader")`` on the same series.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "slice_normal",
    "positions_along_normal",
    "sort_by_position",
    "spacing_and_gaps",
    "affine_ras",
    "LPS_TO_RAS",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of the slice plane from ImageOrientationPatient.

    Args:
        orientation: six direction cosines (row direction, then column direction).

    Returns:
        ``row x col`` normalised, shape (3,).
    """
    iop = np.asarray(orientation, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if norm == 0:
        raise ValueError(f"degenerate ImageOrientationPatient {list(iop)}")
    return n / norm


def positions_along_normal(orientation: Sequence[float], positions: Sequence[Sequence[float]]) -> np.ndarray:
    """Signed distance of every ImagePositionPatient along the slice normal (mm)."""
    return np.asarray(positions, dtype=np.float64).reshape(-1, 3) @ slice_normal(orientation)


def sort_by_position(orientation: Sequence[float], positions: Sequence[Sequence[float]]) -> np.ndarray:
    """Indices that sort slices ascending along the normal (stable, so equal positions keep their input order)."""
    return np.argsort(positions_along_normal(orientation, positions), kind="stable")


def spacing_and_gaps(
    distances: Sequence[float], rtol: float = 0.05, atol: float = 1e-3
) -> tuple[float | None, list[tuple[int, float]], list[int]]:
    """Slice spacing, gaps and duplicates of sorted distances along the normal.

    Args:
        distances: sorted positions along the normal (mm).
        rtol: relative tolerance for a step to count as regular.
        atol: absolute tolerance (mm) under which two positions are the same.

    Returns:
        ``(spacing, gaps, duplicates)``: the regular spacing (median of non-zero steps, ``None`` for fewer than two
        distinct positions); gaps as ``(index_before_gap, missing_slice_count_estimate)`` for steps larger than the
        spacing (missing slices) or otherwise irregular; duplicates as indices ``i`` with ``d[i] == d[i-1]``.
    """
    d = np.asarray(distances, dtype=np.float64)
    steps = np.diff(d)
    dup = [int(i) + 1 for i in np.nonzero(np.abs(steps) <= atol)[0]]
    nz = steps[np.abs(steps) > atol]
    if nz.size == 0:
        return None, [], dup
    spacing = float(np.median(nz))
    gaps: list[tuple[int, float]] = []
    for i, s in enumerate(steps):
        if abs(s) <= atol:
            continue
        if abs(s - spacing) > max(rtol * spacing, atol):
            gaps.append((i, round(float(s / spacing) - 1.0, 3)))
    return spacing, gaps, dup


def affine_ras(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    first_position: Sequence[float],
    slice_step: Sequence[float] | None = None,
    slice_spacing: float = 1.0,
) -> np.ndarray:
    """4x4 RAS affine of an (X, Y, Z) array.

    Args:
        orientation: ImageOrientationPatient (row cosine, column cosine).
        pixel_spacing: PixelSpacing as stored in DICOM: (between rows, between columns) = (dy, dx).
        first_position: ImagePositionPatient of the first slice (LPS).
        slice_step: vector (LPS, mm) from one slice to the next; defaults to ``normal * slice_spacing``.
        slice_spacing: spacing used when ``slice_step`` is not given.

    Returns:
        The affine mapping (i, j, k) voxel indices to RAS millimetres.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    dy, dx = float(pixel_spacing[0]), float(pixel_spacing[1])
    step = slice_normal(iop) * slice_spacing if slice_step is None else np.asarray(slice_step, dtype=np.float64)
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * dx
    aff[:3, 1] = iop[3:] * dy
    aff[:3, 2] = step
    aff[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return LPS_TO_RAS @ aff
