"""2D slice sampling and 3D patch sampling from volumes, and cached datasets.

* :class:`ExtractSlice` / :class:`ExtractSliced`: a fixed slice (default the middle one) of a ``(C, X, Y, Z)`` volume.
* :class:`RandSlice` / :class:`RandSliced`: a random slice, drawn from ``self.R`` (seed with ``set_random_state``);
  the dictionary version cuts every key at the same index, can prefer slices containing foreground of a label key,
  and records the index under ``"slice_index"``. Output affines are 4x4 with the translation moved to the slice.
* :func:`patch_sampler`: MONAI's ``RandCropByPosNegLabeld`` (foreground-balanced, with a label) or
  ``RandSpatialCropSamplesd`` (uniform), padded to the patch size first.
* :func:`make_dataset`: ``Dataset`` / ``CacheDataset`` / ``PersistentDataset`` from one ``cache=`` switch.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.transforms import (
    Compose,
    MapTransform,
    RandCropByPosNegLabeld,
    Randomizable,
    RandSpatialCropSamplesd,
    SpatialPadd,
    Transform,
)
from monai.utils.type_conversion import convert_to_tensor

__all__ = [
    "ExtractSlice",
    "ExtractSliced",
    "ExtractSliceD",
    "ExtractSliceDict",
    "RandSlice",
    "RandSliced",
    "RandSliceD",
    "RandSliceDict",
    "patch_sampler",
    "make_dataset",
    "extract_slice",
]


def extract_slice(img: NdarrayOrTensor, index: int, axis: int = -1) -> torch.Tensor:
    """Slice ``index`` of a channel-first volume along spatial ``axis`` (``-1``: the last, axial for RAS).

    Returns a ``(C, ...)`` tensor with one spatial dim fewer; a MetaTensor keeps its metadata and gets a 4x4 affine
    whose columns follow the remaining axes (the removed one last) and whose origin is the slice's first voxel.
    """
    x = convert_to_tensor(img, track_meta=True)
    sd = x.ndim - 1
    ax = axis % sd
    n = x.shape[1 + ax]
    if not -n <= index < n:
        raise IndexError(f"slice {index} out of range for axis {axis} of size {n}")
    index = index % n
    out = x.select(1 + ax, index)
    if isinstance(x, MetaTensor):
        aff = torch.as_tensor(x.affine, dtype=torch.float64).clone()
        new = aff.clone()
        keep = [i for i in range(3) if i != ax] + [ax]
        new[:, :3] = aff[:, keep]
        new[:3, 3] = aff[:3, 3] + index * aff[:3, ax]
        meta = {k: v for k, v in x.meta.items() if k != "affine"}
        out = MetaTensor(out.as_tensor().contiguous(), affine=new, meta=meta)
        out.meta["slice_index"] = index
        out.meta["slice_axis"] = ax
        out.meta["spatial_shape"] = np.asarray(out.shape[1:])
    return out


class ExtractSlice(Transform):
    """A fixed slice of a channel-first volume.

    Args:
        axis: spatial axis (``-1`` = last).
        index: slice index; ``None`` for the middle slice.
    """

    def __init__(self, axis: int = -1, index: int | None = None) -> None:
        self.axis, self.index = axis, index

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        n = img.shape[1 + self.axis % (img.ndim - 1)]
        return extract_slice(img, n // 2 if self.index is None else self.index, self.axis)


class ExtractSliced(MapTransform):
    """Dictionary version of :class:`ExtractSlice` (same index for every key; stored under ``"slice_index"``)."""

    def __init__(
        self, keys: KeysCollection, axis: int = -1, index: int | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.axis, self.index = axis, index

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = d[keys[0]]
        n = first.shape[1 + self.axis % (first.ndim - 1)]
        idx = n // 2 if self.index is None else self.index
        for k in keys:
            d[k] = extract_slice(d[k], idx, self.axis)
        d["slice_index"] = idx
        return d


def _bounds(n: int, margin: float) -> tuple[int, int]:
    lo = int(np.floor(margin * n))
    hi = max(lo + 1, n - lo)
    return lo, hi


class RandSlice(Randomizable, Transform):
    """A random slice along ``axis``; with probability ``1 - prob`` the middle slice.

    Args:
        axis: spatial axis (``-1`` = last).
        prob: probability of a random (rather than the middle) slice.
        margin: fraction of slices excluded at each end (e.g. ``0.2`` keeps the central 60 %).
    """

    def __init__(self, axis: int = -1, prob: float = 1.0, margin: float = 0.0) -> None:
        if not 0 <= margin < 0.5:
            raise ValueError(f"margin must lie in [0, 0.5), got {margin}")
        self.axis, self.prob, self.margin = axis, prob, margin
        self._index = 0

    def randomize(self, n: int) -> None:
        """Draw the slice index for an axis of ``n`` slices."""
        do = self.R.rand() < self.prob
        lo, hi = _bounds(n, self.margin)
        self._index = int(self.R.randint(lo, hi)) if do else n // 2

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> torch.Tensor:
        n = img.shape[1 + self.axis % (img.ndim - 1)]
        if randomize:
            self.randomize(n)
        return extract_slice(img, self._index, self.axis)


class RandSliced(Randomizable, MapTransform):
    """Dictionary version of :class:`RandSlice`: one random index for every key, stored under ``"slice_index"``.

    Args:
        keys: volume keys (image and label).
        axis: spatial axis.
        prob: probability of a random (rather than the middle) slice.
        margin: fraction of slices excluded at each end.
        label_key: when given with ``pos_prob > 0``, draw (with probability ``pos_prob``) among slices whose label
            has foreground (``> 0``).
        pos_prob: probability of a foreground slice (needs ``label_key``).
        allow_missing_keys: skip missing keys.

    With the same seed and no ``label_key``, the index equals :class:`RandSlice`'s.
    """

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = -1,
        prob: float = 1.0,
        margin: float = 0.0,
        label_key: str | None = None,
        pos_prob: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 0 <= margin < 0.5:
            raise ValueError(f"margin must lie in [0, 0.5), got {margin}")
        self.axis, self.prob, self.margin = axis, prob, margin
        self.label_key, self.pos_prob = label_key, pos_prob
        self._index = 0

    def randomize(self, n: int, foreground: np.ndarray | None = None) -> None:
        """Draw the index; ``foreground`` lists slice indices with foreground."""
        do = self.R.rand() < self.prob
        lo, hi = _bounds(n, self.margin)
        if not do:
            self._index = n // 2
            return
        self._index = int(self.R.randint(lo, hi))
        if foreground is not None and self.pos_prob > 0:
            fg = foreground[(foreground >= lo) & (foreground < hi)]
            if len(fg) and self.R.rand() < self.pos_prob:
                self._index = int(fg[self.R.randint(len(fg))])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = d[keys[0]]
        sd = first.ndim - 1
        ax = self.axis % sd
        n = first.shape[1 + ax]
        fg = None
        if self.label_key is not None and self.pos_prob > 0:
            lab = convert_to_tensor(d[self.label_key], track_meta=False)
            dims = tuple(i for i in range(lab.ndim) if i != 1 + ax)
            fg = np.flatnonzero((lab > 0).any(dim=dims).cpu().numpy()) if dims else None
        self.randomize(n, fg)
        for k in keys:
            d[k] = extract_slice(d[k], self._index, self.axis)
        d["slice_index"] = self._index
        return d


ExtractSliceD = ExtractSliceDict = ExtractSliced
RandSliceD = RandSliceDict = RandSliced


def patch_sampler(
    keys: KeysCollection,
    patch_size: Sequence[int],
    num_samples: int = 4,
    label_key: str | None = None,
    pos: float = 1.0,
    neg: float = 1.0,
    image_key: str | None = None,
) -> Compose:
    """3D (or 2D) patch sampling as a MONAI dictionary transform returning ``num_samples`` patches per volume.

    Args:
        keys: keys cropped together (image and label).
        patch_size: patch size per spatial dim; smaller volumes are padded first.
        num_samples: patches per volume.
        label_key: sample foreground/background-balanced centres from this label (``RandCropByPosNegLabeld``);
            ``None`` for uniform random crops (``RandSpatialCropSamplesd``).
        pos: weight of foreground centres.
        neg: weight of background centres.
        image_key: image used to exclude empty background (``image > 0``) with a label.

    Returns:
        A ``Compose`` (seed it with ``set_random_state(seed)``); applied to a dict it returns a list of dicts.
    """
    ks = [keys] if isinstance(keys, str) else list(keys)
    size = [int(s) for s in patch_size]
    steps: list[Any] = [SpatialPadd(ks, spatial_size=size)]
    if label_key is not None:
        steps.append(
            RandCropByPosNegLabeld(ks, label_key, size, pos=pos, neg=neg, num_samples=num_samples, image_key=image_key)
        )
    else:
        steps.append(RandSpatialCropSamplesd(ks, size, num_samples=num_samples, random_size=False))
    return Compose(steps)


def make_dataset(
    datalist: Sequence[Mapping[str, Any]],
    transforms: Any = None,
    cache: str = "none",
    cache_dir: str | os.PathLike | None = None,
    cache_rate: float = 1.0,
    num_workers: int | None = 0,
) -> Dataset:
    """A MONAI dataset over ``datalist`` with optional caching of the deterministic transform prefix.

    Args:
        datalist: entries (dicts with ``"image"`` ...).
        transforms: a transform or a ``Compose``; caching datasets cache the result up to the first random transform.
        cache: ``"none"`` (``Dataset``), ``"memory"`` (``CacheDataset``), ``"disk"`` (``PersistentDataset``).
        cache_dir: folder for ``"disk"`` (required; created).
        cache_rate: share of items cached in memory.
        num_workers: workers filling the memory cache.

    Raises:
        ValueError: unknown ``cache`` or ``"disk"`` without ``cache_dir``.
    """
    data = [dict(e) for e in datalist]
    if cache == "none":
        return Dataset(data, transform=transforms)
    if cache == "memory":
        return CacheDataset(data, transform=transforms, cache_rate=cache_rate, num_workers=num_workers, progress=False)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError('cache="disk" needs cache_dir')
        os.makedirs(cache_dir, exist_ok=True)
        return PersistentDataset(data, transform=transforms, cache_dir=cache_dir)
    raise ValueError(f'cache must be "none", "memory" or "disk", got {cache!r}')
