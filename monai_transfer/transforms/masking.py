"""Masks for masked-image modelling and in-painting, as MONAI array/dictionary transform pairs.

* :class:`RandPatchMask` / :class:`RandPatchMaskd`: a random patch mask for MAE (He et al. 2022, arXiv:2111.06377)
  and SimMIM (Xie et al. 2022, arXiv:2111.09886): shape ``(1, *grid)`` with ``grid = spatial // patch_size``, float
  {0, 1}, 1 = masked, and exactly ``round(mask_ratio * n_patches)`` masked patches, so every sample of a batch masks
  the same number of tokens (MAE drops them from the encoder input, which needs equal lengths).
* :class:`RandCutout` / :class:`RandCutoutd`: SwinUNETR-SSL's masked-volume in-painting input (Tang et al. 2022,
  arXiv:2111.14791, ``patch_rand_drop``): random boxes (up to ``max_block_size`` of each side) are filled with noise
  (standard normal, min-max scaled to [0, 1] per box, as the paper's code) or a constant, until a masked fraction
  drawn uniformly in ``[0, max_fraction]`` is reached; boxes that would push it past ``max_fraction`` are redrawn.
  MONAI's :class:`~monai.transforms.RandCoarseDropout` is similar but draws a fixed number of holes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import ensure_tuple, ensure_tuple_rep
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = [
    "patch_grid",
    "RandPatchMask",
    "RandPatchMaskd",
    "RandPatchMaskD",
    "RandPatchMaskDict",
    "RandCutout",
    "RandCutoutd",
    "RandCutoutD",
    "RandCutoutDict",
]


def patch_grid(spatial_size: Sequence[int], patch_size: Sequence[int] | int) -> tuple[int, ...]:
    """The patch grid ``spatial_size // patch_size``; ``ValueError`` unless every axis divides evenly."""
    size = tuple(int(s) for s in spatial_size)
    patch = tuple(int(p) for p in ensure_tuple_rep(patch_size, len(size)))
    if len(patch) != len(size) or any(p < 1 for p in patch):
        raise ValueError(f"patch_size {patch_size} does not fit a {len(size)}-D image")
    if any(s % p for s, p in zip(size, patch)):
        raise ValueError(f"image size {size} is not divisible by the mask patch size {patch}")
    return tuple(s // p for s, p in zip(size, patch))


class RandPatchMask(Randomizable):
    """Draw a random patch mask with exactly ``round(mask_ratio * n_patches)`` masked patches.

    Args:
        patch_size: mask patch size (int or one per spatial axis); must divide the image size.
        mask_ratio: share of patches masked, in [0, 1]. ``round`` is Python's (half to even).

    ``__call__(img)`` uses only the image's spatial shape and returns a float32 tensor ``(1, *grid)``. There is no
    ``prob``: MAE batches need every sample masked with the same count.
    """

    def __init__(self, patch_size: Sequence[int] | int = 16, mask_ratio: float = 0.75) -> None:
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1], got {mask_ratio}")
        self.patch_size, self.mask_ratio = patch_size, float(mask_ratio)
        self._masked: np.ndarray = np.zeros(0, dtype=np.int64)
        self._grid: tuple[int, ...] = ()

    def num_masked(self, n_patches: int) -> int:
        """The masked-patch count for ``n_patches`` patches."""
        return int(round(self.mask_ratio * n_patches))

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw which patches of ``spatial_shape``'s grid are masked."""
        self._grid = patch_grid(spatial_shape, self.patch_size)
        n = int(np.prod(self._grid))
        self._masked = self.R.permutation(n)[: self.num_masked(n)]

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> torch.Tensor:
        """The mask for a channel-first image ``(C, *spatial)``."""
        if randomize:
            self.randomize(img.shape[1:])
        mask = torch.zeros(int(np.prod(self._grid)), dtype=torch.float32)
        mask[torch.as_tensor(self._masked, dtype=torch.long)] = 1.0
        return mask.reshape(1, *self._grid)


class RandPatchMaskd(Randomizable, MapTransform):
    """Dictionary version of :class:`RandPatchMask`: the first present key sets the grid; writes ``mask_key``.

    Args:
        keys: the image key whose spatial shape defines the grid.
        patch_size: mask patch size; must divide the image size.
        mask_ratio: share of patches masked.
        mask_key: output key of the ``(1, *grid)`` mask.
        allow_missing_keys: skip missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        patch_size: Sequence[int] | int = 16,
        mask_ratio: float = 0.75,
        mask_key: str = "mask",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.masker = RandPatchMask(patch_size, mask_ratio)
        self.masker.R = self.R
        self.mask_key = mask_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandPatchMaskd:
        super().set_random_state(seed, state)
        self.masker.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the mask for spatial shape ``data``."""
        self.masker.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for k in self.key_iterator(d):
            self.randomize(d[k].shape[1:])
            d[self.mask_key] = self.masker(d[k], randomize=False)
            break
        return d


Box = tuple[tuple[int, ...], tuple[int, ...]]


class RandCutout(RandomizableTransform):
    """SwinUNETR-SSL's random box drop: fill random boxes with noise or a value up to a random masked fraction.

    Args:
        max_fraction: the target masked fraction is drawn uniformly in ``[0, max_fraction]`` (paper: 0.3).
        max_block_size: largest box side as a fraction of each image side (paper: 0.25).
        min_block_size: smallest box side as a fraction of each side (paper: 0.05; at least 1 voxel).
        fill: ``"noise"`` (standard normal scaled to [0, 1] per box, the paper's), ``"uniform"`` (U[0, 1)), or a
            number (``0.0`` for zeros).
        prob: probability of cutting anything.
        max_boxes: safety cap on the number of boxes per image.
    """

    def __init__(
        self,
        max_fraction: float = 0.3,
        max_block_size: float = 0.25,
        min_block_size: float = 0.05,
        fill: str | float = "noise",
        prob: float = 1.0,
        max_boxes: int = 1000,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_fraction must lie in [0, 1], got {max_fraction}")
        if not 0.0 <= min_block_size <= max_block_size <= 1.0:
            raise ValueError(f"need 0 <= min_block_size <= max_block_size <= 1, got {min_block_size}, {max_block_size}")
        if isinstance(fill, str) and fill not in ("noise", "uniform"):
            raise ValueError(f'fill must be "noise", "uniform" or a number, got {fill!r}')
        self.max_fraction, self.max_block_size, self.min_block_size = max_fraction, max_block_size, min_block_size
        self.fill, self.max_boxes = fill, max_boxes
        self._boxes: list[Box] = []
        self._fills: list[np.ndarray | float] = []

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the boxes (and their noise) for ``spatial_shape``."""
        super().randomize(None)
        self._boxes, self._fills = [], []
        if not self._do_transform:
            return
        shape = np.asarray(spatial_shape, dtype=np.int64)
        covered = np.zeros(tuple(shape), dtype=bool)
        total = covered.size
        target = self.R.uniform(0.0, self.max_fraction) * total
        lo = np.maximum(1, np.floor(self.min_block_size * shape)).astype(np.int64)
        hi = np.maximum(lo, np.floor(self.max_block_size * shape)).astype(np.int64)
        n_cov = 0
        for _ in range(self.max_boxes):
            if n_cov >= target:
                break
            size = self.R.randint(lo, hi + 1)
            start = self.R.randint(0, shape - size + 1)
            sl = tuple(slice(int(s), int(s + z)) for s, z in zip(start, size))
            new = n_cov + int((~covered[sl]).sum())
            if new > self.max_fraction * total:
                continue  # would exceed the limit: draw another box
            covered[sl] = True
            n_cov = new
            self._boxes.append((tuple(int(s) for s in start), tuple(int(s + z) for s, z in zip(start, size))))
            self._fills.append(self._draw_fill(tuple(int(z) for z in size)))

    def _draw_fill(self, size: tuple[int, ...]) -> np.ndarray | float:
        if self.fill == "noise":
            z = self.R.standard_normal(size)
            rng = z.max() - z.min()
            return (z - z.min()) / rng if rng > 0 else np.zeros(size)
        if self.fill == "uniform":
            return self.R.random_sample(size)
        return float(self.fill)

    def box_mask(self, spatial_shape: Sequence[int]) -> torch.Tensor:
        """The drawn boxes as a float ``(1, *spatial)`` mask (1 = cut out)."""
        m = torch.zeros((1, *[int(s) for s in spatial_shape]), dtype=torch.float32)
        for start, end in self._boxes:
            m[(slice(None), *[slice(a, b) for a, b in zip(start, end)])] = 1.0
        return m

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Cut boxes out of a channel-first image; the same noise fills every channel."""
        if randomize:
            self.randomize(img.shape[1:])
        if not self._boxes:
            return img
        x = convert_to_tensor(img, track_meta=False)
        out = (x.float() if not torch.is_floating_point(x) else x).clone()
        for (start, end), f in zip(self._boxes, self._fills):
            sl = (slice(None), *[slice(a, b) for a, b in zip(start, end)])
            out[sl] = torch.as_tensor(f, dtype=out.dtype, device=out.device)
        res, *_ = convert_to_dst_type(out, dst=img, dtype=out.dtype)
        return res


class RandCutoutd(Randomizable, MapTransform):
    """Dictionary version of :class:`RandCutout`: the same boxes for every key.

    Args:
        keys: image keys.
        output_keys: where the cut images go, one per key (default: in place).
        mask_key: also write the ``(1, *spatial)`` box mask here (1 = cut out); ``None`` for none.
        max_fraction: see :class:`RandCutout`.
        max_block_size: see :class:`RandCutout`.
        min_block_size: see :class:`RandCutout`.
        fill: see :class:`RandCutout`.
        prob: probability of cutting anything.
        allow_missing_keys: skip missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_keys: KeysCollection | None = None,
        mask_key: str | None = None,
        max_fraction: float = 0.3,
        max_block_size: float = 0.25,
        min_block_size: float = 0.05,
        fill: str | float = "noise",
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.output_keys = tuple(ensure_tuple(output_keys)) if output_keys is not None else tuple(self.keys)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"need one output key per key, got {self.output_keys} for {self.keys}")
        self.mask_key = mask_key
        self.cutter = RandCutout(max_fraction, max_block_size, min_block_size, fill, prob)
        self.cutter.R = self.R

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCutoutd:
        super().set_random_state(seed, state)
        self.cutter.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the boxes for spatial shape ``data``."""
        self.cutter.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d, self.output_keys))
        if not keys:
            return d
        shape = d[keys[0][0]].shape[1:]
        self.randomize(shape)
        for key, out_key in keys:
            d[out_key] = self.cutter(d[key], randomize=False)
        if self.mask_key is not None:
            d[self.mask_key] = self.cutter.box_mask(shape)
        return d


RandPatchMaskD = RandPatchMaskDict = RandPatchMaskd
RandCutoutD = RandCutoutDict = RandCutoutd
