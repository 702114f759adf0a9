"""Dictionary transforms that stop on bad input with a message naming the file: an unreadable image (``ReadImaged``),
NaN or infinite values (``CheckFinited``), the wrong number of spatial axes (``CheckSpatialDimsd``), a class label
outside ``[0, num_classes)`` (``CheckLabelRanged``).
:func:`check_image_files` applies the same checks to a list of cases at once, before a run starts (the test section of
a fine-tuning run, a study's targets, the images given to ``infer``).

Shared by fine-tuning, pretraining, evaluation and inference, so that a truncated ``.nii.gz`` or a 2D slice in a 3D
datalist is reported the same way by every command, instead of a decoder's or a collate function's traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import LoadImaged, MapTransform

__all__ = [
    "source_name",
    "ReadImaged",
    "CheckFinited",
    "CheckSpatialDimsd",
    "CheckLabelRanged",
    "check_image_files",
    "image_problem",
]


def source_name(data: Mapping[Hashable, Any], key: Hashable = "image") -> str:
    """The file an item came from (MetaTensor ``filename_or_obj``), or ``"<unknown file>"``."""
    value = data.get(key)
    meta = getattr(value, "meta", None) or {}
    name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    return os.fspath(name) if name else "<unknown file>"


class ReadImaged(LoadImaged):
    """MONAI's ``LoadImaged``, except that a file that cannot be read raises a ``ValueError`` naming it and the reason
    (a truncated ``.nii.gz``, a file that is not an image) instead of a decoder's traceback without the file name.

    Same arguments as ``LoadImaged``.
    """

    def __call__(self, data: Any, reader: Any = None) -> dict[Hashable, Any]:
        try:
            return super().__call__(data, reader)
        except Exception as err:  # noqa: BLE001 - any decoder error: EOFError, zlib.error, ImageFileError...
            raise ValueError(self._reason(data, err)) from None

    def _reason(self, data: Any, err: BaseException) -> str:
        """Which file failed (each is tried alone) and why, in one sentence."""
        files = [os.fspath(data[k]) for k in self.key_iterator(dict(data)) if isinstance(data[k], (str, os.PathLike))]
        for f in files:
            try:
                self._loader(f)
            except Exception as one:  # noqa: BLE001
                err, files = one, [f]
                break
        while err.__cause__ is not None:
            err = err.__cause__
        return (
            f"{', '.join(files) or 'an image'} cannot be read ({type(err).__name__}: {str(err)[:200]}); the file may "
            "be truncated or not an image: fix or exclude it"
        )


class CheckFinited(MapTransform):
    """Raise a ``ValueError`` naming the file when an image holds NaN or infinite values.

    Args:
        keys: keys to check (``"image"``).
        allow_missing_keys: as in MONAI's ``MapTransform``.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            arr = torch.as_tensor(d[key])
            if arr.is_floating_point() and not bool(torch.isfinite(arr).all()):
                n_nan = int(torch.isnan(arr).sum())
                n_inf = int(torch.isinf(arr).sum())
                raise ValueError(
                    f"{key} {source_name(d, key)} contains NaN or infinite values ({n_nan} NaN, {n_inf} Inf voxels); "
                    "fix or exclude the file"
                )
        return d


class CheckSpatialDimsd(MapTransform):
    """Raise a ``ValueError`` naming the file when a channel-first image does not have ``spatial_dims`` axes
    (a 2D slice in a 3D datalist, a volume given to a 2D network) - instead of a collate or padding traceback.

    Args:
        keys: keys to check (``"image"``).
        spatial_dims: 2 or 3.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = int(spatial_dims)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            shape = tuple(np.shape(d[key]))
            if len(shape) - 1 != self.spatial_dims:
                raise ValueError(
                    f"{key} {source_name(d, key)} has {len(shape) - 1} spatial axes (shape {shape}, channel first) "
                    f"but the network is {self.spatial_dims}D; fix or exclude the file"
                )
        return d


class CheckLabelRanged(MapTransform):
    """Check class labels lie in ``[0, num_classes)``; a scalar class label becomes a ``(1,)`` long tensor.

    Segmentation label maps must hold integer values in range; classification labels (a number per image) must be
    one integer in range. The error names the file (the label map, or the image of a classification entry).

    Args:
        keys: label keys (``"label"``).
        num_classes: number of classes (background included for segmentation).
        image_key: key whose file names a classification entry in messages.
    """

    def __init__(self, keys: KeysCollection, num_classes: int, image_key: str = "image") -> None:
        super().__init__(keys)
        self.num_classes = int(num_classes)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, (int, float, np.integer, np.floating)) or (
                isinstance(value, (np.ndarray, torch.Tensor)) and np.size(value) == 1 and not hasattr(value, "meta")
            ):
                v = float(np.asarray(value).reshape(-1)[0])
                if not math.isfinite(v) or v != int(v) or not 0 <= v < self.num_classes:
                    raise ValueError(
                        f"label {value!r} of {source_name(d, self.image_key)} is outside [0, {self.num_classes}) "
                        f"(num_classes={self.num_classes})"
                    )
                d[key] = torch.tensor([int(v)], dtype=torch.long)
                continue
            arr = torch.as_tensor(value)
            where = source_name(d, key)
            if arr.is_floating_point() and not bool(torch.isfinite(arr).all()):
                raise ValueError(f"label map {where} contains NaN or infinite values")
            if arr.is_floating_point() and not bool((arr == arr.round()).all()):
                raise ValueError(f"label map {where} holds non-integer values; expected class indices")
            lo, hi = float(arr.min()), float(arr.max())
            if lo < 0 or hi >= self.num_classes:
                found = sorted(int(v) for v in torch.unique(arr).tolist())
                raise ValueError(
                    f"label map {where} holds values {found} outside [0, {self.num_classes}) "
                    f"(num_classes={self.num_classes})"
                )
        return d


def image_problem(
    row: Mapping[Hashable, Any], keys: KeysCollection = ("image",), spatial_dims: int | None = None
) -> str | None:
    """What is wrong with the image files of one case, in one sentence naming the file, or ``None``.

    The checks every run applies when it loads an image (``ReadImaged``, ``EnsureChannelFirstd``, ``CheckFinited``,
    ``CheckSpatialDimsd``), on the file-valued ``keys`` of ``row`` (other keys and missing ones are skipped).
    """
    from monai.transforms import EnsureChannelFirstd

    names = [k for k in ([keys] if isinstance(keys, str) else list(keys)) if isinstance(row.get(k), (str, os.PathLike))]
    if not names:
        return None
    steps: list[Any] = [
        ReadImaged(names, image_only=True),
        EnsureChannelFirstd(names),
        CheckFinited(names),
    ]
    if spatial_dims is not None:
        steps.append(CheckSpatialDimsd(names, int(spatial_dims)))
    item: Any = {k: row[k] for k in names}
    try:
        for step in steps:
            item = step(item)
    except ValueError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - e.g. a channel axis MONAI cannot place: still this file's problem
        files = ", ".join(os.fspath(row[k]) for k in names)
        return f"{files} cannot be used as an image ({type(err).__name__}: {str(err)[:200]}); fix or exclude it"
    return None


def check_image_files(
    rows: Any, keys: KeysCollection = ("image",), spatial_dims: int | None = None, where: str = ""
) -> int:
    """Read every case's image files now, with the checks a run applies when it loads them, so that a truncated,
    NaN or wrongly shaped file stops the run before it starts rather than after training.

    Args:
        rows: datalist entries (dicts); their file-valued ``keys`` are read.
        keys: keys holding image files (``"image"``; add ``"label"`` for label maps).
        spatial_dims: 2 or 3: the number of spatial axes each image must have (``None``: not checked).
        where: prefix of the message (the datalist and section, e.g. ``"data.json [test]"``).

    Returns:
        The number of cases checked.

    Raises:
        ValueError: the first bad file, in one sentence naming it (and ``where``).
    """
    n = 0
    for row in rows:
        problem = image_problem(row, keys, spatial_dims)
        if problem is not None:
            raise ValueError(f"{where}: {problem}" if where else problem)
        n += 1
    return n
