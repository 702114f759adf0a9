"""Models Genesis image corruptions for restoration pretraining, as MONAI array/dictionary transform pairs.

Zhou et al. 2021, "Models Genesis", Medical Image Analysis 67:101840, arXiv:2004.07882 (reference code
``MrGiovanni/ModelsGenesis``, ``utils.py``). A U-Net learns to restore the original image from a corrupted copy made
by, in this order:

1. :class:`RandLocalPixelShuffle` (prob 0.5): shuffle the voxels inside many small random blocks (each side up to
   1/10 of the image side), the blocks read from the original image (texture kept, local structure broken);
2. :class:`RandNonlinearIntensity` (prob 0.9): a monotonic intensity mapping by a cubic Bezier curve through
   ``(0, 0)``, two random control points and ``(1, 1)``; with probability 0.5 the decreasing (flipped) version;
3. painting (prob 0.9): :class:`RandInPaint` (share 0.2: up to 5 random inner boxes, 1/6 to 1/3 of each side, filled
   with U[0, 1) noise) or :class:`RandOutPaint` (share 0.8: U[0, 1) noise everywhere except up to 5 random inner
   boxes, each side 3/7 to 4/7 of the image side, where the image is kept).

:class:`RandModelsGenesisd` chains them with the paper's probabilities: it reads ``image``, writes the corrupted view
to ``image_v1`` and leaves ``image`` unchanged as the restoration target.

Intensities are assumed in [0, 1] (the paper scales CT HU windows to [0, 1]); each transform clips its input to
[0, 1] first, so outputs always lie in [0, 1]. All transforms work on ``(C, H, W)`` and ``(C, H, W, D)`` images,
apply the same draws to every channel, and keep MetaTensor metadata. Boxes keep the reference code's 3-voxel margin
from the border where the image is large enough (less on small images).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from math import comb
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import ensure_tuple
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = [
    "bezier_lut",
    "RandNonlinearIntensity",
    "RandNonlinearIntensityd",
    "RandNonlinearIntensityD",
    "RandNonlinearIntensityDict",
    "RandLocalPixelShuffle",
    "RandLocalPixelShuffled",
    "RandLocalPixelShuffleD",
    "RandLocalPixelShuffleDict",
    "RandInPaint",
    "RandInPaintd",
    "RandInPaintD",
    "RandInPaintDict",
    "RandOutPaint",
    "RandOutPaintd",
    "RandOutPaintD",
    "RandOutPaintDict",
    "RandModelsGenesisd",
    "RandModelsGenesisD",
    "RandModelsGenesisDict",
]

#: the reference code's local-shuffle density: 10000 blocks of up to 1/10 of each side on a 64x64x32 cube, i.e.
#: each voxel lies in this many blocks on average (mean block 3.5 x 3.5 x 2 voxels); other sizes keep it
_PAPER_SHUFFLE_COVERAGE = 10000 * 3.5 * 3.5 * 2.0 / (64 * 64 * 32)


def _as_float(img: NdarrayOrTensor) -> torch.Tensor:
    x = convert_to_tensor(img, track_meta=False)
    x = x.float() if not torch.is_floating_point(x) else x
    return x.clamp(0.0, 1.0)


def _back(out: torch.Tensor, img: NdarrayOrTensor) -> NdarrayOrTensor:
    res, *_ = convert_to_dst_type(out, dst=img, dtype=out.dtype)
    return res


def bezier_lut(points: np.ndarray, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Sample the Bezier curve of control ``points`` (``(P, 2)``) at ``n`` parameter values; return ``(xs, ys)``.

    Uses the reference code's Bernstein form ``comb(P-1, i) t^(P-1-i) (1-t)^i``.
    """
    t = np.linspace(0.0, 1.0, n)
    deg = len(points) - 1
    basis = np.stack([comb(deg, i) * t ** (deg - i) * (1 - t) ** i for i in range(deg + 1)])
    return points[:, 0] @ basis, points[:, 1] @ basis


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` for torch (``xp`` increasing)."""
    idx = torch.searchsorted(xp, x.reshape(-1).contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    w = torch.where(x1 > x0, (x.reshape(-1) - x0) / (x1 - x0).clamp_min(1e-12), torch.zeros_like(x0))
    return (f0 + w.clamp(0, 1) * (f1 - f0)).reshape(x.shape)


class RandNonlinearIntensity(RandomizableTransform):
    """Models Genesis non-linear transformation: a random monotonic Bezier intensity curve on [0, 1].

    Args:
        prob: probability of applying (paper: 0.9).
        flip_prob: probability of the decreasing curve (paper: 0.5).
        num_samples: curve samples for the look-up table (the reference code uses 100000; 1000 is already smooth
            to about 1e-3).
    """

    def __init__(self, prob: float = 0.9, flip_prob: float = 0.5, num_samples: int = 1000) -> None:
        RandomizableTransform.__init__(self, prob)
        self.flip_prob, self.num_samples = flip_prob, num_samples
        self._xs = self._ys = np.linspace(0.0, 1.0, 2)

    def randomize(self, data: Any = None) -> None:
        """Draw two control points and the direction."""
        super().randomize(None)
        if not self._do_transform:
            return
        inner = self.R.random_sample((2, 2))
        xs, ys = bezier_lut(np.array([[0.0, 0.0], *inner, [1.0, 1.0]]), self.num_samples)
        # sorting both coordinates makes the mapping monotonic (the reference code's trick); reversing y flips it
        xs, ys = np.sort(xs), np.sort(ys)
        if self.R.random_sample() < self.flip_prob:
            ys = ys[::-1].copy()
        self._xs, self._ys = xs, ys

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Map intensities of ``img`` (clipped to [0, 1]) through the drawn curve."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = _as_float(img)
        xp = torch.as_tensor(self._xs, dtype=torch.float64, device=x.device)
        fp = torch.as_tensor(self._ys, dtype=torch.float64, device=x.device)
        out = _interp(x.double(), xp, fp).clamp(0.0, 1.0).to(x.dtype)
        return _back(out, img)


class RandLocalPixelShuffle(RandomizableTransform):
    """Models Genesis local pixel shuffling: permute the voxels inside many small random blocks.

    Each block has a random side in ``1..max(2, side // 10)`` per axis and a random position; its voxels are read from
    the original image and written back in a random order (where blocks overlap, the later block wins).

    Args:
        prob: probability of applying (paper: 0.5).
        num_blocks: number of blocks; ``None`` matches the reference code's density (10000 blocks on 64x64x32,
            about 1.9 blocks per voxel), e.g. about 480 blocks on a 32x32 image.
        max_block_fraction: largest block side as a fraction of the image side (paper: 1/10).
    """

    def __init__(self, prob: float = 0.5, num_blocks: int | None = None, max_block_fraction: float = 0.1) -> None:
        RandomizableTransform.__init__(self, prob)
        self.num_blocks, self.max_block_fraction = num_blocks, max_block_fraction
        self._src = self._dst = torch.zeros(0, dtype=torch.long)

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the blocks and their permutations for ``spatial_shape`` (kept as flat source/destination indices)."""
        super().randomize(None)
        self._src = self._dst = torch.zeros(0, dtype=torch.long)
        if not self._do_transform:
            return
        shape = np.asarray(spatial_shape, dtype=np.int64)
        maxb = np.minimum(shape, np.maximum(2, np.floor(shape * self.max_block_fraction).astype(np.int64)))
        n = self.num_blocks
        if n is None:
            mean_block = float(np.prod((1 + maxb) / 2.0))
            n = int(np.ceil(_PAPER_SHUFFLE_COVERAGE * np.prod(shape) / mean_block))
        d = len(shape)
        sizes = self.R.randint(1, maxb + 1, size=(n, d))
        starts = self.R.randint(0, shape - sizes + 1)
        strides = np.cumprod(np.concatenate([shape[1:], [1]])[::-1])[::-1]
        start_flat = starts @ strides
        # blocks of one size are shuffled together (a few hundred groups instead of thousands of blocks)
        code = np.ravel_multi_index(tuple((sizes - 1).T), tuple(maxb))
        src_l, dst_l, bid_l = [], [], []
        order = np.argsort(code, kind="stable")
        for bids in np.split(order, np.flatnonzero(np.diff(code[order])) + 1):
            grid = np.meshgrid(*[np.arange(k) for k in sizes[bids[0]]], indexing="ij")
            dst = start_flat[bids][:, None] + (np.stack(grid, -1).reshape(-1, d) @ strides)[None]
            src = np.take_along_axis(dst, np.argsort(self.R.random_sample(dst.shape), axis=1), 1)
            src_l.append(src.ravel())
            dst_l.append(dst.ravel())
            bid_l.append(np.repeat(bids, dst.shape[1]))
        src, dst, bid = np.concatenate(src_l), np.concatenate(dst_l), np.concatenate(bid_l)
        # where blocks overlap the later block wins, as in the reference code's sequential loop
        winner = np.full(int(np.prod(shape)), -1, dtype=np.int64)
        np.maximum.at(winner, dst, bid)
        keep = bid == winner[dst]
        self._src = torch.as_tensor(src[keep])
        self._dst = torch.as_tensor(dst[keep])

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Shuffle inside blocks of ``img`` (clipped to [0, 1]); every channel gets the same permutation."""
        if randomize:
            self.randomize(img.shape[1:])
        if not self._do_transform:
            return img
        x = _as_float(img)
        flat = x.reshape(x.shape[0], -1)
        out = flat.clone()
        out[:, self._dst.to(x.device)] = flat[:, self._src.to(x.device)]
        return _back(out.reshape(x.shape), img)


def _inner_box(R: np.random.RandomState, shape: np.ndarray, sizes: np.ndarray) -> tuple[slice, ...]:
    # the reference code keeps boxes 3 voxels off the border; small images get what margin fits
    margin = np.minimum(3, (shape - sizes) // 2)
    start = R.randint(margin, shape - sizes - margin + 1)
    return tuple(slice(int(a), int(a + s)) for a, s in zip(start, sizes))


class RandInPaint(RandomizableTransform):
    """Models Genesis in-painting: fill up to ``max_boxes`` random inner boxes with U[0, 1) noise.

    The first box is always drawn; each further one with probability ``continue_prob`` (paper: 5 boxes, 0.95).
    Box sides are uniform in ``[side // 6, side // 3]`` (at least 1).

    Args:
        prob: probability of applying (the paper applies painting with 0.9, in-painting for 20 % of those; see
            :class:`RandModelsGenesisd`).
        max_boxes: most boxes.
        continue_prob: probability of drawing each further box.
    """

    def __init__(self, prob: float = 1.0, max_boxes: int = 5, continue_prob: float = 0.95) -> None:
        RandomizableTransform.__init__(self, prob)
        self.max_boxes, self.continue_prob = max_boxes, continue_prob
        self._boxes: list[tuple[slice, ...]] = []
        self._noise: list[np.ndarray] = []

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the boxes and their noise for ``spatial_shape``."""
        super().randomize(None)
        self._boxes, self._noise = [], []
        if not self._do_transform:
            return
        shape = np.asarray(spatial_shape, dtype=np.int64)
        lo = np.maximum(1, shape // 6)
        hi = np.maximum(lo, shape // 3)
        for i in range(self.max_boxes):
            if i > 0 and self.R.random_sample() >= self.continue_prob:
                break
            sizes = self.R.randint(lo, hi + 1)
            box = _inner_box(self.R, shape, sizes)
            self._boxes.append(box)
            self._noise.append(self.R.random_sample(tuple(int(s) for s in sizes)))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """In-paint ``img`` (clipped to [0, 1])."""
        if randomize:
            self.randomize(img.shape[1:])
        if not self._do_transform:
            return img
        out = _as_float(img).clone()
        for box, noise in zip(self._boxes, self._noise):
            out[(slice(None), *box)] = torch.as_tensor(noise, dtype=out.dtype, device=out.device)
        return _back(out, img)


class RandOutPaint(RandomizableTransform):
    """Models Genesis out-painting: replace the image by U[0, 1) noise except inside up to ``max_boxes`` inner boxes.

    Kept box sides are ``side - U{3 side // 7 .. 4 side // 7}`` (about half of each side), as the reference code; the
    first box always, each further one with probability ``continue_prob`` (paper: 1 + 4 boxes, 0.95).

    Args:
        prob: probability of applying (paper: painting 0.9, out-painting for 80 % of those).
        max_boxes: most kept boxes.
        continue_prob: probability of drawing each further box.
    """

    def __init__(self, prob: float = 1.0, max_boxes: int = 5, continue_prob: float = 0.95) -> None:
        RandomizableTransform.__init__(self, prob)
        self.max_boxes, self.continue_prob = max_boxes, continue_prob
        self._boxes: list[tuple[slice, ...]] = []
        self._noise: np.ndarray = np.zeros(0)

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the background noise and the kept boxes for ``spatial_shape``."""
        super().randomize(None)
        self._boxes = []
        if not self._do_transform:
            return
        shape = np.asarray(spatial_shape, dtype=np.int64)
        self._noise = self.R.random_sample(tuple(int(s) for s in shape))
        lo, hi = 3 * shape // 7, 4 * shape // 7
        for i in range(self.max_boxes):
            if i > 0 and self.R.random_sample() >= self.continue_prob:
                break
            sizes = np.maximum(1, shape - self.R.randint(lo, hi + 1))
            self._boxes.append(_inner_box(self.R, shape, sizes))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Out-paint ``img`` (clipped to [0, 1])."""
        if randomize:
            self.randomize(img.shape[1:])
        if not self._do_transform:
            return img
        x = _as_float(img)
        out = torch.as_tensor(self._noise, dtype=x.dtype, device=x.device).expand_as(x).clone()
        for box in self._boxes:
            sl = (slice(None), *box)
            out[sl] = x[sl]
        return _back(out, img)


class _SharedDrawd(Randomizable, MapTransform):
    """Dictionary wrapper: one draw (from the first key's spatial shape) applied to every key."""

    def __init__(self, keys: KeysCollection, transform: RandomizableTransform, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.t = transform
        self.t.R = self.R

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _SharedDrawd:
        super().set_random_state(seed, state)
        self.t.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw for spatial shape ``data``."""
        self.t.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        self.randomize(d[keys[0]].shape[1:])
        for k in keys:
            d[k] = self.t(d[k], randomize=False)
        return d


class RandNonlinearIntensityd(_SharedDrawd):
    """Dictionary version of :class:`RandNonlinearIntensity` (one curve for all keys)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.9,
        flip_prob: float = 0.5,
        num_samples: int = 1000,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandNonlinearIntensity(prob, flip_prob, num_samples), allow_missing_keys)

    def randomize(self, data: Any = None) -> None:
        """Draw the curve."""
        self.t.randomize()


class RandLocalPixelShuffled(_SharedDrawd):
    """Dictionary version of :class:`RandLocalPixelShuffle` (the same blocks for all keys)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        num_blocks: int | None = None,
        max_block_fraction: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandLocalPixelShuffle(prob, num_blocks, max_block_fraction), allow_missing_keys)


class RandInPaintd(_SharedDrawd):
    """Dictionary version of :class:`RandInPaint` (the same boxes and noise for all keys)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        max_boxes: int = 5,
        continue_prob: float = 0.95,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandInPaint(prob, max_boxes, continue_prob), allow_missing_keys)


class RandOutPaintd(_SharedDrawd):
    """Dictionary version of :class:`RandOutPaint` (the same boxes and noise for all keys)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        max_boxes: int = 5,
        continue_prob: float = 0.95,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandOutPaint(prob, max_boxes, continue_prob), allow_missing_keys)


class RandModelsGenesisd(Randomizable, MapTransform):
    """The Models Genesis corruption pipeline: ``image`` -> corrupted ``image_v1``; ``image`` stays the target.

    Order and rates of the reference code's generator: local shuffle (``local_shuffle_prob``), non-linear intensity
    (``nonlinear_prob``), then painting (``paint_prob``) as in-painting (``inpaint_rate``) or out-painting.

    Args:
        keys: source images (intensities in [0, 1]).
        output_keys: where the corrupted copies go, one per key (default ``"{key}_v1"``).
        nonlinear_prob: probability of the Bezier intensity curve (paper: 0.9).
        local_shuffle_prob: probability of local pixel shuffling (paper: 0.5).
        paint_prob: probability of painting (paper: 0.9).
        inpaint_rate: share of in-painting among paintings (paper: 0.2; out-painting 0.8).
        num_shuffle_blocks: see :class:`RandLocalPixelShuffle` (``None``: the paper's density).
        allow_missing_keys: skip missing keys.

    Every key gets the same draws (co-registered channels stay aligned); the outputs lie in [0, 1].
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_keys: KeysCollection | None = None,
        nonlinear_prob: float = 0.9,
        local_shuffle_prob: float = 0.5,
        paint_prob: float = 0.9,
        inpaint_rate: float = 0.2,
        num_shuffle_blocks: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.output_keys = (
            tuple(ensure_tuple(output_keys)) if output_keys is not None else tuple(f"{k}_v1" for k in self.keys)
        )
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"need one output key per key, got {self.output_keys} for {self.keys}")
        self.paint_prob, self.inpaint_rate = paint_prob, inpaint_rate
        # the stages draw their own decisions with their own prob; painting is decided here (one of two)
        self.shuffle = RandLocalPixelShuffle(local_shuffle_prob, num_shuffle_blocks)
        self.nonlinear = RandNonlinearIntensity(nonlinear_prob)
        self.inpaint = RandInPaint(1.0)
        self.outpaint = RandOutPaint(1.0)
        self._paint: RandomizableTransform | None = None
        self.set_random_state(state=self.R)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandModelsGenesisd:
        super().set_random_state(seed, state)
        for t in (self.shuffle, self.nonlinear, self.inpaint, self.outpaint):
            t.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw every stage for spatial shape ``data``."""
        self.shuffle.randomize(data)
        self.nonlinear.randomize()
        self._paint = None
        if self.R.random_sample() < self.paint_prob:
            self._paint = self.inpaint if self.R.random_sample() < self.inpaint_rate else self.outpaint
            self._paint.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d, self.output_keys))
        if not keys:
            return d
        self.randomize(d[keys[0][0]].shape[1:])
        for key, out_key in keys:
            src = d[key]
            # clip first so the view lies in [0, 1] even when no stage fires; the target itself is not touched
            x = _back(_as_float(src), src)
            x = self.shuffle(x, randomize=False)
            x = self.nonlinear(x, randomize=False)
            if self._paint is not None:
                x = self._paint(x, randomize=False)
            d[out_key] = x
        return d


RandNonlinearIntensityD = RandNonlinearIntensityDict = RandNonlinearIntensityd
RandLocalPixelShuffleD = RandLocalPixelShuffleDict = RandLocalPixelShuffled
RandInPaintD = RandInPaintDict = RandInPaintd
RandOutPaintD = RandOutPaintDict = RandOutPaintd
RandModelsGenesisD = RandModelsGenesisDict = RandModelsGenesisd
