"""A RandomResizedCrop for medical images whose crop always contains foreground.

Natural-image SSL (SimCLR, Chen et al. 2020, arXiv:2002.05709; torchvision's ``RandomResizedCrop``) draws a crop of a
random area fraction and aspect ratio anywhere in the image. A CT or MR volume is mostly air or background, so many such
crops would contain nothing to learn from. :class:`RandForegroundResizedCrop` draws the crop's centre at a random
*foreground* voxel instead (voxels above the background level, or a ``select_fn``), then shifts the box to fit inside
the image (the drawn voxel stays inside the crop) and resizes it to ``spatial_size``.

Sizes. With an image of spatial shape ``S`` (``d`` axes) and a drawn area/volume fraction ``f``, side ``i`` is
``S_i * f**(1/d) * a_i`` with ``prod(a_i) = 1``: ``log(a_i / a_0)`` is drawn uniformly in ``log(ratio)`` for
``i >= 1`` (in 2D exactly torchvision's ``w/h`` ratio, relative to the image's own shape). Sides are clipped to
``[1, S_i]``, so the actual fraction can fall below ``f`` for extreme ratios.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Resize, SpatialCrop
from monai.utils import ensure_tuple_rep
from monai.utils.type_conversion import convert_to_tensor

__all__ = [
    "RandForegroundResizedCrop",
    "RandForegroundResizedCropd",
    "RandForegroundResizedCropD",
    "RandForegroundResizedCropDict",
    "foreground_mask",
]


def foreground_mask(img: NdarrayOrTensor, threshold: float | None = None) -> torch.Tensor:
    """Spatial foreground mask of a channel-first image: any channel above ``threshold``.

    Args:
        img: ``(C, *spatial)``.
        threshold: absolute level; ``None`` uses ``min + 1e-3 * (max - min)`` (everything above the background level,
            whatever the intensity scale).

    Returns:
        A bool tensor of shape ``spatial``.
    """
    x = convert_to_tensor(img, track_meta=False)
    if threshold is None:
        lo, hi = float(x.min()), float(x.max())
        threshold = lo + 1e-3 * (hi - lo)
        if hi <= lo:  # a constant image has no foreground
            return torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
    return (x > threshold).any(dim=0)


def _linear_mode(mode: str, spatial_dims: int) -> str:
    # "linear" means the dimension's linear interpolation (torch's names differ by dimension)
    return {2: "bilinear", 3: "trilinear"}.get(spatial_dims, "linear") if mode == "linear" else mode


class RandForegroundResizedCrop(RandomizableTransform):
    """Crop a random box of random area fraction and aspect ratio centred on a foreground voxel; resize it.

    After SimCLR's random resized crop (Chen et al. 2020, arXiv:2002.05709) with the crop centre restricted to the
    foreground, as foreground-aware cropping in medical SSL (e.g. SwinUNETR pretraining crops after
    ``CropForegroundd``, Tang et al. 2022, arXiv:2111.14791). With probability ``1 - prob``, or when the image has no
    foreground, the whole image is resized instead (so the output size is always ``spatial_size``).

    Args:
        spatial_size: output spatial size (2 or 3 values; an int is repeated to the image's dimension).
        scale: range of the crop's area (2D) or volume (3D) as a fraction of the image.
        ratio: range of the aspect ratio of axis ``i >= 1`` to axis 0, relative to the image's own shape.
        threshold: foreground = any channel above this; ``None``: above ``min + 1e-3 * (max - min)``.
        select_fn: ``img -> bool mask`` (``(C, *spatial)`` or ``spatial``) overriding ``threshold``.
        mode: interpolation mode; ``"linear"`` is bilinear in 2D and trilinear in 3D (``"nearest"``, ``"area"`` ...).
        prob: probability of a random crop (otherwise the whole image is resized).
    """

    def __init__(
        self,
        spatial_size: Sequence[int] | int,
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        threshold: float | None = None,
        select_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        mode: str = "linear",
        prob: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}")
        self.spatial_size = spatial_size
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.threshold, self.select_fn, self.mode = threshold, select_fn, mode
        self._box: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def _foreground(self, img: NdarrayOrTensor) -> torch.Tensor:
        if self.select_fn is None:
            return foreground_mask(img, self.threshold)
        m = convert_to_tensor(self.select_fn(img), track_meta=False).bool()
        return m.any(dim=0) if m.ndim == img.ndim else m

    def randomize(self, spatial_shape: Sequence[int], foreground: torch.Tensor | None = None) -> None:
        """Draw the crop box for an image of ``spatial_shape`` (``self._box = (start, end)``; ``None`` = whole image).

        Args:
            spatial_shape: the image's spatial shape.
            foreground: bool mask of shape ``spatial_shape``; ``None`` or empty gives the whole image.
        """
        super().randomize(None)
        self._box = None
        if not self._do_transform:
            return
        shape = np.asarray(spatial_shape, dtype=np.int64)
        d = len(shape)
        frac = self.R.uniform(*self.scale)
        log_r = self.R.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), size=d - 1)
        log_a = np.concatenate([[0.0], log_r])
        aspect = np.exp(log_a - log_a.mean())
        sides = np.clip(np.round(shape * frac ** (1.0 / d) * aspect), 1, shape).astype(np.int64)
        if foreground is None:
            return
        idx = torch.nonzero(foreground.reshape(-1)).reshape(-1)
        if idx.numel() == 0:
            return
        flat = int(idx[int(self.R.randint(idx.numel()))])
        centre = np.asarray(np.unravel_index(flat, tuple(shape)), dtype=np.int64)
        # shifting the box into the image keeps the drawn voxel inside it (side <= shape)
        start = np.clip(centre - sides // 2, 0, shape - sides)
        self._box = (tuple(int(s) for s in start), tuple(int(s) for s in start + sides))

    def crop_resize(self, img: NdarrayOrTensor, mode: str | None = None) -> NdarrayOrTensor:
        """Apply the last drawn box to ``img`` and resize to ``spatial_size`` (MetaTensor metadata kept)."""
        sd = img.ndim - 1
        size = ensure_tuple_rep(self.spatial_size, sd)
        out = img
        if self._box is not None:
            out = SpatialCrop(roi_start=self._box[0], roi_end=self._box[1])(out)
        m = _linear_mode(mode or self.mode, sd)
        return Resize(size, mode=m, align_corners=None if m in ("nearest", "nearest-exact", "area") else False)(out)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Crop and resize a channel-first image ``(C, *spatial)``."""
        if randomize:
            self.randomize(img.shape[1:], self._foreground(img))
        return self.crop_resize(img)


class RandForegroundResizedCropd(Randomizable, MapTransform):
    """Dictionary version of :class:`RandForegroundResizedCrop`: one box for all ``keys``.

    Args:
        keys: keys cropped together (same spatial shape).
        spatial_size: output spatial size.
        scale: range of the crop's area/volume fraction.
        ratio: aspect ratio range (see :class:`RandForegroundResizedCrop`).
        source_key: key whose foreground places the crop; default the first of ``keys``.
        threshold: foreground level (see :func:`foreground_mask`).
        select_fn: ``img -> bool mask`` overriding ``threshold``.
        mode: interpolation mode, one per key or one for all (``"nearest"`` for labels).
        prob: probability of a random crop (otherwise the whole image is resized).
        allow_missing_keys: skip missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        source_key: str | None = None,
        threshold: float | None = None,
        select_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        mode: str | Sequence[str] = "linear",
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.cropper = RandForegroundResizedCrop(spatial_size, scale, ratio, threshold, select_fn, "linear", prob)
        self.cropper.R = self.R  # one random stream for the pair
        self.source_key = source_key
        self.mode = ensure_tuple_rep(mode, len(self.keys))

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandForegroundResizedCropd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw the box from ``data`` (the source image)."""
        self.cropper.randomize(data.shape[1:], self.cropper._foreground(data))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        self.randomize(d[self.source_key if self.source_key is not None else keys[0]])
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.cropper.crop_resize(d[key], mode)
        return d


RandForegroundResizedCropD = RandForegroundResizedCropDict = RandForegroundResizedCropd
