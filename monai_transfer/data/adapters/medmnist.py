"""MedMNIST v2 / MedMNIST+ ``.npz`` files (Yang et al., "MedMNIST v2", Scientific Data 2023).

Each file holds ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``.
Images are uint8: ``(N, H, W)`` grey 2D, ``(N, H, W, 3)`` RGB 2D, or ``(N, D, H, W)`` 3D. Labels are ``(N, 1)`` class
indices (binary / multi-class / ordinal) or ``(N, K)`` 0/1 multi-label targets (ChestMNIST).
Entries are channel-first arrays: ``(C, H, W)`` or ``(1, D, H, W)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from monai.data import Dataset
from monai.transforms import Transform

__all__ = ["load_medmnist", "MedMNISTDataset", "download_medmnist", "medmnist_url", "MEDMNIST_INFO", "SPLITS"]

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"training": "train", "validation": "val", "valid": "val", "testing": "test"}

#: Zenodo record of MedMNIST+ (v3.0 files, sizes 28/64/128/224); files ``{flag}.npz`` or ``{flag}_{size}.npz``.
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}.npz?download=1"

#: Task facts for the MedMNIST flags (from the MedMNIST ``INFO`` table).
MEDMNIST_INFO: dict[str, dict[str, Any]] = {
    "pathmnist": {"task": "multi-class", "n_channels": 3, "n_classes": 9, "spatial_dims": 2},
    "chestmnist": {"task": "multi-label", "n_channels": 1, "n_classes": 14, "spatial_dims": 2},
    "dermamnist": {"task": "multi-class", "n_channels": 3, "n_classes": 7, "spatial_dims": 2},
    "octmnist": {"task": "multi-class", "n_channels": 1, "n_classes": 4, "spatial_dims": 2},
    "pneumoniamnist": {"task": "binary-class", "n_channels": 1, "n_classes": 2, "spatial_dims": 2},
    "retinamnist": {"task": "ordinal-regression", "n_channels": 3, "n_classes": 5, "spatial_dims": 2},
    "breastmnist": {"task": "binary-class", "n_channels": 1, "n_classes": 2, "spatial_dims": 2},
    "bloodmnist": {"task": "multi-class", "n_channels": 3, "n_classes": 8, "spatial_dims": 2},
    "tissuemnist": {"task": "multi-class", "n_channels": 1, "n_classes": 8, "spatial_dims": 2},
    "organamnist": {"task": "multi-class", "n_channels": 1, "n_classes": 11, "spatial_dims": 2},
    "organcmnist": {"task": "multi-class", "n_channels": 1, "n_classes": 11, "spatial_dims": 2},
    "organsmnist": {"task": "multi-class", "n_channels": 1, "n_classes": 11, "spatial_dims": 2},
    "organmnist3d": {"task": "multi-class", "n_channels": 1, "n_classes": 11, "spatial_dims": 3},
    "nodulemnist3d": {"task": "binary-class", "n_channels": 1, "n_classes": 2, "spatial_dims": 3},
    "adrenalmnist3d": {"task": "binary-class", "n_channels": 1, "n_classes": 2, "spatial_dims": 3},
    "fracturemnist3d": {"task": "multi-class", "n_channels": 1, "n_classes": 3, "spatial_dims": 3},
    "vesselmnist3d": {"task": "binary-class", "n_channels": 1, "n_classes": 2, "spatial_dims": 3},
    "synapsemnist3d": {"task": "binary-class", "n_channels": 1, "n_classes": 2, "spatial_dims": 3},
}


def _flag_of(path: str) -> str | None:
    base = os.path.basename(path).lower().split(".")[0]
    for flag in sorted(MEDMNIST_INFO, key=len, reverse=True):
        if base == flag or base.startswith(flag + "_"):
            return flag
    return None


def medmnist_url(flag: str, size: int | None = None) -> str:
    """Download URL of a MedMNIST file (``size`` 28 (default), 64, 128 or 224; 3D sets: 28 or 64)."""
    if flag not in MEDMNIST_INFO:
        raise ValueError(f"unknown MedMNIST flag {flag!r}; known: {sorted(MEDMNIST_INFO)}")
    if size not in (None, 28, 64, 128, 224) or (MEDMNIST_INFO[flag]["spatial_dims"] == 3 and size in (128, 224)):
        raise ValueError(f"{flag}: unsupported size {size}")
    return MEDMNIST_URL.format(name=flag if size in (None, 28) else f"{flag}_{size}")


def download_medmnist(flag: str, root: str | os.PathLike, size: int | None = None, md5: str | None = None) -> str:
    """Download a MedMNIST ``.npz`` into ``root`` (skipped when present) with MONAI's ``download_url``.

    Args:
        flag: dataset flag, e.g. ``"pneumoniamnist"``.
        root: target folder.
        size: image size (28 default; 64/128/224 for MedMNIST+).
        md5: expected MD5 (checked when given; the MedMNIST ``INFO`` table lists them).

    Returns:
        The local file path.
    """
    from monai.apps import download_url

    name = flag if size in (None, 28) else f"{flag}_{size}"
    path = os.path.join(os.fspath(root), f"{name}.npz")
    if not os.path.isfile(path):
        os.makedirs(os.fspath(root), exist_ok=True)
        download_url(medmnist_url(flag, size), path, hash_val=md5, hash_type="md5")
    return path


def _split_name(split: str) -> str:
    s = _SPLIT_ALIASES.get(split, split)
    if s not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return s


def _arrays(path: str, split: str, spatial_dims: int | None) -> tuple[np.ndarray, np.ndarray, int, str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MedMNIST file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        keys = sorted(z.files)
        ik, lk = f"{split}_images", f"{split}_labels"
        for k in (ik, lk):
            if k not in keys:
                raise KeyError(f"{path}: missing array {k!r} (MedMNIST layout); arrays present: {keys}")
        images, labels = z[ik], z[lk]
    flag = _flag_of(path)
    if spatial_dims is None:
        if flag is not None:
            spatial_dims = MEDMNIST_INFO[flag]["spatial_dims"]
        elif images.ndim == 4 and images.shape[-1] in (1, 3):
            spatial_dims = 2
        else:
            spatial_dims = images.ndim - 1
    if spatial_dims == 2 and not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))):
        raise ValueError(f"{path}:{ik}: 2D images must be (N, H, W) or (N, H, W, 3), got {images.shape}")
    if spatial_dims == 3 and images.ndim != 4:
        raise ValueError(f"{path}:{ik}: 3D images must be (N, D, H, W), got {images.shape}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if images.dtype != np.uint8:
        raise ValueError(f"{path}:{ik}: MedMNIST images are uint8, got {images.dtype}")
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{path}:{lk}: labels must be (N, 1) or (N, K) with N = {images.shape[0]} images, got {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{path}:{lk}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    task = MEDMNIST_INFO[flag]["task"] if flag else ("multi-label" if labels.shape[1] > 1 else "multi-class")
    if labels.shape[1] > 1 and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{path}:{lk}: multi-label targets (N, K) must be 0/1, found {sorted(np.unique(labels))[:10]}")
    if labels.min() < 0:
        raise ValueError(f"{path}:{lk}: negative class index {labels.min()}")
    if flag and labels.shape[1] == 1 and labels.max() >= MEDMNIST_INFO[flag]["n_classes"]:
        raise ValueError(f"{path}:{lk}: class {labels.max()} >= {MEDMNIST_INFO[flag]['n_classes']} classes of {flag}")
    return images, labels, spatial_dims, task


def load_medmnist(
    path: str | os.PathLike, split: str = "train", spatial_dims: int | None = None
) -> list[dict[str, Any]]:
    """Read one split of a MedMNIST ``.npz`` as a datalist of in-memory arrays.

    Args:
        path: the ``.npz`` file (e.g. ``pneumoniamnist.npz``, ``organmnist3d_64.npz``).
        split: ``"train"``, ``"val"`` or ``"test"`` (``"training"``/``"validation"`` accepted).
        spatial_dims: 2 or 3; default from the file name's flag, else from the array shape (``(N, H, W, 3)`` is RGB 2D).

    Returns:
        Entries ``{"image": uint8 array (C, H, W) or (1, D, H, W), "label": int or float32 (K,) multi-hot,
        "index": i, "split": split, "task": ...}``.

    Raises:
        KeyError: an array is missing (the message lists those present). ValueError: bad shape, dtype or label.
    """
    path = os.fspath(path)
    split = _split_name(split)
    images, labels, sd, task = _arrays(path, split, spatial_dims)
    if sd == 2 and images.ndim == 4:
        images = np.moveaxis(images, -1, 1)
    else:
        images = images[:, None]
    multi = labels.shape[1] > 1
    return [
        {
            "image": images[i],
            "label": labels[i].astype(np.float32) if multi else int(labels[i, 0]),
            "index": i,
            "split": split,
            "task": task,
        }
        for i in range(images.shape[0])
    ]


class MedMNISTDataset(Dataset):
    """A MONAI ``Dataset`` over one split of a MedMNIST ``.npz`` (dict items, see :func:`load_medmnist`)."""

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        transform: Transform | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        """Args: path, split, spatial_dims as in :func:`load_medmnist`; transform: applied to each dict item."""
        super().__init__(load_medmnist(path, split, spatial_dims), transform=transform)
