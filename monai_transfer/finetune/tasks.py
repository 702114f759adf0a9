"""From a datalist to checked transforms and data loaders, for classification and segmentation in 2D and 3D.

Entries are MSD-style dicts (``{"image": path, "label": int | path}``) from ``monai_transfer.data.load_datalist``.
Bad data fails early with a message naming the problem and the file: a NaN/Inf in an image (``CheckFinited``), a
label outside ``[0, num_classes)`` (``CheckLabelRanged``), a ``num_classes`` that disagrees with the labels found.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import (
    Compose,
    LoadImage,
    MapTransform,
)

from monai_transfer.transforms.checks import CheckFinited, CheckSpatialDimsd, ReadImaged, source_name
from monai_transfer.utils.sizes import per_axis

__all__ = [
    "TASKS",
    "CheckFinited",
    "ReadImaged",
    "CheckLabelRanged",
    "CheckSpatialDimsd",
    "source_name",
    "infer_spatial_dims",
    "check_num_classes",
    "class_counts",
    "make_transforms",
    "transform_components",
    "instantiate",
    "make_loader",
]

logger = logging.getLogger(__name__)

TASKS = ("classification", "segmentation")


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


def infer_spatial_dims(entries: Sequence[Mapping[str, Any]], properties: Mapping[str, Any] | None = None) -> int:
    """2 or 3, from the datalist's ``tensorImageSize`` property, else from the first image's shape."""
    size = str((properties or {}).get("tensorImageSize", "")).upper()
    if size in ("2D", "3D"):
        return int(size[0])
    if not entries:
        raise ValueError("cannot infer spatial_dims from an empty datalist")
    img = LoadImage(image_only=True, ensure_channel_first=True)(entries[0]["image"])
    dims = img.ndim - 1
    if dims not in (2, 3):
        raise ValueError(f"cannot infer spatial_dims from {entries[0]['image']} with shape {tuple(img.shape)}")
    return dims


def _scalar_label(entry: Mapping[str, Any], label_key: str) -> Any:
    if label_key not in entry:
        raise KeyError(f"datalist entry {entry.get('image', entry)!r} has no {label_key!r} key")
    return entry[label_key]


def check_num_classes(
    entries: Sequence[Mapping[str, Any]],
    task: str,
    num_classes: int | None,
    properties: Mapping[str, Any] | None = None,
    label_key: str = "label",
) -> int:
    """Check (or infer, when ``None``) ``num_classes`` against the labels the datalist declares or holds.

    Classification: every label must be an integer in ``[0, num_classes)`` (the entry is named otherwise) and the
    number of classes must equal ``max(label) + 1`` of the section. Segmentation: ``num_classes`` must equal the
    number of entries in the datalist's ``labels`` property when there is one (label maps are checked voxel-wise
    by ``CheckLabelRanged`` when loaded).

    Returns:
        The number of classes.

    Raises:
        ValueError: the problem named (classes found versus given, or the entry with a bad label).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    declared = (properties or {}).get("labels")
    if task == "segmentation":
        if isinstance(declared, Mapping) and declared:
            n = len(declared)
            if num_classes is not None and int(num_classes) != n:
                raise ValueError(
                    f"num_classes={num_classes} but the datalist declares {n} labels {dict(declared)}; "
                    "num_classes counts the background"
                )
            return n
        if num_classes is None:
            raise ValueError("the datalist has no 'labels' property; give num_classes (background included)")
        return int(num_classes)
    values = []
    for e in entries:
        v = _scalar_label(e, label_key)
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"classification label {v!r} of {e.get('image')} is not a class index") from None
        if not math.isfinite(f) or f != int(f) or f < 0:
            raise ValueError(f"classification label {v!r} of {e.get('image')} is not a class index >= 0")
        if num_classes is not None and f >= num_classes:
            raise ValueError(
                f"label {int(f)} of {e.get('image')} is outside [0, {num_classes}) (num_classes={num_classes})"
            )
        values.append(int(f))
    found = sorted(set(values))
    n_found = max(found) + 1 if found else 0
    if num_classes is None:
        if n_found < 2:
            raise ValueError(f"found labels {found}; classification needs at least two classes")
        return n_found
    if int(num_classes) != n_found:
        raise ValueError(
            f"num_classes={num_classes} but the labels found in the datalist are {found} "
            f"(that is {n_found} classes); set num_classes={n_found}"
        )
    return int(num_classes)


def class_counts(
    entries: Sequence[Mapping[str, Any]], task: str, num_classes: int, label_key: str = "label"
) -> list[float]:
    """Per-class counts in ``entries``: images for classification, voxels of the label maps for segmentation."""
    counts = np.zeros(num_classes, dtype=np.float64)
    if task == "classification":
        for e in entries:
            counts[int(float(e[label_key]))] += 1
        return counts.tolist()
    loader = LoadImage(image_only=True)
    for e in entries:
        lab = np.asarray(loader(e[label_key])).astype(np.int64).ravel()
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"label map {e[label_key]} holds values outside [0, {num_classes})")
        counts += np.bincount(lab, minlength=num_classes)[:num_classes]
    return counts.tolist()


def transform_components(
    task: str,
    spatial_dims: int,
    num_classes: int,
    train: bool,
    spatial_size: Sequence[int] | int | None = None,
    patch_size: Sequence[int] | int | None = None,
    divisible_by: int = 32,
    min_size: int | None = None,
    augment: bool = True,
    intensity: Mapping[str, Any] | None = None,
    in_channels: int = 1,
    image_key: str = "image",
    label_key: str = "label",
) -> tuple[list[dict[str, Any]], int]:
    """The dictionary transform chain of one task as bundle components (``_target_`` dicts), and where a corruption
    goes.

    Load -> channel first -> ``CheckFinited`` -> ``CheckLabelRanged`` -> intensity (the starting point's mapping,
    ``monai_transfer.transforms.preprocessing``; default z-score) -> (classification: optional ``Resized`` to
    ``spatial_size``; segmentation: pad to at least ``min_size`` and to a multiple of ``divisible_by`` so that every
    backbone stage has a map, then in training an optional random ``patch_size`` crop) -> training flips -> tensors.

    Args:
        task: ``"classification"`` or ``"segmentation"``.
        spatial_dims: 2 or 3.
        num_classes: classes (background included for segmentation).
        train: add the random crop and flips.
        spatial_size: classification input size (resized), or ``None`` to keep the images' size (all equal).
        patch_size: segmentation training crop (3D: the sliding-window size at evaluation), or ``None``.
        divisible_by: the backbone's largest stride.
        min_size: smallest padded edge for segmentation (default ``2 * divisible_by``: the deepest map has two
            voxels per axis, which instance norm in training needs).
        augment: random flips in training.
        intensity: the intensity spec (``{"name": "imagenet", ...}``); ``None``: z-score.
        in_channels: image channels (per-channel statistics of a spec are fitted to them).

    Returns:
        The components, and the index at which a corruption acts on what the network sees: after intensity
        normalisation (a per-image z-score would undo a contrast change made before it), at the network's input size
        for classification and on the image's own grid for segmentation (the padding stays clean).
    """
    from monai_transfer.transforms.preprocessing import intensity_components

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    seg = task == "segmentation"
    keys = [image_key, label_key] if seg else [image_key]
    here, checks = "monai_transfer.finetune.tasks", "monai_transfer.transforms.checks"
    xs: list[dict[str, Any]] = [
        {"_target_": f"{checks}.ReadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": f"{checks}.CheckFinited", "keys": image_key},
        {"_target_": f"{checks}.CheckSpatialDimsd", "keys": image_key, "spatial_dims": int(spatial_dims)},
        {"_target_": f"{here}.CheckLabelRanged", "keys": label_key, "num_classes": int(num_classes),
         "image_key": image_key},
        *intensity_components(intensity, keys=image_key, in_channels=in_channels),
    ]  # fmt: skip
    corrupt_at = len(xs)
    if seg:
        m = min_size if min_size is not None else 2 * divisible_by
        xs.append({"_target_": "SpatialPadd", "keys": keys, "spatial_size": [int(m)] * spatial_dims})
        xs.append({"_target_": "DivisiblePadd", "keys": keys, "k": int(divisible_by)})
        if train and patch_size is not None:
            roi = per_axis(patch_size, spatial_dims, "patch_size")
            xs.append({"_target_": "SpatialPadd", "keys": keys, "spatial_size": roi})
            xs.append({"_target_": "RandSpatialCropd", "keys": keys, "roi_size": roi, "random_size": False})
    elif spatial_size is not None:
        size = per_axis(spatial_size, spatial_dims, "spatial_size")
        mode = "trilinear" if spatial_dims == 3 else "bilinear"
        xs.append({"_target_": "Resized", "keys": image_key, "spatial_size": size, "mode": mode})
        corrupt_at = len(xs)
    if train and augment:
        xs.append({"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 0})
    xs.append({"_target_": "EnsureTyped", "keys": keys, "dtype": "$torch.float32", "track_meta": False})
    if seg:
        xs.append({"_target_": "EnsureTyped", "keys": label_key, "dtype": "$torch.long", "track_meta": False})
    return xs, corrupt_at


def instantiate(component: Any) -> Any:
    """Build a bundle component (``_target_`` dict, or a list of them) as MONAI's ``ConfigParser`` does."""
    from monai.bundle import ConfigParser

    parser = ConfigParser({"imports": ["$import torch", "$import monai"], "c": component})
    return parser.get_parsed_content("c", instantiate=True)


def make_transforms(
    task: str,
    spatial_dims: int,
    num_classes: int,
    train: bool,
    corruption: Callable | None = None,
    **kwargs: Any,
) -> Compose:
    """The task's transform chain (:func:`transform_components`, same arguments) as a ``Compose``.

    Args:
        corruption: a dictionary transform applied where :func:`transform_components` says a corruption acts on
            what the network sees (robustness runs).
    """
    comps, at = transform_components(task, spatial_dims, num_classes, train, **kwargs)
    xs = list(instantiate(comps))
    if corruption is not None:
        xs.insert(at, corruption)
    return Compose(xs)


def make_loader(
    entries: Sequence[Mapping[str, Any]],
    transform: Compose,
    batch_size: int,
    train: bool,
    seed: int = 0,
    cache: bool = True,
    num_workers: int = 0,
) -> DataLoader:
    """A MONAI ``DataLoader`` over a (cached) dataset; training shuffles with a seeded generator and drops a last
    batch of one (batch-norm cannot train on a single pooled sample)."""
    data = [dict(e) for e in entries]
    if not data:
        raise ValueError("no entries to load")
    transform.set_random_state(seed=seed)
    try:
        ds = (
            CacheDataset(data, transform, cache_rate=1.0, num_workers=0, progress=False)
            if cache
            else Dataset(data, transform)
        )
    except Exception as e:
        # MONAI wraps a transform's error as "applying transform ..."; surface our data checks' own message
        cause: BaseException | None = e.__cause__
        while cause is not None and not (isinstance(cause, ValueError) and cause.__cause__ is None):
            cause = cause.__cause__
        if cause is not None:
            raise ValueError(str(cause)) from e
        raise
    generator = torch.Generator().manual_seed(seed)
    drop_last = train and len(data) % batch_size == 1 and len(data) > 1
    return DataLoader(
        ds,
        batch_size=min(batch_size, len(data)),
        shuffle=train,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator if train else None,
    )
