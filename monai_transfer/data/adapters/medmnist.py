"""MedMNIST v2 / MedMNIST+ ``.npz`` files (Yang et al., "MedMNIST v2", Scientific Data 2023).

Each file holds ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``.
Images are uint8: ``(N, H, W)`` grey 2D, ``(N, H, W, 3)`` RGB 2D, or ``(N, D, H, W)`` 3D. Labels are ``(N, 1)`` class
indices (binary / multi-class / ordinal) or ``(N, K)`` 0/1 multi-label targets (ChestMNIST).
Entries are channel-first arrays: ``(C, H, W)`` or ``(1, D, H, W)``.

:func:`medmnist_datalist` converts a file once into NIfTI images plus an MSD-style datalist JSON in a cache folder, so
that every command and bundle config that reads a datalist path also takes a MedMNIST ``.npz``
(``monai_transfer.data.load_datalist`` does the conversion on the fly).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import Dataset
from monai.transforms import Transform
from monai.utils import optional_import

from ..datalist_format import DatalistError, write_datalist

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = [
    "load_medmnist",
    "MedMNISTDataset",
    "medmnist_datalist",
    "medmnist_cache_root",
    "is_npz",
    "download_medmnist",
    "medmnist_url",
    "MEDMNIST_INFO",
    "MEDMNIST_LABELS",
    "SPLITS",
]

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


_ORGAN_LABELS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
                 "lung-right", "pancreas", "spleen")  # fmt: skip

#: Class names per flag (the ``label`` tables of MedMNIST's ``INFO``, in class-index order).
MEDMNIST_LABELS: dict[str, tuple[str, ...]] = {
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
                  "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
    "chestmnist": ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "retinamnist": ("0", "1", "2", "3", "4"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
                   "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"),
    "organamnist": _ORGAN_LABELS,
    "organcmnist": _ORGAN_LABELS,
    "organsmnist": _ORGAN_LABELS,
    "organmnist3d": ("liver", "kidney-right", "kidney-left", "femur-right", "femur-left", "bladder", "heart",
                     "lung-right", "lung-left", "spleen", "pancreas"),
    "nodulemnist3d": ("benign", "malignant"),
    "adrenalmnist3d": ("normal", "hyperplasia"),
    "fracturemnist3d": ("buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"),
    "vesselmnist3d": ("vessel", "aneurysm"),
    "synapsemnist3d": ("inhibitory synapse", "excitatory synapse"),
}  # fmt: skip


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


def _spatial_dims_of(
    path: str, ik: str, shape: tuple[int, ...], dtype: np.dtype, flag: str | None, spatial_dims: int | None
) -> int:
    """2 or 3 from the flag, else from the image array's shape; checks the shape and dtype."""
    ndim = len(shape)
    if spatial_dims is None:
        if flag is not None:
            spatial_dims = MEDMNIST_INFO[flag]["spatial_dims"]
        elif ndim == 4 and shape[-1] in (1, 3):
            spatial_dims = 2
        else:
            spatial_dims = ndim - 1
    if spatial_dims == 2 and not (ndim == 3 or (ndim == 4 and shape[-1] in (1, 3))):
        raise ValueError(f"{path}:{ik}: 2D images must be (N, H, W) or (N, H, W, 3), got {tuple(shape)}")
    if spatial_dims == 3 and ndim != 4:
        raise ValueError(f"{path}:{ik}: 3D images must be (N, D, H, W), got {tuple(shape)}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if np.dtype(dtype) != np.uint8:
        raise ValueError(f"{path}:{ik}: MedMNIST images are uint8, got {np.dtype(dtype)}")
    return int(spatial_dims)


def _checked_labels(path: str, lk: str, labels: np.ndarray, n: int, flag: str | None) -> tuple[np.ndarray, str]:
    """Labels as ``(N, 1)`` or ``(N, K)`` int64, checked, and the task."""
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[0] != n:
        raise ValueError(f"{path}:{lk}: labels must be (N, 1) or (N, K) with N = {n} images, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{path}:{lk}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    task = MEDMNIST_INFO[flag]["task"] if flag else ("multi-label" if labels.shape[1] > 1 else "multi-class")
    if labels.shape[1] > 1 and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{path}:{lk}: multi-label targets (N, K) must be 0/1, found {sorted(np.unique(labels))[:10]}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}:{lk}: negative class index {labels.min()}")
    if flag and labels.size and labels.shape[1] == 1 and labels.max() >= MEDMNIST_INFO[flag]["n_classes"]:
        raise ValueError(f"{path}:{lk}: class {labels.max()} >= {MEDMNIST_INFO[flag]['n_classes']} classes of {flag}")
    return labels, task


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
    spatial_dims = _spatial_dims_of(path, ik, images.shape, images.dtype, flag, spatial_dims)
    labels, task = _checked_labels(path, lk, labels, images.shape[0], flag)
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


# -- a MedMNIST file as a datalist on disk --------------------------------------------------------------------------
DATALIST_NAME = "datalist.json"
_READY = ".ready"
_SECTIONS = {"train": "training", "val": "validation", "test": "test"}
_CHUNK = 512  # images read from the archive at a time
_PROGRESS_MIN = 2000  # files with at least this many images show a progress bar
_CONVERTED: dict[tuple[str, int, int, str], str] = {}  # (file, size, mtime_ns, cache root) -> datalist, per process
_LOCK = threading.Lock()


def is_npz(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a ``.npz`` file (the form in which datalist readers take a MedMNIST file)."""
    return os.fspath(path).lower().endswith(".npz")


def medmnist_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted MedMNIST files live: ``<cache>/medmnist``, the cache being ``cache_dir``, else
    ``$MONAI_TRANSFER_CACHE``, else ``~/.cache/monai_transfer``."""
    root = cache_dir if cache_dir is not None else os.environ.get("MONAI_TRANSFER_CACHE") or None
    base = Path(root) if root is not None else Path.home() / ".cache" / "monai_transfer"
    return base.expanduser().resolve() / "medmnist"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class _Member:
    """One ``.npy`` array of an ``.npz``: its header, and its items read in order a chunk at a time (a compressed
    member cannot be memory-mapped, and a MedMNIST+ 224 split does not fit in memory)."""

    def __init__(self, zf: zipfile.ZipFile, name: str) -> None:
        self.f = zf.open(name + ".npy")
        version = np.lib.format.read_magic(self.f)
        if version == (1, 0):
            self.shape, fortran, self.dtype = np.lib.format.read_array_header_1_0(self.f)
        else:
            self.shape, fortran, self.dtype = np.lib.format.read_array_header_2_0(self.f)
        if fortran or self.dtype.hasobject:
            raise ValueError(f"{name}: Fortran-ordered or object arrays are not MedMNIST arrays")
        self.item_shape = tuple(self.shape[1:])
        self.item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * self.dtype.itemsize

    def chunks(self, size: int) -> Any:
        n = int(self.shape[0])
        for start in range(0, n, size):
            k = min(size, n - start)
            buf = self.f.read(k * self.item_bytes)
            if len(buf) != k * self.item_bytes:
                raise ValueError("array data ends early (truncated file)")
            yield start, np.frombuffer(buf, dtype=self.dtype).reshape((k, *self.item_shape))

    def close(self) -> None:
        self.f.close()


def _inspect(path: str) -> dict[str, Any]:
    """Check the whole file against the MedMNIST layout (image headers, all labels) without reading the images.

    Raises:
        DatalistError: naming the file, the problem and the arrays present.
    """
    expected = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise DatalistError(
            f"{path}: not a MedMNIST .npz (not a NumPy .npz archive: {e}); expected arrays {expected}"
        ) from None
    flag = _flag_of(path)
    with zf:
        present = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
        missing = [k for k in expected if k not in present]
        if missing:
            raise DatalistError(
                f"{path}: not a MedMNIST .npz: missing arrays {missing}; arrays present: {present} "
                f"(the MedMNIST layout holds {expected})"
            )
        splits: dict[str, Any] = {}
        dims: set[int] = set()
        tasks: set[str] = set()
        try:
            for s in SPLITS:
                m = _Member(zf, f"{s}_images")
                m.close()
                sd = _spatial_dims_of(path, f"{s}_images", m.shape, m.dtype, flag, None)
                with zf.open(f"{s}_labels.npy") as f:
                    raw = np.lib.format.read_array(f, allow_pickle=False)
                labels, task = _checked_labels(path, f"{s}_labels", raw, int(m.shape[0]), flag)
                splits[s] = {"shape": tuple(int(v) for v in m.shape), "labels": labels}
                dims.add(sd)
                tasks.add(task)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise DatalistError(f"{path}: not a usable MedMNIST .npz: {e}; arrays present: {present}") from None
    item_shapes = {v["shape"][1:] for v in splits.values()}
    widths = {v["labels"].shape[1] for v in splits.values() if len(v["labels"])}
    if len(dims) != 1 or len(item_shapes) != 1 or len(widths) > 1:
        shapes = {s: v["shape"] for s, v in splits.items()}
        raise DatalistError(f"{path}: the splits disagree on image shape or label width: images {shapes}")
    return {"flag": flag, "spatial_dims": dims.pop(), "task": tasks.pop(), "splits": splits}


def _nifti_gz(arr: np.ndarray) -> bytes:
    img = nib.Nifti1Image(np.ascontiguousarray(arr), np.eye(4))
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def _label_names(info: dict[str, Any]) -> dict[str, str]:
    flag, labels = info["flag"], [v["labels"] for v in info["splits"].values()]
    width = max((lab.shape[1] for lab in labels), default=1)
    n = width if width > 1 else max((int(lab.max()) + 1 for lab in labels if lab.size), default=1)
    names = MEDMNIST_LABELS.get(flag or "", ())
    if flag is not None:
        n = max(n, MEDMNIST_INFO[flag]["n_classes"])
    return {str(i): (names[i] if len(names) == n else str(i)) for i in range(n)}


def _convert(path: str, sha: str, info: dict[str, Any], tmp: Path, progress: bool | None) -> None:
    """Write the images and the datalist of ``path`` into the folder ``tmp``."""
    sd, flag = info["spatial_dims"], info["flag"]
    item = info["splits"]["train"]["shape"][1:]
    rgb = sd == 2 and len(item) == 3 and item[-1] == 3
    total = sum(v["shape"][0] for v in info["splits"].values())
    width = max(4, len(str(max(v["shape"][0] for v in info["splits"].values()) - 1)))
    show = total >= _PROGRESS_MIN if progress is None else bool(progress)
    bar = (
        tqdm(total=total, desc=f"MedMNIST {os.path.basename(path)} -> NIfTI", unit="img") if show and has_tqdm else None
    )
    (tmp / "images").mkdir()
    sections: dict[str, list[dict[str, Any]]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for split in SPLITS:
                labels = info["splits"][split]["labels"]
                rows: list[dict[str, Any]] = []
                member = _Member(zf, f"{split}_images")
                try:
                    for start, chunk in member.chunks(_CHUNK):
                        for j, arr in enumerate(chunk):
                            i = start + j
                            cid = f"{split}_{i:0{width}d}"
                            if rgb:
                                image: Any = []
                                for c in range(3):
                                    (tmp / "images" / f"{cid}_c{c}.nii.gz").write_bytes(_nifti_gz(arr[..., c]))
                                    image.append(f"./images/{cid}_c{c}.nii.gz")
                            else:
                                plane = arr[..., 0] if sd == 2 and arr.ndim == 3 else arr
                                (tmp / "images" / f"{cid}.nii.gz").write_bytes(_nifti_gz(plane))
                                image = f"./images/{cid}.nii.gz"
                            lab = labels[i]
                            label: Any = lab.tolist() if labels.shape[1] > 1 else int(lab[0])
                            rows.append({"image": image, "label": label, "id": cid, "index": i})
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    member.close()
                sections[_SECTIONS[split]] = rows
    finally:
        if bar is not None:
            bar.close()
    props = {
        "name": flag or os.path.splitext(os.path.basename(path))[0],
        "description": f"MedMNIST {os.path.basename(path)} converted to NIfTI (images unchanged, uint8, identity affine)",
        "reference": "Yang et al., MedMNIST v2, Scientific Data 2023",
        "tensorImageSize": f"{sd}D",
        "modality": {"0": "R", "1": "G", "2": "B"} if rgb else {"0": "grey"},
        "task": info["task"],
        "labels": _label_names(info),
        "source": {"format": "MedMNIST .npz", "file": os.path.basename(path), "sha256": sha},
    }
    # paths are written as stored ("./images/..."), relative to the JSON file: the folder can be renamed
    write_datalist(tmp / DATALIST_NAME, sections, props, relative=False, check_files=False)


def medmnist_datalist(
    npz: str | os.PathLike, cache_dir: str | os.PathLike | None = None, progress: bool | None = None
) -> str:
    """Convert a MedMNIST ``.npz`` once into NIfTI images and an MSD-style datalist; return the datalist's path.

    The output lives in ``<cache>/medmnist/<sha256[:16]>/`` (``cache`` is ``cache_dir``, else
    ``$MONAI_TRANSFER_CACHE``, else ``~/.cache/monai_transfer``), never beside the ``.npz``: ``datalist.json`` with
    sections ``training``, ``validation`` and ``test`` (the file's train/val/test), entries
    ``{"image": "./images/train_0000.nii.gz", "label": 1, "id": "train_0000", "index": 0}`` (multi-label files: the
    label is a 0/1 list), the properties ``labels`` (MedMNIST's class names when the file name gives the flag, else
    ``"0"``, ``"1"``, ...), ``task``, ``tensorImageSize`` and ``source`` (file name and SHA-256). Images keep their
    uint8 values with an identity affine: a grey 2D image is one 2D NIfTI, a 3D image one 3D NIfTI, and an RGB image
    three 2D NIfTI files listed as the entry's ``image`` (MONAI's ``LoadImaged`` stacks a list of files into the
    channels, ``(3, H, W)``; its NIfTI reader would read one 3-channel 2D file as a 3D image).

    The folder is written under a temporary name and renamed when complete, with a ``.ready`` marker: a second call
    (or another process) uses it as it is, and an interrupted conversion is never used.

    Args:
        npz: the MedMNIST file (``pneumoniamnist.npz``, ``organmnist3d_64.npz``, ...).
        cache_dir: the cache folder (default as above).
        progress: show a progress bar (default: for files of 2,000 images or more).

    Returns:
        The datalist JSON path.

    Raises:
        FileNotFoundError: no such file.
        DatalistError: the file is not a MedMNIST ``.npz`` (the message names the arrays present).
    """
    path = os.path.realpath(os.fspath(npz))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MedMNIST file not found: {os.fspath(npz)}")
    root = medmnist_cache_root(cache_dir)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, str(root))
    with _LOCK:
        hit = _CONVERTED.get(key)
        if hit and os.path.isfile(hit):
            return hit
        sha = _sha256(path)
        final = root / sha[:16]
        out = str(final / DATALIST_NAME)
        if not ((final / _READY).is_file() and os.path.isfile(out)):
            _build(path, sha, final, progress)
        _CONVERTED[key] = out
        return out


def _build(path: str, sha: str, final: Path, progress: bool | None) -> None:
    info = _inspect(path)  # before any write: a bad file leaves nothing behind
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        _convert(path, sha, info, tmp, progress)
        (tmp / _READY).write_text(json.dumps({"source": os.path.basename(path), "sha256": sha}) + "\n")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _READY).is_file():  # a stale, unfinished folder of an older version: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first, or this one failed
