"""Deterministic demo data simulated from real anatomy: the MNI152 template and its grey/white-matter maps.

This is a **simulation built on a real template** (nilearn's MNI152 T1 and tissue probability maps, shipped inside the
``nilearn`` package, loaded offline). Each simulated subject is the template warped by a smooth random deformation
(random affine plus a smooth displacement field, one interpolation); each simulated site applies scanner-like changes
(contrast curve (gamma), multiplicative bias field, blur for resolution and slice thickness, Rician noise, gain).
Optional white-matter lesions are hyperintense (FLAIR-like) ellipsoids clipped to white matter.

Tasks written (NIfTI with the simulation's RAS affines, datalists in MSD layout):

* ``tissue_seg_3d.json``: 3D tissue segmentation, labels 0 background, 1 CSF/other brain, 2 grey matter, 3 white matter.
* ``tissue_seg_2d.json``: axial slices of the same subjects and labels (2D NIfTI).
* ``lesion_cls_3d.json``: lesion presence (0/1) per volume; prevalence = ``lesion_prevalence``; ``lesion_mask`` given.
* ``unlabeled.json``: an unlabeled pool of further simulated subjects (section ``"unlabeled"``) for pretraining.
* ``other_modality.json``: an unlabeled pool of a second, differently contrasted simulated modality (T2-like: CSF
  bright, grey above white matter; own scanners with other bias, blur and noise) of further subjects, for studies of
  pretraining on a mismatched modality. Drawn from its own random streams, so every other file is the same with or
  without it.
* optionally ``dicom/<subject>/IM_*.dcm``: the 3D images as DICOM series, and ``dicom_series.json``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import nibabel as nib
import numpy as np
from monai.utils import optional_import
from scipy import ndimage

from monai_transfer.utils.atomic import atomic_write_bytes, atomic_write_json

from ..datalist_format import write_datalist
from ..splits import patient_split
from .dicom_writer import write_dicom_series

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = [
    "make_demo_data",
    "load_anatomy",
    "simulate_subject",
    "SiteParams",
    "site_params",
    "other_modality_site_params",
    "DEMO_LABELS",
    "T2_LEVELS",
]

GENERATOR_ID = "monai_transfer.data.demo"
MANIFEST = "demo_manifest.json"
DEMO_LABELS = {"0": "background", "1": "csf_other_brain", "2": "gray_matter", "3": "white_matter"}
_VERSION = 1

#: Relative T2-like signal of CSF/other brain, grey and white matter in the second simulated modality.
T2_LEVELS = {"csf_other_brain": 0.95, "gray_matter": 0.62, "white_matter": 0.42}
OTHER_MODALITY = "T2w (simulated)"
_POOL_STREAMS = {"labelled": 202, "other_modality": 606}  # any other pool name: 303 (the unlabeled pool)

README = """monai_transfer demo data -- A SIMULATION BUILT ON A REAL TEMPLATE
=====================================================================

These images are NOT scans of real people. Every "subject" is the MNI152 T1 template (real anatomy, an average of
152 adult brains; shipped in the nilearn package) warped by a smooth random deformation. Tissue labels come from the
thresholded MNI152 grey- and white-matter probability maps warped the same way. Each "site" applies simulated
scanner effects (contrast curve, bias field, blur/slice thickness, Rician noise, gain). "Lesions" are simulated
hyperintense ellipsoids placed inside white matter. Use this data to learn and test the tools, never to draw clinical
or scientific conclusions; real studies should use the public-dataset adapters (MedMNIST, MSD, folder + CSV).

Generated with: {params}

Files
-----
images/<subject>_T1w.nii.gz        3D image (float32, RAS affine)
labels/<subject>_tissue.nii.gz     3D labels: 0 background, 1 CSF/other brain, 2 grey matter, 3 white matter
labels/<subject>_lesion.nii.gz     3D lesion mask (0/1; empty for lesion-free subjects)
slices/<subject>_z<k>_{{img,seg}}.nii.gz  2D axial slices and labels
unlabeled/<subject>_T1w.nii.gz     unlabeled pretraining pool (further simulated subjects)
dicom/<subject>/IM_*.dcm           (optional) the 3D images as DICOM series (int16 with rescale slope/intercept)
tissue_seg_3d.json, tissue_seg_2d.json, lesion_cls_3d.json, unlabeled.json[, dicom_series.json]   datalists
demo_manifest.json                 parameters and SHA-256 of every file
"""


@dataclass(frozen=True)
class SiteParams:
    """Scanner-like changes of one simulated site."""

    name: str
    scanner: str
    gamma: float
    bias_amplitude: float
    blur_inplane: float
    blur_through: float
    noise: float
    gain: float


def other_modality_site_params(seed: int, n_sites: int) -> list[SiteParams]:
    """Deterministic scanner parameters of the second (T2-like) modality, one per site (own random stream): blur
    within the T1w sites' ranges but never none (thicker slices), a stronger bias field and more noise than the T1w
    sites, and another gain."""
    out = []
    for s in range(n_sites):
        rng = np.random.default_rng([seed, 808, s])
        out.append(
            SiteParams(
                name=f"site-{chr(ord('A') + s) if s < 26 else s}",
                scanner=f"SimScanner-T2-{s + 1}",
                gamma=float(np.exp(rng.uniform(-0.1, 0.1))),
                bias_amplitude=float(rng.uniform(0.15, 0.35)),
                blur_inplane=float(rng.uniform(0.2, 0.6)),  # within the T1w sites' ranges, towards thicker slices
                blur_through=float(rng.uniform(0.6, 1.5)),
                noise=float(rng.uniform(0.03, 0.06)),
                gain=float(rng.uniform(1500.0, 3000.0)),
            )
        )
    return out


def site_params(seed: int, n_sites: int) -> list[SiteParams]:
    """Deterministic parameters for ``n_sites`` simulated sites (site 0 the mildest)."""
    out = []
    for s in range(n_sites):
        rng = np.random.default_rng([seed, 101, s])
        severity = 0.0 if n_sites == 1 else s / (n_sites - 1)
        out.append(
            SiteParams(
                name=f"site-{chr(ord('A') + s) if s < 26 else s}",
                scanner=f"SimScanner-{s + 1}",
                gamma=float(np.exp(rng.choice([-1.0, 1.0]) * (0.05 + 0.3 * severity) * rng.uniform(0.8, 1.0))),
                bias_amplitude=float(0.05 + 0.25 * severity * rng.uniform(0.7, 1.0)),
                blur_inplane=float(0.6 * severity * rng.uniform(0.5, 1.0)),
                blur_through=float(1.5 * severity * rng.uniform(0.5, 1.0)),
                noise=float(0.01 + 0.04 * severity * rng.uniform(0.5, 1.0)),
                gain=float(rng.uniform(600.0, 1400.0)),
            )
        )
    return out


@dataclass
class Anatomy:
    """The MNI152 maps at 2 mm and the target grid (a cube around the brain)."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    src_affine: np.ndarray
    affine: np.ndarray
    size: int


@functools.lru_cache(maxsize=1)
def _mni152_2mm() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    from nilearn import datasets

    imgs = (
        datasets.load_mni152_template(resolution=2),
        datasets.load_mni152_gm_template(resolution=2),
        datasets.load_mni152_wm_template(resolution=2),
        datasets.load_mni152_brain_mask(resolution=2),
    )
    arrays = tuple(np.asarray(x.get_fdata(dtype=np.float32), dtype=np.float32) for x in imgs)
    for a in arrays:
        a.setflags(write=False)
    return arrays, np.asarray(imgs[0].affine, dtype=np.float64)


def load_anatomy(size: int = 64) -> Anatomy:
    """Load nilearn's MNI152 T1, GM, WM and brain mask (2 mm, offline) and define a ``size``^3 grid around the brain.

    The maps are loaded once per process and kept read-only.

    Raises:
        ImportError: nilearn is not installed (``pip install nilearn``).
    """
    arrays, src_aff = _mni152_2mm()
    idx = np.argwhere(arrays[3] > 0.5)
    lo_w = (src_aff @ np.r_[idx.min(0), 1.0])[:3]
    hi_w = (src_aff @ np.r_[idx.max(0), 1.0])[:3]
    centre = (lo_w + hi_w) / 2
    extent = float(np.max(hi_w - lo_w)) * 1.08
    spacing = extent / size
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = centre - spacing * (size - 1) / 2
    return Anatomy(*arrays, src_affine=src_aff, affine=aff, size=size)


def _smooth_field(rng: np.random.Generator, size: int, ctrl: int, amplitude: float) -> np.ndarray:
    """A smooth random field on ``size``^3 from ``ctrl``^3 Gaussian control values (separable Gaussian weights)."""
    coarse = rng.normal(0.0, amplitude, size=(ctrl, ctrl, ctrl))
    x = (np.arange(size) + 0.5) / size
    c = (np.arange(ctrl) + 0.5) / ctrl
    m = np.exp(-0.5 * ((x[:, None] - c[None, :]) * ctrl) ** 2)
    m /= np.sqrt((m**2).sum(1, keepdims=True))  # unit-variance weights: the field keeps the amplitude
    return np.einsum("ia,jb,kc,abc->ijk", m, m, m, coarse, optimize=True).astype(np.float32)


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _warp_coords(anat: Anatomy, rng: np.random.Generator, deform_mm: float) -> np.ndarray:
    """Source voxel coordinates (3, N) of a random affine + smooth displacement of the target grid."""
    n = anat.size
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64),) * 3, indexing="ij"), 0).reshape(3, -1)
    world = anat.affine[:3, :3] @ grid + anat.affine[:3, 3:4]
    centre = anat.affine[:3, :3] @ np.full((3, 1), (n - 1) / 2) + anat.affine[:3, 3:4]
    lin = _rotation(rng.uniform(-1, 1, 3) * np.deg2rad(6)) @ np.diag(rng.uniform(0.93, 1.07, 3))
    world = lin @ (world - centre) + centre + rng.uniform(-3, 3, (3, 1))
    disp = np.stack([_smooth_field(rng, n, 5, deform_mm).ravel() for _ in range(3)], 0)
    world = world + disp
    inv = np.linalg.inv(anat.src_affine)
    return inv[:3, :3] @ world + inv[:3, 3:4]


def _tissue_labels(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    other = np.clip(1.0 - gm - wm, 0.0, 1.0)
    lab = (np.argmax(np.stack([other, gm, wm], 0), 0) + 1).astype(np.uint8)
    lab[mask < 0.5] = 0
    return lab


def _lesions(
    rng: np.random.Generator, labels: np.ndarray, wm: np.ndarray, size: int, scale_radii: float = 1.0
) -> np.ndarray:
    """1-3 ellipsoids centred in deep white matter, clipped to white matter; ``scale_radii`` multiplies their radii."""
    core = np.argwhere((labels == 3) & (wm > 0.85))
    if len(core) == 0:
        core = np.argwhere(labels == 3)
    lesion = np.zeros(labels.shape, dtype=bool)
    grid = np.ogrid[tuple(slice(0, s) for s in labels.shape)]
    scale = size / 64.0
    for _ in range(int(rng.integers(1, 4))):
        c = core[rng.integers(len(core))]
        r = rng.uniform(1.5, 3.5, 3) * max(scale, 0.75) * scale_radii
        e = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) <= 1.0
        lesion |= e
    lesion &= labels == 3
    if not lesion.any():
        c = core[rng.integers(len(core))]
        lesion[tuple(c)] = True
    return lesion


def _site_effects(rng: np.random.Generator, img: np.ndarray, site: SiteParams, size: int) -> np.ndarray:
    out = np.clip(img, 0.0, None) ** site.gamma
    bias = np.exp(_smooth_field(rng, size, 3, site.bias_amplitude))
    out = out * bias
    if site.blur_inplane > 0 or site.blur_through > 0:
        out = ndimage.gaussian_filter(out, sigma=(site.blur_inplane, site.blur_inplane, site.blur_through))
    n1 = rng.normal(0.0, site.noise, out.shape)
    n2 = rng.normal(0.0, site.noise, out.shape)
    out = np.sqrt((out + n1) ** 2 + n2**2)  # Rician magnitude noise
    return (out * site.gain).astype(np.float32)


def _t2_contrast(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A T2-like image from the warped tissue maps: partial-volume mixture of :data:`T2_LEVELS` inside the brain."""
    other = np.clip(1.0 - gm - wm, 0.0, 1.0)
    lv = T2_LEVELS
    mix = lv["csf_other_brain"] * other + lv["gray_matter"] * gm + lv["white_matter"] * wm
    return (np.clip(mask, 0.0, 1.0) * mix).astype(np.float64)


def simulate_subject(
    anat: Anatomy,
    seed: int,
    index: int,
    site: SiteParams,
    lesion: bool,
    pool: str = "labelled",
    modality: str = "T1w",
    lesion_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Simulate one subject: ``{"image": float32, "tissue": uint8, "lesion": uint8}`` on the ``size``^3 grid.

    Deterministic in ``(seed, pool, index)`` (independent of the other subjects). ``pool``: ``"labelled"``,
    ``"other_modality"`` or anything else for the unlabeled pool (each its own random stream). ``modality``:
    ``"T1w"`` (the MNI152 T1 template) or ``"T2w"`` (a T2-like contrast from the tissue maps, :data:`T2_LEVELS`).
    ``lesion_scale`` multiplies the lesions' radii.
    """
    if modality not in ("T1w", "T2w"):
        raise ValueError(f"modality must be 'T1w' or 'T2w', got {modality!r}")
    rng = np.random.default_rng([seed, _POOL_STREAMS.get(pool, 303), index])
    coords = _warp_coords(anat, rng, deform_mm=4.0)
    shape = (anat.size,) * 3

    def warp(a: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(a, coords, order=1, mode="constant", cval=0.0).reshape(shape)

    t1, gm, wm, mask = (warp(a) for a in (anat.t1, anat.gm, anat.wm, anat.mask))
    labels = _tissue_labels(gm, wm, mask)
    les = _lesions(rng, labels, wm, anat.size, lesion_scale) if lesion else np.zeros(shape, dtype=bool)
    img = t1.astype(np.float64) if modality == "T1w" else _t2_contrast(gm, wm, mask)
    if les.any():
        wm_level = float(np.median(img[labels == 3]))
        soft = ndimage.gaussian_filter(les.astype(np.float64), 0.7)
        img = img + soft * (1.6 * wm_level - img).clip(0, None)
    img = _site_effects(rng, img, site, anat.size)
    return {"image": img, "tissue": labels, "lesion": les.astype(np.uint8)}


def _nifti_bytes(arr: np.ndarray, affine: np.ndarray) -> bytes:
    img = nib.Nifti1Image(arr, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=4, mtime=0)


class _Writer:
    """Atomic writes into ``out_dir`` with a SHA-256 per file for the manifest."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.files: dict[str, str] = {}

    def path(self, rel: str) -> str:
        return os.path.join(self.out_dir, *rel.split("/"))

    def bytes(self, rel: str, data: bytes) -> str:
        p = atomic_write_bytes(self.path(rel), data)
        self.files[rel] = hashlib.sha256(data).hexdigest()
        return p

    def nifti(self, rel: str, arr: np.ndarray, affine: np.ndarray) -> str:
        return self.bytes(rel, _nifti_bytes(arr, affine))

    def record(self, path: str) -> None:
        with open(path, "rb") as f:
            self.files[os.path.relpath(path, self.out_dir).replace(os.sep, "/")] = hashlib.sha256(f.read()).hexdigest()


def _check_out_dir(out_dir: str, overwrite: bool) -> dict[str, Any] | None:
    """The previous manifest when ``out_dir`` holds earlier demo output; refuse other non-empty folders."""
    if not os.path.exists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        raise NotADirectoryError(f"{out_dir} exists and is not a folder")
    if not os.listdir(out_dir):
        return None
    man = os.path.join(out_dir, MANIFEST)
    if os.path.isfile(man):
        try:
            with open(man, encoding="utf-8") as f:
                old = json.load(f)
            if old.get("generator") == GENERATOR_ID:
                return old
        except (OSError, json.JSONDecodeError):
            pass
    if overwrite:
        return None
    raise FileExistsError(
        f"{out_dir} is not empty and holds no previous demo output ({MANIFEST}); "
        "choose an empty or new folder, or pass overwrite=True"
    )


def _readme(params: dict[str, Any], other: dict[str, Any] | None) -> str:
    """README.txt; the second modality's pool is described only when written (else the text is as before it)."""
    text = README.format(params=json.dumps(params))
    if other is None:
        return text
    text = text.replace(
        "\n\nFiles\n-----\n",
        "\nSecond modality pool: "
        + json.dumps({k: other[k] for k in ("n_other_modality", "modality", "t2_levels")})
        + "\n(T2-like contrast from the warped tissue maps: CSF bright, grey above white matter; own simulated scanners "
        "with other bias field, slice thickness, noise and gain; further subjects.)\n\nFiles\n-----\n",
    )
    text = text.replace(
        "unlabeled pretraining pool (further simulated subjects)\n",
        "unlabeled pretraining pool (further simulated subjects)\n"
        "other_modality/<subject>_T2w.nii.gz  unlabeled pool of a second simulated modality (T2-like contrast)\n",
    )
    return text.replace(
        "lesion_cls_3d.json, unlabeled.json[", "lesion_cls_3d.json, unlabeled.json, other_modality.json["
    )


def _slice_indices(labels: np.ndarray, n: int) -> list[int]:
    """``n`` axial slice indices evenly spread over the middle 60 % of the brain's z range."""
    z = np.flatnonzero(labels.reshape(-1, labels.shape[2]).any(0))
    lo, hi = z.min(), z.max()
    a, b = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)
    return sorted({int(round(v)) for v in np.linspace(a, b, n)})


def _progress(it: range, enabled: bool, desc: str) -> Iterator[int] | range:
    return tqdm(it, desc=desc, disable=not enabled) if has_tqdm and enabled else it


def _check_demo_args(n_subjects: int, n_sites: int, size: int, lesion_prevalence: float, lesion_scale: float) -> None:
    """Refuse arguments that cannot give a usable data set, before anything is written."""
    if n_subjects < 1 or n_sites < 1 or size < 16:
        raise ValueError(f"need n_subjects >= 1, n_sites >= 1, size >= 16; got {n_subjects}, {n_sites}, {size}")
    if not 0.0 <= lesion_prevalence <= 1.0:
        raise ValueError(f"lesion_prevalence must lie in [0, 1], got {lesion_prevalence}")
    if not lesion_scale > 0:
        raise ValueError(f"lesion_scale must be > 0, got {lesion_scale}")


def _lesion_subjects(seed: int, n_subjects: int, n_sites: int, lesion_prevalence: float) -> list[bool]:
    """Which labelled subjects get lesions: exactly ``round(p * n)``, spread over sites (own random stream)."""
    n_les = int(np.floor(lesion_prevalence * n_subjects + 0.5))
    site_of = [i % n_sites for i in range(n_subjects)]
    order = sorted(range(n_subjects), key=lambda i: (np.random.default_rng([seed, 404, i]).random(), i))
    order = sorted(order, key=lambda i: order.index(i) // n_sites)  # interleave sites
    has_lesion = [False] * n_subjects
    by_site_rank = sorted(range(n_subjects), key=lambda i: (order.index(i), site_of[i]))
    for i in by_site_rank[:n_les]:
        has_lesion[i] = True
    return has_lesion


def _write_slices(
    w: _Writer, anat: Anatomy, sid: str, sim: dict[str, np.ndarray], n: int, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """The 2D task's rows of one subject: ``n`` axial image/label slices, each with its own in-plane affine."""
    rows = []
    for k in _slice_indices(sim["tissue"], n):
        aff2 = anat.affine.copy()
        aff2[:3, 3] = (anat.affine @ np.array([0.0, 0.0, k, 1.0]))[:3]
        sp = w.nifti(f"slices/{sid}_z{k:03d}_img.nii.gz", np.ascontiguousarray(sim["image"][:, :, k]), aff2)
        sl = w.nifti(f"slices/{sid}_z{k:03d}_seg.nii.gz", np.ascontiguousarray(sim["tissue"][:, :, k]), aff2)
        rows.append({"image": sp, "label": sl, "slice_index": k, **meta})
    return rows


def _write_dicom(
    w: _Writer,
    anat: Anatomy,
    sid: str,
    image: np.ndarray,
    site: SiteParams,
    seed: int,
    img_path: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """One subject's 3D image as a DICOM series (UIDs seeded, so reruns write the same bytes); its datalist row."""
    folder = w.path(f"dicom/{sid}")
    files = write_dicom_series(
        image,
        anat.affine,
        folder,
        patient_id=sid,
        uid_seed=(GENERATOR_ID, seed, anat.size, sid),
        institution=site.name,
        scanner=site.scanner,
    )
    for f in files:
        w.record(f)
    return {"image": folder, "image_nifti": img_path, **meta}


def _write_labelled(
    w: _Writer,
    anat: Anatomy,
    sites: list[SiteParams],
    seed: int,
    has_lesion: list[bool],
    slices_per_subject: int,
    dicom: bool,
    lesion_scale: float,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Simulate and write the labelled subjects (sites round-robin): rows of the 3D tasks, the 2D slices and DICOM."""
    subjects: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    dicom_rows: list[dict[str, Any]] = []
    for i in _progress(range(len(has_lesion)), progress, "demo subjects"):
        sid = f"sub-{i:03d}"
        site = sites[i % len(sites)]
        sim = simulate_subject(anat, seed, i, site, has_lesion[i], lesion_scale=lesion_scale)
        img_p = w.nifti(f"images/{sid}_T1w.nii.gz", sim["image"], anat.affine)
        tis_p = w.nifti(f"labels/{sid}_tissue.nii.gz", sim["tissue"], anat.affine)
        les_p = w.nifti(f"labels/{sid}_lesion.nii.gz", sim["lesion"], anat.affine)
        meta = {"patient_id": sid, "site": site.name, "scanner": site.scanner, "lesion": int(has_lesion[i])}
        subjects.append({"image": img_p, "label": tis_p, "lesion_mask": les_p, **meta})
        slices.extend(_write_slices(w, anat, sid, sim, slices_per_subject, meta))
        if dicom:
            dicom_rows.append(_write_dicom(w, anat, sid, sim["image"], site, seed, img_p, meta))
    return subjects, slices, dicom_rows


def _write_unlabeled(
    w: _Writer,
    anat: Anatomy,
    sites: list[SiteParams],
    seed: int,
    n_unl: int,
    lesion_prevalence: float,
    lesion_scale: float,
    progress: bool,
) -> list[dict[str, Any]]:
    """Simulate and write the unlabeled pretraining pool (own random streams); its datalist rows."""
    rows: list[dict[str, Any]] = []
    unl_lesion = np.random.default_rng([seed, 505]).random(n_unl) < lesion_prevalence
    for j in _progress(range(n_unl), progress, "demo unlabeled pool"):
        sid = f"unl-{j:03d}"
        site = sites[j % len(sites)]
        sim = simulate_subject(anat, seed, j, site, bool(unl_lesion[j]), pool="unlabeled", lesion_scale=lesion_scale)
        p = w.nifti(f"unlabeled/{sid}_T1w.nii.gz", sim["image"], anat.affine)
        rows.append({"image": p, "patient_id": sid, "site": site.name, "scanner": site.scanner})
    return rows


def _write_other_modality(
    w: _Writer,
    anat: Anatomy,
    seed: int,
    n_sites: int,
    n_oth: int,
    lesion_prevalence: float,
    lesion_scale: float,
    progress: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Simulate and write the second modality's pool: its datalist rows and its description for README and manifest.

    Its own random streams, written after everything else: no other file depends on it.
    """
    rows: list[dict[str, Any]] = []
    oth_sites = other_modality_site_params(seed, n_sites)
    oth_lesion = np.random.default_rng([seed, 707]).random(n_oth) < lesion_prevalence
    for j in _progress(range(n_oth), progress, "demo other-modality pool"):
        sid = f"oth-{j:03d}"
        site = oth_sites[j % n_sites]
        sim = simulate_subject(
            anat, seed, j, site, bool(oth_lesion[j]), pool="other_modality", modality="T2w", lesion_scale=lesion_scale
        )
        p = w.nifti(f"other_modality/{sid}_T2w.nii.gz", sim["image"], anat.affine)
        rows.append({"image": p, "patient_id": sid, "site": site.name, "scanner": site.scanner,
                     "modality": OTHER_MODALITY})  # fmt: skip
    other_info = {"n_other_modality": n_oth, "modality": OTHER_MODALITY, "t2_levels": T2_LEVELS,
                  "sites": [asdict(s) for s in oth_sites]}  # fmt: skip
    return rows, other_info


def _common_metadata(params: dict[str, Any], sites: list[SiteParams]) -> dict[str, Any]:
    """What every datalist says about its origin: a simulation, the template's licence, the generator's parameters."""
    return {
        "reference": "SIMULATION built on the MNI152 template (nilearn); not real patients",
        "licence": "MNI152 template: see nilearn's dataset description (ICBM 2009 / FSL MNI152 terms)",
        "release": f"monai_transfer demo v{_VERSION}",
        "simulation": {"generator": GENERATOR_ID, "params": params, "sites": [asdict(s) for s in sites]},
    }


def _write_datalists(
    w: _Writer,
    common: dict[str, Any],
    parts: dict[str, list[dict[str, Any]]],
    subjects: list[dict[str, Any]],
    slices: list[dict[str, Any]],
    unl_rows: list[dict[str, Any]],
    other: tuple[list[dict[str, Any]], dict[str, Any]] | None,
    dicom_rows: list[dict[str, Any]] | None,
) -> dict[str, str]:
    """Every task's datalist, each split as ``parts`` splits the subjects, recorded in the manifest; their paths.

    ``other`` (the second modality's rows and description) and ``dicom_rows``: ``None`` when that pool is not written.
    """
    out = w.out_dir
    split_of = {e["patient_id"]: name for name, rows in parts.items() for e in rows}

    def sections(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        return {name: [r for r in rows if split_of[r["patient_id"]] == name] for name in parts}

    result: dict[str, str] = {}
    result["tissue_seg_3d"] = write_datalist(
        os.path.join(out, "tissue_seg_3d.json"),
        sections([{k: v for k, v in s.items() if k != "lesion_mask"} for s in subjects]),
        {"name": "demo_tissue_seg_3d", "description": "3D brain tissue segmentation (simulated)", **common,
         "tensorImageSize": "3D", "modality": {"0": "T1w (simulated)"}, "labels": DEMO_LABELS},
    )  # fmt: skip
    result["tissue_seg_2d"] = write_datalist(
        os.path.join(out, "tissue_seg_2d.json"),
        sections(slices),
        {"name": "demo_tissue_seg_2d", "description": "2D axial brain tissue segmentation (simulated)", **common,
         "tensorImageSize": "2D", "modality": {"0": "T1w (simulated)"}, "labels": DEMO_LABELS},
    )  # fmt: skip
    result["lesion_cls_3d"] = write_datalist(
        os.path.join(out, "lesion_cls_3d.json"),
        sections([{**s, "label": s["lesion"]} for s in subjects]),
        {"name": "demo_lesion_cls_3d", "description": "white-matter lesion presence (simulated)", **common,
         "tensorImageSize": "3D", "modality": {"0": "T1w (simulated)"},
         "labels": {"0": "no_lesion", "1": "lesion"}},
        path_keys=("image", "label", "lesion_mask"),
    )  # fmt: skip
    result["unlabeled"] = write_datalist(
        os.path.join(out, "unlabeled.json"),
        {"unlabeled": unl_rows},
        {"name": "demo_unlabeled_pool", "description": "unlabeled pretraining pool (simulated)", **common},
    )
    if other is not None:
        oth_rows, other_info = other
        result["other_modality"] = write_datalist(
            os.path.join(out, "other_modality.json"),
            {"unlabeled": oth_rows},
            {"name": "demo_other_modality_pool", **common,
             "description": "unlabeled pretraining pool of a second simulated modality (T2-like contrast)",
             "tensorImageSize": "3D", "modality": {"0": OTHER_MODALITY}, "other_modality": other_info},
        )  # fmt: skip
    if dicom_rows is not None:
        result["dicom_series"] = write_datalist(
            os.path.join(out, "dicom_series.json"),
            sections(dicom_rows),
            {"name": "demo_dicom_series", "description": "the 3D images as DICOM series folders (simulated)", **common},
            path_keys=("image", "image_nifti"),
        )
        result["dicom_root"] = os.path.join(out, "dicom")
    for key in ("tissue_seg_3d", "tissue_seg_2d", "lesion_cls_3d", "unlabeled", "other_modality", "dicom_series"):
        if key in result:
            w.record(result[key])
    return result


def _remove_stale(w: _Writer, old: dict[str, Any] | None) -> None:
    """Remove files of an earlier demo run that this run did not write again (never outside the output folder)."""
    if old is None:
        return
    out = w.out_dir
    for rel in old.get("files", {}):
        p = os.path.realpath(w.path(rel))
        if rel not in w.files and os.path.commonpath([p, out]) == out and os.path.isfile(p):
            os.unlink(p)


def _write_manifest(w: _Writer, params: dict[str, Any], other_info: dict[str, Any] | None) -> str:
    """The manifest (parameters and SHA-256 of every file written), last: it marks the folder as complete demo output."""
    manifest: dict[str, Any] = {"generator": GENERATOR_ID, "version": _VERSION, "params": params}
    if other_info is not None:
        manifest["other_modality"] = other_info
    path = os.path.join(w.out_dir, MANIFEST)
    atomic_write_json(path, {**manifest, "files": dict(sorted(w.files.items()))})
    return path


def make_demo_data(
    out_dir: str | os.PathLike,
    n_subjects: int = 24,
    n_sites: int = 3,
    size: int = 64,
    lesion_prevalence: float = 0.3,
    dicom: bool = False,
    seed: int = 0,
    progress: bool = False,
    n_unlabeled: int | None = None,
    slices_per_subject: int = 4,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    overwrite: bool = False,
    n_other_modality: int | None = None,
    lesion_scale: float = 1.0,
) -> dict[str, str]:
    """Generate the demo data set (a simulation built on the real MNI152 template) into ``out_dir``.

    Args:
        out_dir: output folder; must be new, empty, or a previous demo output (else pass ``overwrite=True``).
        n_subjects: labelled simulated subjects (assigned to sites round-robin).
        n_sites: simulated sites (scanner-like intensity and resolution changes).
        size: volume edge length (voxels); 2D slices are ``size`` x ``size``.
        lesion_prevalence: share of subjects with white-matter lesions (exactly ``round(p * n)``, spread over sites).
        dicom: also write the 3D images as DICOM series under ``dicom/`` and ``dicom_series.json``.
        seed: random seed; the same seed gives byte-identical files.
        progress: show a progress bar.
        n_unlabeled: subjects in the unlabeled pool (further simulated subjects); default ``n_subjects``.
        n_other_modality: subjects in the unlabeled pool of the second simulated modality (T2-like contrast, own
            scanners; ``other_modality/``, ``other_modality.json``); default: the unlabeled pool's size; 0: none.
            Drawn from its own random streams: every other file is byte-identical with or without it (README.txt
            and the manifest mention it when present).
        lesion_scale: multiplies the simulated lesions' radii (1: radii of 1.5 to 3.5 voxels at 64^3, at least 1.1 to
            2.6 voxels at smaller sizes, where lesion presence is barely learnable from a few dozen volumes). Applies
            to every pool; 1 writes the same files as before this option existed.
        slices_per_subject: axial slices per subject in the 2D task.
        split_fractions: train/validation/test shares of subjects (patient-level, stratified by lesion status).
        overwrite: allow writing into a non-empty folder that is not a previous demo output.

    Returns:
        Paths: ``tissue_seg_3d``, ``tissue_seg_2d``, ``lesion_cls_3d``, ``unlabeled`` (datalists), ``readme``,
        ``manifest``, ``other_modality`` when that pool is written, and ``dicom_series`` / ``dicom_root`` when
        ``dicom=True``.
    """
    t0 = time.perf_counter()
    _check_demo_args(n_subjects, n_sites, size, lesion_prevalence, lesion_scale)
    out = os.path.abspath(os.fspath(out_dir))
    old = _check_out_dir(out, overwrite)
    os.makedirs(out, exist_ok=True)
    n_unl = n_subjects if n_unlabeled is None else int(n_unlabeled)
    n_oth = n_unl if n_other_modality is None else int(n_other_modality)
    if n_oth < 0:
        raise ValueError(f"n_other_modality must be >= 0, got {n_other_modality}")
    params = {
        "n_subjects": n_subjects,
        "n_sites": n_sites,
        "size": size,
        "lesion_prevalence": lesion_prevalence,
        "dicom": dicom,
        "seed": seed,
        "n_unlabeled": n_unl,
        "slices_per_subject": slices_per_subject,
        "split_fractions": list(split_fractions),
    }
    if lesion_scale != 1.0:  # recorded only when used: data made without it keeps byte-identical README and manifest
        params["lesion_scale"] = float(lesion_scale)
    anat = load_anatomy(size)
    sites = site_params(seed, n_sites)
    w = _Writer(out)

    has_lesion = _lesion_subjects(seed, n_subjects, n_sites, lesion_prevalence)
    subjects, slices, dicom_rows = _write_labelled(
        w, anat, sites, seed, has_lesion, slices_per_subject, dicom, lesion_scale, progress
    )
    unl_rows = _write_unlabeled(w, anat, sites, seed, n_unl, lesion_prevalence, lesion_scale, progress)
    oth_rows, other_info = _write_other_modality(
        w, anat, seed, n_sites, n_oth, lesion_prevalence, lesion_scale, progress
    )
    # one patient-level split shared by every task (stratified by lesion status)
    parts = patient_split(subjects, split_fractions, ("training", "validation", "test"), seed, "patient_id", "lesion")
    other = (oth_rows, other_info) if n_oth else None
    result = _write_datalists(
        w, _common_metadata(params, sites), parts, subjects, slices, unl_rows, other, dicom_rows if dicom else None
    )
    result["readme"] = w.bytes("README.txt", _readme(params, other_info if n_oth else None).encode())
    _remove_stale(w, old)
    result["manifest"] = _write_manifest(w, params, other_info if n_oth else None)
    if progress:
        print(f"demo data: {n_subjects} subjects, {n_unl} unlabeled, {n_oth} other-modality, "
              f"{time.perf_counter() - t0:.1f} s -> {out}")  # fmt: skip
    return result
