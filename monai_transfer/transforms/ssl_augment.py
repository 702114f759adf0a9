"""Augmentation presets for one self-supervised view of a grey medical image (2D or 3D).

:func:`ssl_augmentations` builds a MONAI ``Compose`` of dictionary transforms from a preset in
:data:`SSL_AUGMENT_PRESETS` (``modality -> strength -> parameters``), in this order:

1. :class:`~monai_transfer.transforms.foreground_crop.RandForegroundResizedCropd` to ``roi_size`` (crop centred in
   the foreground, so views are not empty air);
2. :class:`~monai.transforms.RandFlipd` per axis (``flip_axes``), :class:`~monai.transforms.RandRotate90d` in the image
   plane (2D) / the axial plane (3D), and a small :class:`~monai.transforms.RandAffined` (rotation, scaling);
3. intensity: :class:`~monai.transforms.RandScaleIntensityd` / :class:`~monai.transforms.RandShiftIntensityd`
   (brightness), :class:`~monai.transforms.RandAdjustContrastd` (gamma),
   :class:`~monai.transforms.RandGaussianNoised`, :class:`~monai.transforms.RandGaussianSmoothd` (blur).

There is no colour jitter (single-channel grey images have no hue or saturation; brightness, contrast (gamma), noise
and blur stand in for it). Outputs are not clipped: noise and shifts may leave the input's range slightly.

Parameter choices, for images normalised to about [0, 1]:

* Crop: SimCLR's random resized crop (Chen et al. 2020, arXiv:2002.05709: scale (0.08, 1), ratio (3/4, 4/3)) with a
  larger minimum area (0.3) because medical views of tiny areas are often featureless; "weak" uses SimMIM's
  (0.67, 1) (Xie et al. 2022, arXiv:2111.09886).
* Flips and 90-degree rotations: SwinUNETR's fine-tuning recipe (Tang et al. 2022, arXiv:2111.14791: flips on every
  axis, ``RandRotate90d``) and Models Genesis's flips (Zhou et al. 2021, arXiv:2004.07882); at SSL strength
  (probability 0.5) as SimCLR's flip. Radiographs ("xr") flip left-right only and are not turned by 90 degrees: a
  radiograph's head-foot orientation is fixed in every image, as in MoCo-CXR (Sowrirajan et al. 2021,
  arXiv:2010.05352: horizontal flip and +/-10 degree rotation).
* Affine: +/-10 degrees and +/-10 % scale, as MoCo-CXR and the milder end of nnU-Net's spatial augmentation
  (Isensee et al. 2021, Nature Methods 18:203).
* Intensity: SimCLR applies colour jitter with probability 0.8 and blur with 0.5 (sigma 0.1-2 at 224 px); on grey
  images brightness/contrast/gamma replace it. Magnitudes follow nnU-Net (brightness x(0.75, 1.25), gamma (0.7, 1.5),
  noise, blur sigma 0.5-1) for MR and radiographs, whose intensity scale is arbitrary. CT is milder
  (brightness x(0.9, 1.1), shift +/-0.05, gamma (0.85, 1.15)): Hounsfield units are absolute, so the encoder may use
  intensity itself (SwinUNETR-SSL uses no intensity augmentation; its fine-tuning shifts by 0.1 with probability 0.1).
* "weak" (MAE/SimMIM/Models Genesis inputs): crop and flips only; those methods' targets are the image itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from monai.utils import ensure_tuple, ensure_tuple_rep

from monai_transfer.transforms.foreground_crop import RandForegroundResizedCropd

__all__ = ["SSL_AUGMENT_PRESETS", "MODALITY_ALIASES", "ssl_augmentations"]

#: strong/weak geometry shared by CT and MR (prob 0 disables a transform)
_GEOMETRY_STRONG: dict[str, Any] = {
    "scale": (0.3, 1.0),
    "ratio": (3.0 / 4.0, 4.0 / 3.0),
    "flip_prob": 0.5,
    "flip_axes": None,  # None: every spatial axis
    "rot90_prob": 0.5,
    "affine_prob": 0.3,
    "rotate_degrees": 10.0,
    "affine_scale": 0.1,
}
_GEOMETRY_WEAK: dict[str, Any] = {
    **_GEOMETRY_STRONG,
    "scale": (0.67, 1.0),
    "rot90_prob": 0.0,
    "affine_prob": 0.0,
}
_NO_INTENSITY: dict[str, Any] = {
    "scale_intensity": 0.0,
    "scale_intensity_prob": 0.0,
    "shift_intensity": 0.0,
    "shift_intensity_prob": 0.0,
    "gamma": (1.0, 1.0),
    "gamma_prob": 0.0,
    "noise_std": 0.0,
    "noise_prob": 0.0,
    "blur_sigma": (0.5, 1.0),
    "blur_prob": 0.0,
}
_CT_INTENSITY: dict[str, Any] = {
    "scale_intensity": 0.1,
    "scale_intensity_prob": 0.5,
    "shift_intensity": 0.05,
    "shift_intensity_prob": 0.5,
    "gamma": (0.85, 1.15),
    "gamma_prob": 0.3,
    "noise_std": 0.02,
    "noise_prob": 0.3,
    "blur_sigma": (0.25, 1.0),
    "blur_prob": 0.5,
}
_MR_INTENSITY: dict[str, Any] = {
    "scale_intensity": 0.25,
    "scale_intensity_prob": 0.8,
    "shift_intensity": 0.1,
    "shift_intensity_prob": 0.8,
    "gamma": (0.7, 1.5),
    "gamma_prob": 0.5,
    "noise_std": 0.05,
    "noise_prob": 0.3,
    "blur_sigma": (0.5, 1.0),
    "blur_prob": 0.5,
}
# radiographs: left-right flips only (axis 0 is the column index, as MONAI's and our readers load them)
_XR_GEOMETRY: dict[str, Any] = {"flip_axes": (0,), "rot90_prob": 0.0}

#: ``modality -> strength -> parameters`` for :func:`ssl_augmentations` (see the module docstring for sources)
SSL_AUGMENT_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ct": {
        "strong": {**_GEOMETRY_STRONG, **_CT_INTENSITY},
        "weak": {**_GEOMETRY_WEAK, **_NO_INTENSITY},
    },
    "mr": {
        "strong": {**_GEOMETRY_STRONG, **_MR_INTENSITY},
        "weak": {**_GEOMETRY_WEAK, **_NO_INTENSITY},
    },
    "xr": {
        "strong": {**_GEOMETRY_STRONG, **_XR_GEOMETRY, **_MR_INTENSITY},
        "weak": {**_GEOMETRY_WEAK, **_XR_GEOMETRY, **_NO_INTENSITY},
    },
}

#: other spellings of the modality names
MODALITY_ALIASES: dict[str, str] = {"mri": "mr", "radiograph": "xr", "cr": "xr", "dx": "xr"}


def _resolve(modality: str, strength: str) -> dict[str, Any]:
    m = MODALITY_ALIASES.get(modality.lower(), modality.lower())
    if m not in SSL_AUGMENT_PRESETS:
        raise ValueError(
            f"unknown modality {modality!r}; known: {sorted(SSL_AUGMENT_PRESETS)} (+ {sorted(MODALITY_ALIASES)})"
        )
    if strength not in SSL_AUGMENT_PRESETS[m]:
        raise ValueError(f"unknown strength {strength!r} for {m!r}; known: {sorted(SSL_AUGMENT_PRESETS[m])}")
    return dict(SSL_AUGMENT_PRESETS[m][strength])


def ssl_augmentations(
    spatial_dims: int,
    roi_size: Sequence[int] | int,
    modality: str = "ct",
    strength: str = "strong",
    keys: KeysCollection = ("image",),
    rotation_axes: tuple[int, int] = (0, 1),
    **overrides: Any,
) -> Compose:
    """A ``Compose`` of MONAI dictionary transforms making one random view at ``roi_size``.

    Args:
        spatial_dims: 2 or 3.
        roi_size: output spatial size (an int is repeated).
        modality: ``"ct"``, ``"mr"`` or ``"xr"`` (radiograph, 2D), or an alias in :data:`MODALITY_ALIASES`.
        strength: ``"strong"`` (joint-embedding views) or ``"weak"`` (crop and flips; masked modelling inputs).
        keys: image keys transformed together (same draws).
        rotation_axes: the plane of the 90-degree rotations (the axial plane ``(0, 1)`` of an ``(X, Y, Z)`` volume).
        overrides: any preset parameter (e.g. ``scale=(0.4, 1.0)``, ``blur_prob=0.0``); see
            :data:`SSL_AUGMENT_PRESETS`.

    Returns:
        A ``Compose`` (seed it with ``set_random_state``); every transform draws from its own ``R``.

    Raises:
        ValueError: unsupported ``spatial_dims``, unknown modality/strength/override, a 3-D radiograph, or 90-degree
            rotations in a non-square plane (the views would not batch).
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    p = _resolve(modality, strength)
    unknown = set(overrides) - set(p)
    if unknown:
        raise ValueError(f"unknown augmentation parameters {sorted(unknown)}; known: {sorted(p)}")
    p.update(overrides)
    if MODALITY_ALIASES.get(modality.lower(), modality.lower()) == "xr" and spatial_dims != 2:
        raise ValueError("radiograph ('xr') augmentations are 2-D")
    ks = list(ensure_tuple(keys))
    roi = tuple(int(r) for r in ensure_tuple_rep(roi_size, spatial_dims))
    steps: list[Any] = [RandForegroundResizedCropd(ks, roi, scale=tuple(p["scale"]), ratio=tuple(p["ratio"]))]
    flip_axes = range(spatial_dims) if p["flip_axes"] is None else p["flip_axes"]
    if p["flip_prob"] > 0:
        steps += [RandFlipd(ks, prob=p["flip_prob"], spatial_axis=int(a)) for a in flip_axes]
    if p["rot90_prob"] > 0:
        if roi[rotation_axes[0]] != roi[rotation_axes[1]]:
            raise ValueError(
                f"90-degree rotations need a square plane; roi {roi} in axes {rotation_axes} (set rot90_prob=0)"
            )
        steps.append(RandRotate90d(ks, prob=p["rot90_prob"], max_k=3, spatial_axes=rotation_axes))
    if p["affine_prob"] > 0:
        rad = float(np.deg2rad(p["rotate_degrees"]))
        # in 3D only the in-plane (axial) rotation is large; tilts out of the plane are kept small
        rotate = (rad,) if spatial_dims == 2 else (rad / 2, rad / 2, rad)
        steps.append(
            RandAffined(
                ks,
                prob=p["affine_prob"],
                rotate_range=rotate,
                scale_range=(p["affine_scale"],) * spatial_dims,
                mode="bilinear",  # grid sampling: bilinear means trilinear on volumes
                padding_mode="zeros",  # normalised background (air, outside the body) is about 0
            )
        )
    if p["scale_intensity_prob"] > 0:
        steps.append(RandScaleIntensityd(ks, factors=p["scale_intensity"], prob=p["scale_intensity_prob"]))
    if p["shift_intensity_prob"] > 0:
        steps.append(RandShiftIntensityd(ks, offsets=p["shift_intensity"], prob=p["shift_intensity_prob"]))
    if p["gamma_prob"] > 0:
        steps.append(RandAdjustContrastd(ks, gamma=tuple(p["gamma"]), prob=p["gamma_prob"]))
    if p["noise_prob"] > 0:
        steps.append(RandGaussianNoised(ks, prob=p["noise_prob"], mean=0.0, std=p["noise_std"]))
    if p["blur_prob"] > 0:
        sig = tuple(p["blur_sigma"])
        steps.append(RandGaussianSmoothd(ks, sigma_x=sig, sigma_y=sig, sigma_z=sig, prob=p["blur_prob"]))
    return Compose(steps)
