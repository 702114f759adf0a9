"""Image corruptions at five severities for robustness evaluation, as MONAI array/dictionary transform pairs.

Built from MONAI's transforms where one exists (:class:`monai.transforms.RandGaussianNoise`,
:class:`~monai.transforms.RandBiasField`, :class:`~monai.transforms.GibbsNoise`,
:class:`~monai.transforms.KSpaceSpikeNoise`, :class:`~monai.transforms.GaussianSmooth`,
:class:`~monai.transforms.AdjustContrast`); motion/ghosting has no MONAI transform and is simulated here by phase
shifts of k-space lines (a rigid translation during the acquisition of those phase-encoding lines), and resolution loss
by down- then up-sampling. The suite follows Hendrycks and Dietterich 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations" (ICLR), with MRI/CT artefacts after Perez-Garcia et al. 2021, "TorchIO"
(motion, ghosting, spikes, bias field).

Severity table (``SEVERITIES[name]``, severity 1 -> 5). ``range`` is the image's robust intensity range
(0.5th to 99.5th percentile, per channel), so the corruptions scale with any intensity convention (HU, [0, 1], raw MR):

=================  ==========================================  =================================================
name               parameter                                    severities 1..5
=================  ==========================================  =================================================
gaussian_noise     noise SD / range                             0.02, 0.04, 0.07, 0.10, 0.15
blur               Gaussian sigma (voxels)                      0.5, 1.0, 1.5, 2.0, 3.0
contrast           contrast factor c: ``m + c (x - m)``         0.8, 0.65, 0.5, 0.35, 0.2
gamma              gamma (or 1/gamma, drawn), MONAI             1.2, 1.4, 1.7, 2.0, 2.5
                   AdjustContrast on the min-max range
bias_field         max |Legendre coefficient| (degree 3),       0.1, 0.2, 0.3, 0.45, 0.6
                   MONAI RandBiasField, coefficients in [-c, c],
                   multiplying the signal above the image's min
gibbs_ringing      k-space share removed (MONAI GibbsNoise)     0.35, 0.5, 0.65, 0.75, 0.85
kspace_spike       spike magnitude / max |k| (MONAI             0.02, 0.05, 0.1, 0.2, 0.35
                   KSpaceSpikeNoise), one spike
motion_ghosting    (share of phase-encode lines moved, drawn    (0.05, 1), (0.1, 2), (0.15, 3), (0.2, 4),
                   from the inner half of k-space without the   (0.3, 6)
                   centre line; max shift in voxels)
resolution_loss    down-sampling factor (area averaging, then   1.5, 2, 3, 4, 6
                   linear up-sampling to the original grid)
=================  ==========================================  =================================================

Random corruptions use common random numbers across severities: the draws for a seed do not depend on the severity,
so severity 3 is severity 2's perturbation made stronger (noise scaled, the same k-space lines plus more, ...).

* :class:`Corrupt` / :class:`Corruptd` — deterministic for ``seed``: the output is a function of (image, name,
  severity, seed), whatever the call order (what robustness evaluation needs).
* :class:`RandCorrupt` / :class:`RandCorruptd` — ``Randomizable`` with ``prob``, drawing from ``self.R`` (for
  augmentation); seed with ``set_random_state``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    AdjustContrast,
    GaussianSmooth,
    GibbsNoise,
    KSpaceSpikeNoise,
    MapTransform,
    RandBiasField,
    RandGaussianNoise,
    Randomizable,
    RandomizableTransform,
    Transform,
)
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "corrupt",
    "Corrupt",
    "Corruptd",
    "CorruptD",
    "CorruptDict",
    "RandCorrupt",
    "RandCorruptd",
    "RandCorruptD",
    "RandCorruptDict",
]

#: severity parameters per corruption (index 0 = severity 1); see the module docstring for their meaning
SEVERITIES: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.02, 0.04, 0.07, 0.10, 0.15),
    "blur": (0.5, 1.0, 1.5, 2.0, 3.0),
    "contrast": (0.8, 0.65, 0.5, 0.35, 0.2),
    "gamma": (1.2, 1.4, 1.7, 2.0, 2.5),
    "bias_field": (0.1, 0.2, 0.3, 0.45, 0.6),
    "gibbs_ringing": (0.35, 0.5, 0.65, 0.75, 0.85),
    "kspace_spike": (0.02, 0.05, 0.1, 0.2, 0.35),
    "motion_ghosting": ((0.05, 1.0), (0.1, 2.0), (0.15, 3.0), (0.2, 4.0), (0.3, 6.0)),
    "resolution_loss": (1.5, 2.0, 3.0, 4.0, 6.0),
}

#: the corruption names, in report order
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITIES)


def _robust_range(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 99.5th - 0.5th percentile, shape (C, 1, ..., 1); 1 where an image is flat."""
    flat = x.reshape(x.shape[0], -1).double()
    q = torch.quantile(flat, torch.tensor([0.005, 0.995], dtype=torch.float64), dim=1)
    r = q[1] - q[0]
    r = torch.where(r > 0, r, torch.ones_like(r))
    return r.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def _gaussian_noise(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    # MONAI's RandGaussianNoise on a zero image gives unit noise drawn from R; scale it by p x the intensity range
    t = RandGaussianNoise(prob=1.0, mean=0.0, std=1.0, sample_std=False, dtype=np.float64)
    t.set_random_state(state=R)
    noise = torch.as_tensor(t(torch.zeros(x.shape, dtype=torch.float64)), dtype=x.dtype)
    return x + noise * p * _robust_range(x)


def _blur(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    return GaussianSmooth(sigma=p)(x)


def _contrast(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    m = x.reshape(x.shape[0], -1).mean(1).reshape(-1, *([1] * (x.ndim - 1)))
    return m + p * (x - m)


def _gamma(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    g = p if R.random() < 0.5 else 1.0 / p
    return AdjustContrast(gamma=g)(x)


def _bias_field(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    t = RandBiasField(degree=3, coeff_range=(-p, p), prob=1.0, dtype=np.float32)
    t.set_random_state(state=R)
    # MONAI draws R.random() for prob, then R.uniform(-p, p, n) = -p + 2p u: the field scales linearly with p.
    # The field multiplies the signal above the image's minimum (the background): on z-scored intensities, where the
    # background is negative, a plain product would pivot around the mean and brighten/darken the background
    lo = x.reshape(x.shape[0], -1).min(1).values.reshape(-1, *([1] * (x.ndim - 1)))
    return (t(x - lo) + lo).to(x.dtype)


def _gibbs(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    return GibbsNoise(alpha=p)(x).to(x.dtype)


def _spike(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    spatial = x.shape[1:]
    u, sign = R.random(len(spatial)), R.random(len(spatial)) < 0.5
    # a spike between 10% and 40% of the way from the k-space centre to its edge, along each axis
    loc = tuple(
        int(np.clip(n // 2 + (1 if s else -1) * (0.1 + 0.3 * ui) * n, 0, n - 1)) for n, ui, s in zip(spatial, u, sign)
    )
    kmax = float(torch.fft.fftn(x.double(), dim=tuple(range(1, x.ndim))).abs().max())
    return KSpaceSpikeNoise(loc=loc, k_intensity=float(np.log(p * kmax + 1e-10)))(x).to(x.dtype)


def _motion_ghosting(x: torch.Tensor, p: tuple[float, float], R: np.random.RandomState) -> torch.Tensor:
    share, max_shift = p
    spatial = x.shape[1:]
    nd = len(spatial)
    pe_axis = 1 + int(R.randint(nd))  # phase-encoding axis (tensor axis)
    n_lines = spatial[pe_axis - 1]
    # candidate lines: the inner half of k-space without the centre line (where most of the signal lies, so moving
    # them shows as ghosts and blur); a random order in which they get corrupted as severity grows
    f = np.fft.fftfreq(n_lines)
    candidates = np.flatnonzero((np.abs(f) > 0) & (np.abs(f) <= 0.25))
    order = candidates[R.permutation(len(candidates))]
    direction = R.uniform(-1.0, 1.0, size=(n_lines, nd))  # per-line translation direction (common across severities)
    n_move = min(len(order), int(round(share * n_lines)))
    k = torch.fft.fftn(x.double(), dim=tuple(range(1, x.ndim)))
    if n_move == 0:
        return x
    lines = torch.as_tensor(order[:n_move])
    shifts = torch.as_tensor(direction[order[:n_move]] * max_shift)  # (n_move, nd) in voxels
    freqs = torch.meshgrid(*[torch.fft.fftfreq(n, dtype=torch.float64) for n in spatial], indexing="ij")
    # phase ramp exp(-2 pi i f . d) on the moved lines only: a translation of the object while those lines were read
    kk = k.movedim(pe_axis, 1)
    fk = [f.movedim(pe_axis - 1, 0)[lines] for f in freqs]  # each (n_move, ...)
    view = (n_move,) + (1,) * (nd - 1)
    phase = sum(fk[a] * shifts[:, a].reshape(view) for a in range(nd))
    kk[:, lines] = kk[:, lines] * torch.exp(-2j * torch.pi * phase)[None]
    out = torch.fft.ifftn(kk.movedim(1, pe_axis), dim=tuple(range(1, x.ndim))).real
    return out.to(x.dtype)


def _resolution_loss(x: torch.Tensor, p: float, R: np.random.RandomState) -> torch.Tensor:
    spatial = x.shape[1:]
    small = [max(1, int(round(n / p))) for n in spatial]
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    down = F.interpolate(x[None].float(), size=small, mode="area")
    # area averaging = partial-volume (thick voxels); corner-aligned linear up-sampling back to the original grid
    return F.interpolate(down, size=list(spatial), mode=mode, align_corners=True)[0].to(x.dtype)


_FNS: dict[str, Callable[[torch.Tensor, Any, np.random.RandomState], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "blur": _blur,
    "contrast": _contrast,
    "gamma": _gamma,
    "bias_field": _bias_field,
    "gibbs_ringing": _gibbs,
    "kspace_spike": _spike,
    "motion_ghosting": _motion_ghosting,
    "resolution_loss": _resolution_loss,
}


def _check(name: str, severity: int) -> None:
    if name not in SEVERITIES:
        raise ValueError(f"unknown corruption {name!r}; known: {list(CORRUPTIONS)}")
    if int(severity) != severity or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 0..5 (0 = clean), got {severity!r}")


def corrupt(img: NdarrayOrTensor, name: str, severity: int, R: np.random.RandomState) -> NdarrayOrTensor:
    """Apply corruption ``name`` at ``severity`` (1..5; 0 returns the image unchanged) drawing from ``R``.

    Args:
        img: channel-first image ``(C, H, W)`` or ``(C, H, W, D)``, numpy or torch (MetaTensor metadata kept).
        name: one of :data:`CORRUPTIONS`.
        severity: 0 (clean) to 5.
        R: the random state every draw comes from.

    Returns:
        The corrupted image, same type, shape and dtype (float) as ``img``.
    """
    _check(name, severity)
    t = convert_to_tensor(img, track_meta=True)
    if t.ndim not in (3, 4):
        raise ValueError(f"expected a channel-first 2D or 3D image (C, H, W[, D]), got shape {tuple(t.shape)}")
    if severity == 0:
        return img
    x = t.float() if not torch.is_floating_point(t) else t
    data = x.as_tensor() if hasattr(x, "as_tensor") else x
    out = _FNS[name](data.clone(), SEVERITIES[name][int(severity) - 1], R)
    if hasattr(out, "as_tensor"):  # MONAI transforms may wrap the result in a MetaTensor without the input's metadata
        out = out.as_tensor()
    res, *_ = convert_to_dst_type(out, dst=x)
    if isinstance(img, np.ndarray):
        return res.cpu().numpy() if isinstance(res, torch.Tensor) else res
    return res


class Corrupt(Transform):
    """A named corruption at a fixed severity, deterministic for ``seed`` (the same image gives the same output on
    every call). See the module docstring for the severity table.

    Args:
        name: one of :data:`CORRUPTIONS`.
        severity: 1 (mild) to 5 (severe); 0 is the identity.
        seed: seed of the corruption's random draws.
    """

    def __init__(self, name: str, severity: int = 3, seed: int = 0) -> None:
        _check(name, severity)
        self.name, self.severity, self.seed = name, int(severity), int(seed)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Corrupt a channel-first image ``(C, H, W[, D])``."""
        return corrupt(img, self.name, self.severity, np.random.RandomState(self.seed))


class Corruptd(MapTransform):
    """Dictionary version of :class:`Corrupt`: each key gets the same draws (``seed``), as for co-registered images.

    Args:
        keys: image keys to corrupt (not the labels).
        name: one of :data:`CORRUPTIONS`.
        severity: 1..5 (0: identity).
        seed: seed of the random draws.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self, keys: KeysCollection, name: str, severity: int = 3, seed: int = 0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.t = Corrupt(name, severity, seed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = self.t(d[k])
        return d


class RandCorrupt(RandomizableTransform):
    """With probability ``prob``, apply corruption ``name`` at ``severity`` (or at a severity drawn from
    ``severity_range``), drawing only from ``self.R``.

    Args:
        name: one of :data:`CORRUPTIONS`, or None to draw one per call from ``names``.
        severity: fixed severity 1..5; ignored when ``severity_range`` is given.
        prob: probability of corrupting.
        severity_range: ``(low, high)`` inclusive range to draw the severity from.
        names: corruptions to draw from when ``name`` is None (default: all).
    """

    def __init__(
        self,
        name: str | None = None,
        severity: int = 3,
        prob: float = 0.1,
        severity_range: tuple[int, int] | None = None,
        names: tuple[str, ...] | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.names = tuple(names) if names else CORRUPTIONS
        for n in self.names + ((name,) if name else ()):
            _check(n, 1)
        _check(self.names[0], severity)
        self.name, self.severity, self.severity_range = name, int(severity), severity_range
        self._name, self._severity = name or self.names[0], int(severity)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self._name = self.name or self.names[int(self.R.randint(len(self.names)))]
        if self.severity_range is not None:
            lo, hi = self.severity_range
            self._severity = int(self.R.randint(lo, hi + 1))
        else:
            self._severity = self.severity

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return corrupt(img, self._name, self._severity, self.R)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCorrupt:
        Randomizable.set_random_state(self, seed, state)
        return self


class RandCorruptd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandCorrupt`; one decision and one corruption per call, shared by all keys."""

    def __init__(
        self,
        keys: KeysCollection,
        name: str | None = None,
        severity: int = 3,
        prob: float = 0.1,
        severity_range: tuple[int, int] | None = None,
        names: tuple[str, ...] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.t = RandCorrupt(name, severity, 1.0, severity_range, names)
        self.t.R = self.R

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCorruptd:
        super().set_random_state(seed, state)
        self.t.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.t.randomize()
        # every key sees the same draws: replay one random state per key
        state = self.R.get_state()
        for k in self.key_iterator(d):
            self.R.set_state(state)
            d[k] = corrupt(d[k], self.t._name, self.t._severity, self.R)
        return d


CorruptD = CorruptDict = Corruptd
RandCorruptD = RandCorruptDict = RandCorruptd
