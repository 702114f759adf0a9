"""Random 90-degree rotations that also return the rotation class (the rotation-prediction pretext task).

Rotation prediction (Gidaris et al. 2018, arXiv:1803.07728) and its 3-D use in SwinUNETR pretraining (Tang et al.
2022, arXiv:2111.14791, ``rot_rand``: ``k ~ U{0..3}``, four classes) train the encoder to tell how a view was rotated.
The rotation is MONAI's :class:`~monai.transforms.Rotate90` (``torch.rot90`` over the plane's axes, with the affine
and ``applied_operations`` of a MetaTensor updated); the class ``k`` is a 0-d ``torch.long`` tensor so that a batch
collates to ``(B,)``.

The plane's two sides should be equal: an odd ``k`` swaps them, and views of different shapes do not batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Rotate90

__all__ = [
    "RandRotate90Class",
    "RandRotate90Classd",
    "RandRotate90ClassD",
    "RandRotate90ClassDict",
]


class RandRotate90Class(RandomizableTransform):
    """Rotate by ``k * 90`` degrees, ``k`` uniform in ``0..num_classes-1``; the drawn ``k`` is kept in ``self.k``.

    Args:
        spatial_axes: the rotation plane, two spatial axes (``(0, 1)``: the image plane in 2D, the axial plane of a
            RAS/LPS ``(X, Y, Z)`` volume in 3D; SwinUNETR's code rotates spatial axes ``(1, 2)``).
        prob: probability of drawing a random ``k``; otherwise ``k = 0`` (no rotation, class 0).
        num_classes: number of rotation classes (4: 0, 90, 180, 270 degrees).

    ``__call__(img)`` returns the rotated image; :meth:`label` returns ``k`` as a 0-d long tensor.
    """

    def __init__(self, spatial_axes: tuple[int, int] = (0, 1), prob: float = 1.0, num_classes: int = 4) -> None:
        RandomizableTransform.__init__(self, prob)
        if len(spatial_axes) != 2 or spatial_axes[0] == spatial_axes[1]:
            raise ValueError(f"spatial_axes must name two different axes, got {spatial_axes}")
        if not 1 <= num_classes <= 4:
            raise ValueError(f"num_classes must be 1..4, got {num_classes}")
        self.spatial_axes = (int(spatial_axes[0]), int(spatial_axes[1]))
        self.num_classes = num_classes
        self.k = 0

    def randomize(self, data: Any = None) -> None:
        """Draw ``k``."""
        super().randomize(None)
        self.k = int(self.R.randint(self.num_classes)) if self._do_transform else 0

    def label(self) -> torch.Tensor:
        """The last drawn class as a 0-d ``torch.long`` tensor."""
        return torch.tensor(self.k, dtype=torch.long)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Rotate a channel-first image ``(C, *spatial)`` by the drawn ``k``."""
        if randomize:
            self.randomize()
        return Rotate90(k=self.k, spatial_axes=self.spatial_axes)(img)


class RandRotate90Classd(Randomizable, MapTransform):
    """Dictionary version of :class:`RandRotate90Class`: one ``k`` for all ``keys``, stored at ``label_key``.

    Args:
        keys: images rotated together.
        label_key: where the class goes (e.g. ``"rot"``, ``"rot_v1"``), a 0-d long tensor.
        spatial_axes: the rotation plane (see :class:`RandRotate90Class`).
        prob: probability of a random ``k`` (otherwise 0).
        num_classes: number of rotation classes.
        allow_missing_keys: skip missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        label_key: str = "rot",
        spatial_axes: tuple[int, int] = (0, 1),
        prob: float = 1.0,
        num_classes: int = 4,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.rotator = RandRotate90Class(spatial_axes, prob, num_classes)
        self.rotator.R = self.R
        self.label_key = label_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandRotate90Classd:
        super().set_random_state(seed, state)
        self.rotator.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw ``k``."""
        self.rotator.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        for k in self.key_iterator(d):
            d[k] = self.rotator(d[k], randomize=False)
        d[self.label_key] = self.rotator.label()
        return d


RandRotate90ClassD = RandRotate90ClassDict = RandRotate90Classd
