"""Several independently augmented views of one image, as MONAI transforms (the input side of joint-embedding SSL).

SimCLR (Chen et al. 2020, arXiv:2002.05709), MoCo, BYOL, Barlow Twins and VICReg feed two random views of each image
to the network; DINO (Caron et al. 2021, arXiv:2104.14294) adds several small "local" crops made by a second
pipeline (multi-crop, Caron et al. 2020, SwAV, arXiv:2006.09882). Keeping the views in the dictionary
(``image_v1``, ``image_v2``, ...) lets ``Compose``, caching datasets, collation and MetaTensor metadata work unchanged.

Every view is made by the same transform object after re-seeding it from this transform's ``self.R``, so the views
get independent draws, and seeding the outer ``Compose`` (``set_random_state``) or MONAI's DataLoader worker seeding
makes the whole multi-view pipeline reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import MAX_SEED, ensure_tuple

__all__ = [
    "RandMultiView",
    "RandMultiViewd",
    "RandMultiViewD",
    "RandMultiViewDict",
]

ViewGroup = tuple[int, Callable[[Any], Any]]


def _groups(
    transform: Callable | None,
    num_views: int,
    local_transform: Callable | None,
    num_local_views: int,
    groups: Sequence[ViewGroup] | None,
) -> list[ViewGroup]:
    if groups is not None:
        if transform is not None or local_transform is not None:
            raise ValueError("give either `groups` or `transform` (with `local_transform`), not both")
        out = [(int(n), t) for n, t in groups]
    else:
        if transform is None:
            raise ValueError("a view transform is required (`transform` or `groups`)")
        out = [(int(num_views), transform)]
        if num_local_views:
            if local_transform is None:
                raise ValueError("num_local_views > 0 needs a local_transform")
            out.append((int(num_local_views), local_transform))
    if any(n < 0 for n, _ in out) or sum(n for n, _ in out) < 1:
        raise ValueError(f"view counts must be >= 0 with at least one view, got {[n for n, _ in out]}")
    return out


def _reseed(transform: Callable, seed: int) -> None:
    # a non-Randomizable callable cannot be seeded; it must then be deterministic (documented)
    if isinstance(transform, Randomizable):
        transform.set_random_state(seed=seed)


def _clone(x: Any) -> Any:
    # each view starts from its own copy, so no view transform can alter the source or another view in place
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


class _MultiViewBase(Randomizable):
    """Holds the view groups and draws one seed per view from ``self.R``."""

    def __init__(self, groups: list[ViewGroup]) -> None:
        self.groups = groups
        self.num_total_views = sum(n for n, _ in groups)
        self._seeds: list[int] = []

    def randomize(self, data: Any = None) -> None:
        """Draw one seed per view (all views of all groups) from ``self.R``."""
        self._seeds = [int(s) for s in self.R.randint(MAX_SEED, size=self.num_total_views, dtype="uint32")]

    def _view_transforms(self) -> list[Callable]:
        return [t for n, t in self.groups for _ in range(n)]

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _MultiViewBase:
        super().set_random_state(seed, state)
        # the views re-seed their transforms on every call; seeding them here too makes a direct call reproducible
        for _, t in self.groups:
            _reseed(t, int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self


class RandMultiView(_MultiViewBase, Transform):
    """Apply a random (array) transform to one image several times with independent draws; return the views.

    Args:
        transform: the view pipeline (an array transform or ``Compose``), applied ``num_views`` times.
        num_views: number of views from ``transform``.
        local_transform: a second pipeline (e.g. DINO's small local crops), applied ``num_local_views`` times.
        num_local_views: number of views from ``local_transform``.
        groups: instead of the above, a list of ``(count, transform)`` groups, in output order.

    There is no ``prob``: every view must exist (batches need them); the pipeline's transforms carry their own.
    Transforms that are not ``Randomizable`` cannot be seeded and should be deterministic.
    """

    def __init__(
        self,
        transform: Callable | None = None,
        num_views: int = 2,
        local_transform: Callable | None = None,
        num_local_views: int = 0,
        groups: Sequence[ViewGroup] | None = None,
    ) -> None:
        _MultiViewBase.__init__(self, _groups(transform, num_views, local_transform, num_local_views, groups))

    def __call__(self, img: Any, randomize: bool = True) -> list[Any]:
        """Return the list of views of ``img`` (group order, ``num_views`` then ``num_local_views``)."""
        if randomize:
            self.randomize()
        views = []
        for t, seed in zip(self._view_transforms(), self._seeds, strict=True):
            _reseed(t, seed)
            views.append(t(_clone(img)))
        return views


class RandMultiViewd(_MultiViewBase, MapTransform):
    """Dictionary version: writes ``{key}_v{index}`` (1-based over all groups) for every key.

    Each view runs the pipeline on a shallow copy of the whole dictionary whose ``keys`` are cloned, so the pipeline
    may be any dictionary transform over ``keys`` (crops, flips, intensity, and extra outputs such as a rotation
    label). The view's ``view_keys`` (default ``keys``) are then copied out under the view's names.

    Args:
        keys: source image key(s); default ``"image"``.
        transform: the dictionary view pipeline applied ``num_views`` times.
        num_views: number of views from ``transform``.
        local_transform: a second dictionary pipeline (DINO's local crops), applied ``num_local_views`` times; its
            views are numbered after the first group's (``image_v3`` ...).
        num_local_views: number of views from ``local_transform``.
        groups: instead of the above, a list of ``(count, transform)`` groups, in output order.
        view_keys: keys read from each view's result (default ``keys``); e.g. ``("image", "rot")`` also stores a
            rotation label per view as ``rot_v1`` ...
        output_format: ``str.format`` pattern with ``{key}`` and ``{index}`` (1-based).
        keep_source: keep the source ``keys`` in the output (drop them to save memory once only views are needed).
        allow_missing_keys: don't raise for missing ``keys``.

    There is no ``prob``: every view must exist (batches need them); the pipeline's transforms carry their own.

    Example:
        >>> views = RandMultiViewd("image", ssl_augmentations(2, (64, 64)), num_views=2)  # image_v1, image_v2
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        transform: Callable | None = None,
        num_views: int = 2,
        local_transform: Callable | None = None,
        num_local_views: int = 0,
        groups: Sequence[ViewGroup] | None = None,
        view_keys: KeysCollection | None = None,
        output_format: str = "{key}_v{index}",
        keep_source: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        _MultiViewBase.__init__(self, _groups(transform, num_views, local_transform, num_local_views, groups))
        self.view_keys = tuple(ensure_tuple(view_keys)) if view_keys is not None else tuple(self.keys)
        if "{key}" not in output_format or "{index}" not in output_format:
            raise ValueError(f"output_format needs '{{key}}' and '{{index}}', got {output_format!r}")
        self.output_format, self.keep_source = output_format, keep_source

    def output_keys(self) -> list[str]:
        """The keys this transform writes, in order."""
        return [
            self.output_format.format(key=k, index=i)
            for i in range(1, self.num_total_views + 1)
            for k in self.view_keys
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        self.randomize()
        for index, (t, seed) in enumerate(zip(self._view_transforms(), self._seeds, strict=True), start=1):
            view_in = dict(d)
            for k in keys:
                view_in[k] = _clone(d[k])
            _reseed(t, seed)
            out = t(view_in)
            if not isinstance(out, Mapping):
                raise TypeError(
                    f"the view pipeline must return one dictionary, got {type(out).__name__} (a multi-sample crop "
                    "such as RandCropByPosNegLabeld belongs before the multi-view transform)"
                )
            for k in self.view_keys:
                if k in out:
                    d[self.output_format.format(key=k, index=index)] = out[k]
                elif not self.allow_missing_keys:
                    raise KeyError(f"view {index}: the view pipeline produced no key {k!r}")
        if not self.keep_source:
            for k in keys:
                d.pop(k, None)
        return d


RandMultiViewD = RandMultiViewDict = RandMultiViewd
