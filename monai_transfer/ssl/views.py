"""View recipes: the data pipeline that makes each SSL method's batch keys (``monai_transfer.ssl.base``).

:func:`make_views` builds, for a registered method name, the MONAI dictionary pipeline that turns a loaded,
channel-first, intensity-normalised ``image`` (values about [0, 1]) into exactly the keys the method reads (the
source ``image`` is replaced; other keys of the dictionary pass through):

==================================================  =============================================================
method                                              keys (per sample; a batch adds the leading ``B``)
==================================================  =============================================================
simclr, moco_v2, moco_v3, byol, simsiam,            ``image_v1``, ``image_v2``: ``(C, *roi)``, strong views
barlow_twins, vicreg
dino                                                ``image_v1``, ``image_v2``: ``(C, *roi)`` global views (scale
                                                    0.4-1); ``image_v3`` ... ``image_v{2+n}``: ``(C, *local_roi)``
                                                    local views (scale 0.1-0.4), ``n`` = 4 (2D) / 2 (3D)
mae, simmim                                         ``image``: ``(C, *roi)`` weak view; ``mask``: ``(1, *grid)``,
                                                    ``grid = roi // mask_patch_size``, 1 = masked
models_genesis                                      ``image``: ``(C, *roi)`` the target; ``image_v1``: corrupted
swin_unetr_ssl                                      ``image_v1``, ``image_v2``: rotated, cut-out; ``target_v1``,
                                                    ``target_v2``: rotated, uncut (``(C, *roi)``); ``rot_v1``,
                                                    ``rot_v2``: ``()`` long, the rotation class
==================================================  =============================================================

:func:`make_pretrain_transforms` prepends loading, float conversion, the modality's intensity preset and (for 2-D
pretraining on volumes) a random axial slice, and drops every other key so that batches collate.

The recipes are data (:data:`VIEW_RECIPES`: name -> :class:`ViewRecipe`); add one with ``VIEW_RECIPES[name] = ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    CopyItemsd,
    DeleteItemsd,
    EnsureTyped,
    MapTransform,
    Randomizable,
    SelectItemsd,
)
from monai.utils import ensure_tuple_rep

from monai_transfer.data.sampling import RandSliced
from monai_transfer.transforms.checks import ReadImaged, source_name
from monai_transfer.transforms.intensity import intensity_preset
from monai_transfer.transforms.masking import RandCutoutd, RandPatchMaskd, patch_grid
from monai_transfer.transforms.multiview import RandMultiViewd
from monai_transfer.transforms.restoration import RandModelsGenesisd
from monai_transfer.transforms.rotation import RandRotate90Classd
from monai_transfer.transforms.ssl_augment import ssl_augmentations

__all__ = [
    "DEFAULT_INTENSITY",
    "ViewRecipe",
    "VIEW_RECIPES",
    "make_load_transforms",
    "make_views",
    "make_pretrain_transforms",
    "view_keys",
]

IMAGE = "image"


def _roi(spatial_dims: int, roi_size: Sequence[int] | int) -> tuple[int, ...]:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    roi = tuple(int(r) for r in ensure_tuple_rep(roi_size, spatial_dims))
    if len(roi) != spatial_dims or any(r < 1 for r in roi):
        raise ValueError(f"roi_size {roi_size} does not fit spatial_dims={spatial_dims}")
    return roi


def _aug(
    spatial_dims: int,
    roi: Sequence[int],
    modality: str,
    strength: str,
    scale: tuple[float, float] | None,
    augment: Mapping[str, Any] | None,
) -> Compose:
    over = dict(augment or {})
    if scale is not None:
        over["scale"] = tuple(scale)
    return ssl_augmentations(spatial_dims, roi, modality, strength, keys=(IMAGE,), **over)


# --- joint embedding: two strong views --------------------------------------------------------------------------
def _two_views(
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    *,
    strength: str = "strong",
    scale: tuple[float, float] | None = None,
    augment: Mapping[str, Any] | None = None,
) -> Compose:
    """Two independent strong views (symmetric: the same pipeline for both, as SimCLR, SimSiam, Barlow Twins)."""
    roi = _roi(spatial_dims, roi_size)
    views = _aug(spatial_dims, roi, modality, strength, scale, augment)
    return Compose([RandMultiViewd(IMAGE, views, num_views=2, keep_source=False)])


def _two_view_keys(spatial_dims: int, **options: Any) -> tuple[str, ...]:
    return ("image_v1", "image_v2")


# --- DINO multi-crop ----------------------------------------------------------------------------------------------
def _num_local(spatial_dims: int, num_local_views: int | None) -> int:
    # DINO uses 8 local crops of 96 px; fewer here (memory on volumes): 4 in 2D, 2 in 3D
    return (4 if spatial_dims == 2 else 2) if num_local_views is None else int(num_local_views)


def _dino(
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    *,
    num_local_views: int | None = None,
    local_roi_size: Sequence[int] | int | None = None,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.1, 0.4),
    strength: str = "strong",
    augment: Mapping[str, Any] | None = None,
) -> Compose:
    """DINO multi-crop (Caron et al. 2021, arXiv:2104.14294): 2 global views, ``num_local_views`` small local ones."""
    roi = _roi(spatial_dims, roi_size)
    local_roi = _roi(spatial_dims, local_roi_size) if local_roi_size is not None else tuple(max(1, r // 2) for r in roi)
    n_local = _num_local(spatial_dims, num_local_views)
    glob = _aug(spatial_dims, roi, modality, strength, global_scale, augment)
    loc = _aug(spatial_dims, local_roi, modality, strength, local_scale, augment)
    return Compose(
        [RandMultiViewd(IMAGE, glob, num_views=2, local_transform=loc, num_local_views=n_local, keep_source=False)]
    )


def _dino_keys(spatial_dims: int, num_local_views: int | None = None, **options: Any) -> tuple[str, ...]:
    return tuple(f"image_v{i}" for i in range(1, 3 + _num_local(spatial_dims, num_local_views)))


# --- masked image modelling -----------------------------------------------------------------------------------------
#: ``method -> (mask patch size in 2D, in 3D, mask ratio)``: MAE 16 px / 0.75 (He et al. 2022); SimMIM 32 px / 0.6
#: (Xie et al. 2022); 16 voxels for SimMIM in 3D so that a 96^3 crop has a 6^3 grid
_MASK_DEFAULTS: dict[str, tuple[int, int, float]] = {"mae": (16, 16, 0.75), "simmim": (32, 16, 0.6)}


def _masked(
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    *,
    method: str = "mae",
    mask_patch_size: Sequence[int] | int | None = None,
    mask_ratio: float | None = None,
    strength: str = "weak",
    scale: tuple[float, float] | None = None,
    augment: Mapping[str, Any] | None = None,
) -> Compose:
    """One weakly augmented ``image`` and a patch ``mask`` with a fixed masked count (MAE, SimMIM)."""
    roi = _roi(spatial_dims, roi_size)
    p2, p3, ratio = _MASK_DEFAULTS[method]
    patch = mask_patch_size if mask_patch_size is not None else (p2 if spatial_dims == 2 else p3)
    patch_grid(roi, patch)  # ValueError now rather than at the first sample
    view = _aug(spatial_dims, roi, modality, strength, scale, augment)
    ratio = ratio if mask_ratio is None else mask_ratio
    return Compose([*view.transforms, RandPatchMaskd(IMAGE, patch_size=patch, mask_ratio=ratio, mask_key="mask")])


def _masked_keys(spatial_dims: int, **options: Any) -> tuple[str, ...]:
    return (IMAGE, "mask")


def _mae(spatial_dims: int, roi_size: Sequence[int] | int, modality: str = "ct", **options: Any) -> Compose:
    return _masked(spatial_dims, roi_size, modality, method="mae", **options)


def _simmim(spatial_dims: int, roi_size: Sequence[int] | int, modality: str = "ct", **options: Any) -> Compose:
    return _masked(spatial_dims, roi_size, modality, method="simmim", **options)


# --- Models Genesis --------------------------------------------------------------------------------------------------
def _models_genesis(
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    *,
    strength: str = "weak",
    scale: tuple[float, float] | None = None,
    augment: Mapping[str, Any] | None = None,
    genesis: Mapping[str, Any] | None = None,
) -> Compose:
    """A weakly augmented crop ``image`` (the target; flips as the paper) and its corrupted copy ``image_v1``.

    ``genesis`` passes keyword arguments to :class:`~monai_transfer.transforms.restoration.RandModelsGenesisd`.
    """
    roi = _roi(spatial_dims, roi_size)
    view = _aug(spatial_dims, roi, modality, strength, scale, augment)
    return Compose([*view.transforms, RandModelsGenesisd(IMAGE, output_keys="image_v1", **dict(genesis or {}))])


def _models_genesis_keys(spatial_dims: int, **options: Any) -> tuple[str, ...]:
    return (IMAGE, "image_v1")


# --- SwinUNETR multi-task ------------------------------------------------------------------------------------------
def _swin_unetr_ssl(
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    *,
    strength: str = "weak",
    scale: tuple[float, float] | None = None,
    augment: Mapping[str, Any] | None = None,
    rotation_axes: tuple[int, int] = (0, 1),
    cutout: Mapping[str, Any] | None = None,
    shared_crop: bool = False,
) -> Compose:
    """Two views, each rotated by ``k * 90`` degrees (class ``rot_v*``) and cut out (SwinUNETR-SSL, Tang et al. 2022).

    ``target_v*`` is the rotated view before the cut-out (the in-painting target). ``shared_crop=True`` rotates and
    cuts one crop twice, as the paper's code (two rotations of one sample); the default crops twice.
    ``cutout`` passes keyword arguments to :class:`~monai_transfer.transforms.masking.RandCutoutd`.
    """
    roi = _roi(spatial_dims, roi_size)
    if roi[rotation_axes[0]] != roi[rotation_axes[1]]:
        raise ValueError(f"rotation prediction needs a square plane; roi {roi} in axes {rotation_axes}")
    crop = _aug(spatial_dims, roi, modality, strength, scale, augment)
    task = [
        RandRotate90Classd(IMAGE, label_key="rot", spatial_axes=rotation_axes),
        CopyItemsd(IMAGE, names="target"),
        RandCutoutd(IMAGE, **dict(cutout or {})),
    ]
    keys = (IMAGE, "target", "rot")
    if shared_crop:
        return Compose(
            [*crop.transforms, RandMultiViewd(IMAGE, Compose(task), num_views=2, view_keys=keys, keep_source=False)]
        )
    return Compose(
        [RandMultiViewd(IMAGE, Compose([*crop.transforms, *task]), num_views=2, view_keys=keys, keep_source=False)]
    )


def _swin_keys(spatial_dims: int, **options: Any) -> tuple[str, ...]:
    return ("image_v1", "image_v2", "target_v1", "target_v2", "rot_v1", "rot_v2")


@dataclass(frozen=True)
class ViewRecipe:
    """A method's view builder and the keys it produces.

    Attributes:
        build: ``(spatial_dims, roi_size, modality="ct", **options) -> Compose``.
        keys: ``(spatial_dims, **options) -> tuple of output keys``.
    """

    build: Callable[..., Compose]
    keys: Callable[..., tuple[str, ...]]

    def __call__(
        self, spatial_dims: int, roi_size: Sequence[int] | int, modality: str = "ct", **options: Any
    ) -> Compose:
        return self.build(spatial_dims, roi_size, modality, **options)


_TWO_VIEWS = ViewRecipe(_two_views, _two_view_keys)

#: method name -> view recipe (one per method in ``monai_transfer.ssl.methods.BUILTIN_METHODS``)
VIEW_RECIPES: dict[str, ViewRecipe] = {
    "simclr": _TWO_VIEWS,
    "moco_v2": _TWO_VIEWS,
    "moco_v3": _TWO_VIEWS,
    "byol": _TWO_VIEWS,
    "simsiam": _TWO_VIEWS,
    "barlow_twins": _TWO_VIEWS,
    "vicreg": _TWO_VIEWS,
    "dino": ViewRecipe(_dino, _dino_keys),
    "mae": ViewRecipe(_mae, _masked_keys),
    "simmim": ViewRecipe(_simmim, _masked_keys),
    "models_genesis": ViewRecipe(_models_genesis, _models_genesis_keys),
    "swin_unetr_ssl": ViewRecipe(_swin_unetr_ssl, _swin_keys),
}


def _recipe(method: str) -> ViewRecipe:
    if method not in VIEW_RECIPES:
        raise KeyError(f"no view recipe for SSL method {method!r}; known: {sorted(VIEW_RECIPES)}")
    return VIEW_RECIPES[method]


def make_views(
    method: str, spatial_dims: int, roi_size: Sequence[int] | int, modality: str = "ct", **options: Any
) -> Compose:
    """The dictionary pipeline making ``method``'s batch keys from a normalised, channel-first ``image``.

    Args:
        method: a name in :data:`VIEW_RECIPES` (the registered SSL methods).
        spatial_dims: 2 or 3.
        roi_size: view size (an int is repeated).
        modality: ``"ct"``, ``"mr"`` or ``"xr"`` (augmentation preset, see
            :func:`~monai_transfer.transforms.ssl_augment.ssl_augmentations`).
        options: the recipe's options. All: ``strength``, ``augment`` (preset overrides, e.g.
            ``{"blur_prob": 0}``); most: ``scale`` (crop area range). DINO: ``num_local_views``, ``local_roi_size``,
            ``global_scale``, ``local_scale``. MAE/SimMIM: ``mask_patch_size``, ``mask_ratio``. Models Genesis:
            ``genesis`` (``RandModelsGenesisd`` arguments). SwinUNETR-SSL: ``rotation_axes``, ``cutout``
            (``RandCutoutd`` arguments), ``shared_crop``.

    Raises:
        KeyError: unknown method.
        ValueError: roi_size not divisible by the mask patch size, bad ``spatial_dims``, unknown preset names.
        TypeError: an option the recipe does not take.
    """
    return _recipe(method)(spatial_dims, roi_size, modality, **options)


def view_keys(method: str, spatial_dims: int, **options: Any) -> tuple[str, ...]:
    """The keys :func:`make_views` produces for ``method`` (with the same ``options``)."""
    return _recipe(method).keys(spatial_dims, **options)


class _SliceIfVolumed(Randomizable, MapTransform):
    """A random axial slice of a 3-D volume (``RandSliced``); a 2-D image passes through unchanged."""

    def __init__(self, keys: KeysCollection, margin: float) -> None:
        MapTransform.__init__(self, keys)
        self.slicer = RandSliced(keys, axis=-1, margin=margin)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _SliceIfVolumed:
        super().set_random_state(seed, state)
        self.slicer.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:  # the slicer draws
        pass

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ndim = {d[k].ndim for k in self.key_iterator(d)}
        if ndim == {4}:
            return self.slicer(d)
        if ndim - {3}:
            raise ValueError(f"expected channel-first 2-D images or 3-D volumes, got tensors of {sorted(ndim)} dims")
        return d


class _RequireVolumed(MapTransform):
    """Reject a 2-D image in a 3-D pipeline with a clear message."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        for k in self.key_iterator(data):
            if data[k].ndim != 4:
                raise ValueError(
                    f"{k} {source_name(data, k)} has shape {tuple(data[k].shape)}: 3-D pretraining needs channel-first "
                    "volumes (C, X, Y, Z); fix or exclude the file"
                )
        return dict(data)


#: modality -> (``intensity_preset`` name, keyword arguments). CT: HU [-1000, 1000] -> [0, 1], the range of
#: SwinUNETR-SSL (Tang et al. 2022) and Models Genesis (Zhou et al. 2021) pretraining (level/width override the
#: named preset's); MR: 1st-99th percentile of the non-zero voxels; radiographs: 0.5-99.5 percentile, MONOCHROME2
DEFAULT_INTENSITY: dict[str, tuple[str, dict[str, Any]]] = {
    "ct": ("ct_soft_tissue", {"level": 0.0, "width": 2000.0}),
    "mr": ("mr", {}),
    "mri": ("mr", {}),
    "xr": ("xr", {}),
    "radiograph": ("xr", {}),
}


def make_load_transforms(
    modality: str = "ct",
    image_key: str = "image",
    load: bool = True,
    intensity: str | None = "auto",
    intensity_kwargs: Mapping[str, Any] | None = None,
) -> Compose:
    """The deterministic head of the pretraining pipeline: read (``load``), float32, the modality's intensity preset.

    It is what ``make_pretrain_transforms`` starts with, and what a caching dataset can run once per image
    (``make_ssl_dataloader(cache_transform=...)``) before the random views. Arguments as in
    :func:`make_pretrain_transforms`.
    """
    steps: list[Any] = []
    if load:
        steps.append(ReadImaged(image_key, image_only=True, ensure_channel_first=True))
    steps.append(EnsureTyped(image_key, dtype=torch.float32))
    if intensity is not None:
        if intensity == "auto":
            if modality.lower() not in DEFAULT_INTENSITY:
                raise ValueError(f"no default intensity preset for modality {modality!r}; pass intensity=<preset name>")
            name, kw = DEFAULT_INTENSITY[modality.lower()]
        else:
            name, kw = intensity, {}
        steps.append(intensity_preset(name, keys=image_key, **{**kw, **dict(intensity_kwargs or {})}))
    return Compose(steps)


def pretrain_intensity(modality: str) -> dict[str, Any]:
    """The intensity spec (``monai_transfer.transforms.preprocessing``) of a modality's pretraining preset, recorded
    in the encoder's provenance so that fine-tuning feeds the encoder what it saw."""
    if modality.lower() not in DEFAULT_INTENSITY:
        raise ValueError(f"no default intensity preset for modality {modality!r}")
    name, kw = DEFAULT_INTENSITY[modality.lower()]
    return {"name": "preset", "preset": name, **kw}


def make_pretrain_transforms(
    method: str,
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    image_key: str = "image",
    load: bool = True,
    intensity: str | None = "auto",
    intensity_kwargs: Mapping[str, Any] | None = None,
    slice_margin: float = 0.2,
    **options: Any,
) -> Compose:
    """The full pretraining data pipeline: load, normalise, (slice), make the method's views, keep only its keys.

    Steps: ``LoadImaged(image_only=True, ensure_channel_first=True)`` (``load=True``), ``EnsureTyped(float32)``, the
    modality's intensity preset, for ``spatial_dims=2`` a random axial slice of 3-D volumes (``RandSliced`` over the
    central slices: ``slice_margin`` of the slices at each end, often empty, are skipped; 2-D images pass), then
    :func:`make_views` and ``SelectItemsd`` of :func:`view_keys` (so batches collate).

    Args:
        method: SSL method name (:data:`VIEW_RECIPES`).
        spatial_dims: 2 or 3.
        roi_size: view size.
        modality: ``"ct"``, ``"mr"`` or ``"xr"``.
        image_key: the datalist key of the image path (or array with ``load=False``); renamed to ``"image"``.
        load: prepend ``LoadImaged``.
        intensity: ``"auto"`` (:data:`DEFAULT_INTENSITY` for the modality), any
            :data:`monai_transfer.transforms.intensity.PRESETS` name, or ``None`` (already normalised).
        intensity_kwargs: keyword arguments of the preset (e.g. ``{"level": 40, "width": 400}``).
        slice_margin: share of slices skipped at each end when slicing volumes for 2-D pretraining.
        options: :func:`make_views` options.

    Returns:
        A ``Compose`` mapping ``{image_key: path}`` to the method's keys only.
    """
    roi = _roi(spatial_dims, roi_size)
    steps: list[Any] = [*make_load_transforms(modality, image_key, load, intensity, intensity_kwargs).transforms]
    steps.append(_SliceIfVolumed(image_key, slice_margin) if spatial_dims == 2 else _RequireVolumed(image_key))
    if image_key != IMAGE:
        steps += [CopyItemsd(image_key, names=IMAGE), DeleteItemsd(image_key)]
    steps += [*make_views(method, spatial_dims, roi, modality, **options).transforms]
    steps.append(SelectItemsd(keys=view_keys(method, spatial_dims, **options)))
    return Compose(steps)
