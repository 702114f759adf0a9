"""The checked transform chain of a fine-tuning task (classification or segmentation, 2D or 3D), as bundle components
and as a ``Compose``.

Bad data fails early with a message naming the problem and the file: an unreadable image (``ReadImaged``), a NaN/Inf
in an image (``CheckFinited``), the wrong number of spatial axes (``CheckSpatialDimsd``), a label outside
``[0, num_classes)`` (``CheckLabelRanged``), all from :mod:`monai_transfer.transforms.checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monai.transforms import Compose

from monai_transfer.finetune.datalist_checks import TASKS
from monai_transfer.utils.components import instantiate
from monai_transfer.utils.sizes import per_axis

__all__ = ["transform_components", "make_transforms"]


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
    checks = "monai_transfer.transforms.checks"
    xs: list[dict[str, Any]] = [
        {"_target_": f"{checks}.ReadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": f"{checks}.CheckFinited", "keys": image_key},
        {"_target_": f"{checks}.CheckSpatialDimsd", "keys": image_key, "spatial_dims": int(spatial_dims)},
        {"_target_": f"{checks}.CheckLabelRanged", "keys": label_key, "num_classes": int(num_classes),
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
