"""Choosing a starting point: rank candidate backbones on a labelled target set before fine-tuning.

For each candidate ``(backbone_name, pretrained)`` the target images go through the frozen backbone's
``forward_features`` (pooled embedding); the features are scored with cross-validated kNN accuracy, a cross-validated
linear probe and LogME (:mod:`monai_transfer.metrics.transferability`). With pretraining-data images given, the
domain gap (Frechet distance, MMD; :mod:`monai_transfer.metrics.domain_gap`) between those and the target features
is reported with each candidate. With real fine-tuning results given, the Kendall tau and Spearman rho between each
estimate and the outcome are reported.

Scores resting on few cases are flagged: with fewer than :data:`MIN_RANK_SAMPLES` target cases (or a class with fewer
cases than folds) the cross-validated accuracies move in steps of one held-out case per fold, and a difference
between candidates is mostly noise; ``too_few_samples`` and ``warnings`` say so (also as a ``UserWarning`` and under
the table). MMD is reported as the biased V-statistic, which cannot read as a negative distance
(:data:`monai_transfer.metrics.domain_gap.MMD_ESTIMATOR`).

One preprocessing contract (issue 9): images read from a datalist are kept as read, and each candidate sees them
through its own starting point's recorded intensity mapping (``Provenance.preprocessing``, see
:mod:`monai_transfer.transforms.preprocessing`), as fine-tuning would feed it. A candidate that records none (random
init, a checkpoint without provenance) gets :data:`RANK_DEFAULT_INTENSITY` (per-image 0.5-99.5th percentiles scaled to
[0, 1]); ``intensity=`` overrides the mapping for every candidate. Each row says which mapping was used and where it
came from (``intensity`` and ``intensity_source``).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from monai_transfer.metrics.domain_gap import MMD_ESTIMATOR, domain_gap
from monai_transfer.metrics.transferability import knn_accuracy, linear_probe_accuracy, logme, rank_correlation
from monai_transfer.transforms.preprocessing import describe_intensity

__all__ = [
    "RankingResult",
    "rank_backbones",
    "extract_features",
    "load_images",
    "candidate_label",
    "candidate_labels",
    "sample_size_warnings",
    "MIN_RANK_SAMPLES",
    "RANK_DEFAULT_INTENSITY",
    "candidate_intensity",
]

ESTIMATES = ("knn", "linear_probe", "logme")

#: fewer target (or source) cases than this and the scores are flagged as resting on too few cases
MIN_RANK_SAMPLES = 20

#: the intensity mapping of a candidate whose starting point records none (random init, a checkpoint without
#: provenance): each image's 0.5-99.5th percentiles scaled to [0, 1], clipped (what ``rank`` always did)
RANK_DEFAULT_INTENSITY: dict[str, Any] = {"name": "percentile", "lower": 0.5, "upper": 99.5, "b_min": 0.0, "b_max": 1.0}

#: where a candidate's intensity mapping came from (``intensity_source`` of each row)
INTENSITY_SOURCES = ("starting point", "default", "user", "given")


@dataclass
class RankingResult:
    """Ranked candidates.

    Attributes:
        rows: one dict per candidate, best first by ``rank_by``: ``rank``, ``candidate``, ``backbone``,
            ``pretrained``, ``knn``, ``linear_probe``, ``logme``, ``num_features``, ``seconds`` and, with source data,
            ``frechet``, ``mmd``; ``intensity`` (the mapping the candidate's images went through, one line),
            ``intensity_spec`` (the same as data, None for arrays given as is), ``intensity_source`` (``"starting
            point"``: recorded in the candidate's provenance, ``"default"``: :data:`RANK_DEFAULT_INTENSITY` as none is
            recorded, ``"user"``: the ``intensity=`` override, ``"given"``: arrays passed as they are) and, where the
            override departs from a recorded mapping, ``intensity_recorded``.
        rank_by: the estimate used to order the rows.
        correlations: estimate -> rank correlation with the fine-tuning outcomes (empty without outcomes).
        n_samples: target samples used.
        warnings: why the scores may not be trusted (too few target cases, a class with fewer cases than folds, few
            source cases behind the domain gap); empty when none applies.
        too_few_samples: the scores rest on too few cases (``warnings`` says which).
    """

    rows: list[dict[str, Any]]
    rank_by: str
    correlations: dict[str, dict[str, float]] = field(default_factory=dict)
    n_samples: int = 0
    warnings: list[str] = field(default_factory=list)
    too_few_samples: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {"rank_by": self.rank_by, "n_samples": self.n_samples, "too_few_samples": self.too_few_samples,
               "warnings": list(self.warnings), "rows": self.rows, "correlations": self.correlations}  # fmt: skip
        if any("mmd" in r for r in self.rows):
            out["mmd_estimator"] = MMD_ESTIMATOR
        return out

    def to_json(self, path: str | os.PathLike) -> str:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        return path

    def to_table(self) -> str:
        """A Markdown table of the ranking (and the rank correlations when outcomes were given)."""
        cols = ["rank", "candidate", "knn", "linear_probe", "logme"]
        cols += [c for c in ("frechet", "mmd", "finetuned") if any(c in r for r in self.rows)]
        cols += ["seconds"]

        def fmt(v: Any) -> str:
            return f"{v:.4f}" if isinstance(v, float) else str(v)

        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in self.rows]
        if self.correlations:
            lines += ["", "| estimate | kendall_tau | spearman_rho | n |", "|---|---|---|---|"]
            for k, c in self.correlations.items():
                lines.append(f"| {k} | {c['kendall_tau']:.3f} | {c['spearman_rho']:.3f} | {c['n']} |")
        notes = [f"{self.n_samples} target cases; ordered by {self.rank_by}."]
        if any("intensity" in r for r in self.rows):
            notes.append("intensity mapping per candidate:")
            for r in self.rows:
                line = f"- {r['candidate']}: {r.get('intensity', '?')} ({r.get('intensity_source', '?')})"
                if r.get("intensity_recorded"):
                    line += f", overriding the recorded {r['intensity_recorded']}"
                notes.append(line)
        if "mmd" in cols:
            notes.append(f"mmd: squared MMD (RBF kernel, median-heuristic bandwidth), {MMD_ESTIMATOR}.")
        notes += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines + [""] + notes)


def candidate_label(name: str, pretrained: str | None) -> str:
    """``"resnet18"`` for random init, ``"resnet18:<pretrained>"`` otherwise (the key for fine-tuning results)."""
    if pretrained is None:
        return name
    return f"{name}:{os.path.basename(os.fspath(pretrained)) if os.path.sep in os.fspath(pretrained) else pretrained}"


def candidate_labels(candidates: Sequence[tuple[str, str | None]]) -> list[str]:
    """One distinct label per candidate: :func:`candidate_label`, lengthened with parent folders where two
    checkpoints share a file name (``resnet18:ssl_a/encoder.pt`` and ``resnet18:ssl_b/encoder.pt``, not two
    ``resnet18:encoder.pt``).

    Raises:
        ValueError: the same candidate is given twice.
    """
    short = [candidate_label(n, p) for n, p in candidates]
    labels = list(short)
    for i, (name, pretrained) in enumerate(candidates):
        if pretrained is None or short.count(short[i]) == 1:
            continue
        parts = os.path.normpath(os.fspath(pretrained)).split(os.sep)
        others = [os.path.normpath(os.fspath(p)).split(os.sep) for j, (n, p) in enumerate(candidates)
                  if j != i and n == name and p is not None]  # fmt: skip
        depth = 1
        while depth < len(parts) and any(o[-depth:] == parts[-depth:] for o in others):
            depth += 1
        labels[i] = f"{name}:{'/'.join(parts[-depth:])}"
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"candidate(s) given more than once: {dupes}")
    return labels


def sample_size_warnings(
    labels: np.ndarray, n_folds: int, n_source: int | None = None, minimum: int = MIN_RANK_SAMPLES
) -> list[str]:
    """Why scores on these labels may rest on too few cases (empty when none applies).

    Args:
        labels: target class labels.
        n_folds: cross-validation folds of the kNN and linear-probe scores.
        n_source: source cases behind the domain gap, or None.
        minimum: the fewest cases a score may rest on without a warning.
    """
    n = len(labels)
    out = []
    if n < minimum:
        per_fold = max(n // max(min(n_folds, n), 1), 1)
        out.append(
            f"kNN, linear-probe and LogME scores rest on {n} target cases (fewer than {minimum}): cross-validated "
            f"accuracies move in steps of 1/{per_fold} per fold, so differences between candidates are mostly noise"
        )
    classes, counts = np.unique(labels, return_counts=True)
    small = [f"{c} ({k})" for c, k in zip(classes.tolist(), counts.tolist()) if k < n_folds]
    if small:
        out.append(
            f"class(es) {', '.join(small)} have fewer cases than the {n_folds} folds: some folds hold none of them"
        )
    if n_source is not None and n_source < minimum:
        out.append(f"the domain gap (frechet, mmd) rests on {n_source} source cases (fewer than {minimum})")
    return out


def load_images(
    data: str | os.PathLike | Sequence[Mapping[str, Any]],
    spatial_dims: int,
    section: str | Sequence[str] = ("training", "validation", "test"),
    image_key: str = "image",
    label_key: str | None = "label",
    spatial_size: Sequence[int] | None = None,
) -> tuple[torch.Tensor, np.ndarray | None]:
    """Load a datalist (file path and sections, or a list of entries) as a float tensor ``(N, C, *spatial)`` with
    per-image intensities scaled to [0, 1] (0.5-99.5th percentiles, clipped), and the labels (or None).

    Args:
        data: datalist JSON path, or a list of entry dicts.
        spatial_dims: 2 or 3.
        section: datalist section(s) to read when ``data`` is a path (missing sections are skipped).
        image_key: image key of each entry.
        label_key: class-label key (an integer per entry), or None for unlabeled data.
        spatial_size: resize every image to this size (needed when sizes differ).
    """
    raw = _read_images(data, spatial_dims, section, image_key, label_key, spatial_size)
    return raw.mapped(None, 1), raw.labels


@dataclass
class _RawImages:
    """Images as read (channel first, finite-checked), not yet intensity-mapped; :meth:`mapped` maps and resizes."""

    images: list[Any]
    labels: np.ndarray | None
    image_key: str
    spatial_size: Sequence[int] | None
    _cache: tuple[str, torch.Tensor] | None = None

    def mapped(self, spec: Mapping[str, Any] | None, in_channels: int) -> torch.Tensor:
        """``(N, C, *spatial)`` through the intensity mapping ``spec`` (None: :data:`RANK_DEFAULT_INTENSITY`), then
        resized; the last result is kept for the next candidate with the same mapping."""
        key = json.dumps([spec, in_channels], sort_keys=True, default=str)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        from monai.transforms import Compose, Resized

        ts = list(_intensity_transforms(spec, self.image_key, in_channels))
        if self.spatial_size is not None:
            ts.append(Resized([self.image_key], spatial_size=tuple(self.spatial_size)))
        tf = Compose(ts)
        out = torch.stack([torch.as_tensor(tf({self.image_key: img})[self.image_key]).float() for img in self.images])
        self._cache = (key, out)
        return out


def _intensity_transforms(spec: Mapping[str, Any] | None, image_key: str, in_channels: int) -> list[Any]:
    """MONAI transforms of an intensity spec; None is :data:`RANK_DEFAULT_INTENSITY`, built exactly as ``rank``
    always scaled (over all channels together), so random-init scores do not move."""
    from monai.transforms import ScaleIntensityRangePercentilesd

    if spec is None:
        return [ScaleIntensityRangePercentilesd([image_key], 0.5, 99.5, 0.0, 1.0, clip=True)]
    from monai_transfer.transforms.preprocessing import intensity_components
    from monai_transfer.utils.components import instantiate

    return list(instantiate(intensity_components(spec, keys=image_key, in_channels=in_channels)))


def _read_images(
    data: str | os.PathLike | Sequence[Mapping[str, Any]],
    spatial_dims: int,
    section: str | Sequence[str],
    image_key: str,
    label_key: str | None,
    spatial_size: Sequence[int] | None,
) -> _RawImages:
    """Read a datalist's images (channel first, finite-checked) and labels; no intensity mapping yet."""
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage

    if isinstance(data, (str, os.PathLike)):
        from monai_transfer.data.datalist import load_datalist, load_datalist_file

        sections = [section] if isinstance(section, str) else list(section)
        present = load_datalist_file(data)
        entries = [e for s in sections if s in present for e in load_datalist(data, s)]
    else:
        entries = list(data)
    if not entries:
        raise ValueError("no entries to load")
    if label_key is not None and any(label_key not in e for e in entries):
        raise ValueError(f"every entry needs the class label {label_key!r}")
    load = Compose([LoadImage(image_only=True), EnsureChannelFirst()])
    images = []
    for e in entries:
        img = _load_one(load, e, image_key)
        if img.ndim != spatial_dims + 1:
            raise ValueError(f"{e[image_key]}: expected {spatial_dims}D images, got shape {tuple(img.shape)}")
        images.append(img)
    if spatial_size is None:
        shapes = {tuple(i.shape) for i in images}
        if len(shapes) > 1:
            raise ValueError(f"images differ in shape {sorted(shapes)[:3]}...; pass spatial_size")
    labels = None
    if label_key is not None:
        labels = np.asarray([int(e[label_key]) for e in entries])
    return _RawImages(images, labels, image_key, spatial_size)


def candidate_intensity(
    name: str,
    pretrained: str | os.PathLike | None,
    intensity: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """The intensity mapping ``rank`` feeds a candidate, and where it came from.

    Args:
        name: backbone name.
        pretrained: the starting point (None, a source name, a checkpoint file or bundle folder).
        intensity: a user override (a spec dict, or a scheme name), or None to follow the starting point.

    Returns:
        ``{"spec": dict | None, "source": "starting point" | "default" | "user", "recorded": dict | None}``; a None
        spec means :data:`RANK_DEFAULT_INTENSITY` as ``rank`` builds it.
    """
    from monai_transfer.transforms.preprocessing import intensity_of
    from monai_transfer.weights.starting_point import starting_provenance

    recorded = intensity_of(starting_provenance(pretrained, name).get("preprocessing"))
    if intensity is not None:
        return {"spec": _as_spec(intensity), "source": "user", "recorded": recorded}
    if recorded is not None:
        return {"spec": recorded, "source": "starting point", "recorded": recorded}
    return {"spec": None, "source": "default", "recorded": None}


def _as_spec(intensity: Mapping[str, Any] | str) -> dict[str, Any]:
    return {"name": intensity} if isinstance(intensity, str) else dict(intensity)


def _check_candidates(candidates: Sequence[tuple[str, str | None]]) -> None:
    """Fail before any work on a backbone name that is not registered or a checkpoint file that is not there."""
    from monai_transfer.networks import get_backbone_config
    from monai_transfer.weights.sources import is_source_name

    for name, pretrained in candidates:
        get_backbone_config(name)  # KeyError with close matches
        if pretrained is None or is_source_name(pretrained) or "://" in os.fspath(pretrained):
            continue
        if not os.path.exists(pretrained):
            raise FileNotFoundError(
                f"candidate {name}:{pretrained}: checkpoint {pretrained} does not exist "
                "(and is not a known source name)"
            )


def _candidate_mapping(
    name: str,
    pretrained: str | None,
    intensity: Mapping[str, Any] | str | None,
    given: bool,
    image_key: str,
    in_channels: int,
) -> dict[str, Any]:
    """A candidate's intensity mapping (:func:`candidate_intensity`), checked to build before any work, with its
    one-line description and the warning when a user override departs from the recorded mapping."""
    if given:
        return {"spec": None, "source": "given", "recorded": None, "line": "as given (arrays)", "warning": ""}
    m = candidate_intensity(name, pretrained, intensity)
    try:
        _intensity_transforms(m["spec"], image_key, in_channels)
    except ValueError as err:
        raise ValueError(f"candidate {candidate_label(name, pretrained)}: {err}") from None
    m["line"] = describe_intensity(m["spec"] if m["spec"] is not None else RANK_DEFAULT_INTENSITY)
    m["warning"] = ""
    if m["source"] == "user" and m["recorded"] is not None and m["recorded"] != m["spec"]:
        m["warning"] = (
            f"intensity {m['line']} overrides the mapping its starting point records, "
            f"{describe_intensity(m['recorded'])}: its scores do not show it as fine-tuning would feed it"
        )
    return m


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="rank", unit="candidate", disable=not enabled)


def _load_one(load: Any, entry: Mapping[str, Any], image_key: str) -> Any:
    """Load (``load``) one image; a file that cannot be read, or holds NaN or infinite values, is
    named in one line (not MONAI's "applying transform <LoadImaged ...>" traceback, nor "SVD did not converge"
    later)."""
    path = entry[image_key]
    try:
        raw = load(path)
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one line naming the file
        raise ValueError(f"{path}: cannot be read as an image ({_root_cause(err)})") from None
    if not torch.isfinite(torch.as_tensor(raw)).all():
        raise ValueError(f"{path}: holds NaN or infinite values; fix or drop this image")
    return raw


def _root_cause(err: BaseException) -> str:
    """The innermost error's first line, past MONAI's "applying transform" wrappers."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


@torch.no_grad()
def extract_features(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int = 16, device: Any = None
) -> np.ndarray:
    """Pooled features ``(N, num_features)`` from ``model.forward_features`` in eval mode."""
    device = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    was_training = model.training
    model = model.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model.forward_features(images[i : i + batch_size].to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out).reshape(len(images), -1).numpy().astype(np.float64)


def rank_backbones(
    candidates: Sequence[tuple[str, str | None]],
    data: str | os.PathLike | Sequence[Mapping[str, Any]] | tuple[Any, Any],
    spatial_dims: int,
    in_channels: int = 1,
    label_key: str = "label",
    image_key: str = "image",
    section: str | Sequence[str] = ("training", "validation", "test"),
    source_data: str | os.PathLike | Sequence[Mapping[str, Any]] | Any | None = None,
    source_section: str | Sequence[str] = ("unlabeled", "training"),
    finetune_results: Mapping[str, float] | None = None,
    rank_by: str = "logme",
    k: int = 5,
    n_folds: int = 5,
    spatial_size: Sequence[int] | None = None,
    batch_size: int = 16,
    device: Any = None,
    seed: int = 0,
    backbone_kwargs: Mapping[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    intensity: Mapping[str, Any] | str | None = None,
) -> RankingResult:
    """Rank starting points on a labelled target set by kNN, linear-probe and LogME scores of frozen features.

    Args:
        candidates: ``(backbone_name, pretrained)`` pairs; ``pretrained`` is None (random init, seeded by ``seed``), a
            checkpoint path or a known source name (see :func:`monai_transfer.networks.create_backbone`).
        data: a datalist path (sections ``section``), a list of entries, or ``(images, labels)`` with images
            ``(N, C, *spatial)`` (array or tensor) and integer labels ``(N,)``. Images read from a datalist or
            entries go through each candidate's own recorded intensity mapping (see ``intensity``); arrays given
            directly are taken as already pre-processed and used as given for every candidate (``intensity_source``
            ``"given"``).
        spatial_dims: 2 or 3.
        in_channels: image channels.
        label_key: the class-label key of datalist entries (the demo's ``lesion`` for slices, ``label`` for
            ``lesion_cls_3d``).
        image_key: the image key of datalist entries.
        section: datalist sections of the target set.
        source_data: pretraining images for the domain gap (a datalist path, entries, or an ``(N, C, *spatial)``
            array, used as given), or None to skip; read images get each candidate's mapping, as the target does.
        source_section: sections of ``source_data`` when it is a path.
        finetune_results: candidate label (see :func:`candidate_label`) -> real fine-tuning metric, for the rank
            correlations.
        rank_by: ``"logme"``, ``"knn"`` or ``"linear_probe"``.
        k: kNN neighbours.
        n_folds: cross-validation folds.
        spatial_size: resize loaded images to this size.
        batch_size: feature-extraction batch size.
        device: torch device (default: CUDA when available).
        seed: seed of random initialisations and folds (the global torch RNG state is restored afterwards).
        backbone_kwargs: extra keyword arguments for ``create_backbone`` (e.g. ``img_size`` for ViTs).
        out_dir: when given, write ``ranking.json`` and ``ranking.md`` there.
        progress: show a progress bar over the candidates (tqdm, on stderr).
        intensity: the intensity mapping for every candidate's read images, overriding what the starting points
            record: a spec (``{"name": "imagenet"}``, ``{"name": "range", "a_min": -1000, "a_max": 1000}``; schemes
            in :mod:`monai_transfer.transforms.preprocessing`) or a scheme name. None (default): each candidate's
            recorded mapping, else :data:`RANK_DEFAULT_INTENSITY`. Where it departs from a recorded mapping a
            ``UserWarning`` says so and the row keeps the recorded one as ``intensity_recorded``.

    Returns:
        A :class:`RankingResult`; ``too_few_samples`` and ``warnings`` say when its scores rest on too few cases
        (each warning is also issued as a ``UserWarning``).
    """
    if rank_by not in ESTIMATES:
        raise ValueError(f"rank_by must be one of {ESTIMATES}, got {rank_by!r}")
    if not candidates:
        raise ValueError("no candidates given")
    _check_candidates(candidates)
    given = isinstance(data, tuple) and len(data) == 2
    images, labels, raw = _target_set(data, given, spatial_dims, section, image_key, label_key, spatial_size, intensity)
    source, raw_source = _source_set(source_data, spatial_dims, source_section, image_key, spatial_size)
    mappings = [_candidate_mapping(n, p, intensity, given, image_key, in_channels) for n, p in candidates]
    n_source = len(raw_source.images) if raw_source is not None else None if source is None else len(source)

    notes = sample_size_warnings(labels, n_folds, n_source)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    opts = _ScoreOptions(spatial_dims, in_channels, k, n_folds, batch_size, device, seed, dict(backbone_kwargs or {}))
    rows = []
    bar = _progress(len(candidates), progress)
    for (name, pretrained), label, mapping in zip(candidates, candidate_labels(candidates), mappings):
        bar.set_postfix_str(label)
        if mapping["warning"]:
            warnings.warn(f"candidate {label}: {mapping['warning']}", UserWarning, stacklevel=2)
        # read images go through this candidate's own mapping; arrays given directly are used as given
        if raw is not None:
            images = raw.mapped(mapping["spec"], in_channels)
        if raw_source is not None:
            source = raw_source.mapped(mapping["spec"], in_channels)
        rows.append(
            _score_candidate(name, pretrained, label, mapping, given, images, labels, source, opts, finetune_results)
        )
        bar.update(1)
    bar.close()
    result = _ranking(rows, rank_by, finetune_results, len(labels), notes)
    if out_dir is not None:
        _write_ranking(result, out_dir)
    return result


@dataclass(frozen=True)
class _ScoreOptions:
    """How :func:`rank_backbones` builds each candidate and scores its features (the same for every candidate)."""

    spatial_dims: int
    in_channels: int
    k: int
    n_folds: int
    batch_size: int
    device: Any
    seed: int
    backbone_kwargs: dict[str, Any]


def _target_set(
    data: Any,
    given: bool,
    spatial_dims: int,
    section: str | Sequence[str],
    image_key: str,
    label_key: str,
    spatial_size: Sequence[int] | None,
    intensity: Mapping[str, Any] | str | None,
) -> tuple[torch.Tensor | None, np.ndarray, _RawImages | None]:
    """The target set: ``(images, labels, None)`` for arrays given directly, ``(None, labels, raw)`` for images read
    from a datalist or entries (each candidate maps ``raw`` its own way); at least two classes."""
    images = raw = None
    if given:
        if intensity is not None:
            raise ValueError(
                "intensity= maps images read from a datalist; arrays given as (images, labels) are used as given"
            )
        images = torch.as_tensor(np.asarray(data[0]) if not isinstance(data[0], torch.Tensor) else data[0]).float()
        labels = np.asarray(data[1]).ravel().astype(np.int64)
        if images.ndim != spatial_dims + 2 or len(images) != len(labels):
            raise ValueError(f"images must be (N, C, *spatial) with {spatial_dims} spatial dims and one label each")
    else:
        raw = _read_images(data, spatial_dims, section, image_key, label_key, spatial_size)
        labels = raw.labels  # type: ignore[assignment]
    assert labels is not None
    if len(np.unique(labels)) < 2:
        raise ValueError("the target set needs at least two classes")
    return images, labels, raw


def _source_set(
    source_data: Any,
    spatial_dims: int,
    source_section: str | Sequence[str],
    image_key: str,
    spatial_size: Sequence[int] | None,
) -> tuple[torch.Tensor | None, _RawImages | None]:
    """The pretraining images for the domain gap: ``(array, None)`` used as given, ``(None, raw)`` read from a
    datalist or entries (mapped per candidate, as the target is), or ``(None, None)`` without them."""
    if source_data is None:
        return None, None
    if isinstance(source_data, (str, os.PathLike)) or (
        isinstance(source_data, Sequence) and source_data and isinstance(source_data[0], Mapping)
    ):
        return None, _read_images(source_data, spatial_dims, source_section, image_key, None, spatial_size)
    return torch.as_tensor(np.asarray(source_data)).float(), None


def _score_candidate(
    name: str,
    pretrained: str | None,
    label: str,
    mapping: Mapping[str, Any],
    given: bool,
    images: torch.Tensor,
    labels: np.ndarray,
    source: torch.Tensor | None,
    opts: _ScoreOptions,
    finetune_results: Mapping[str, float] | None,
) -> dict[str, Any]:
    """One candidate's row: build it (seeded), extract frozen features, score them (and the domain gap to
    ``source``), with its real fine-tuning result when given and the seconds it took."""
    from monai_transfer.networks import create_backbone

    t0 = time.perf_counter()
    # a seeded random init that leaves the caller's global torch RNG state as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        model = create_backbone(
            name, opts.spatial_dims, opts.in_channels, pretrained=pretrained, **opts.backbone_kwargs
        )
    feats = extract_features(model, images, opts.batch_size, opts.device)
    row: dict[str, Any] = {
        "candidate": label,
        "backbone": name,
        "pretrained": None if pretrained is None else os.fspath(pretrained),
        "num_features": int(feats.shape[1]),
        "intensity": mapping["line"],
        "intensity_spec": mapping["spec"] if mapping["spec"] is not None or given else dict(RANK_DEFAULT_INTENSITY),
        "intensity_source": mapping["source"],
        "knn": knn_accuracy(feats, labels, k=opts.k, n_folds=opts.n_folds, seed=opts.seed),
        "linear_probe": linear_probe_accuracy(feats, labels, n_folds=opts.n_folds, seed=opts.seed),
        "logme": logme(feats, labels),
    }
    if mapping["source"] == "user" and mapping["warning"]:
        row["intensity_recorded"] = describe_intensity(mapping["recorded"])
    if source is not None:
        row.update(
            {
                k_: v
                for k_, v in domain_gap(extract_features(model, source, opts.batch_size, opts.device), feats).items()
            }
        )
    if finetune_results is not None and row["candidate"] in finetune_results:
        row["finetuned"] = float(finetune_results[row["candidate"]])
    row["seconds"] = time.perf_counter() - t0
    return row


def _ranking(
    rows: list[dict[str, Any]],
    rank_by: str,
    finetune_results: Mapping[str, float] | None,
    n_samples: int,
    notes: list[str],
) -> RankingResult:
    """Rank the rows by ``rank_by`` (best first) and correlate each estimate with real fine-tuning results."""
    rows.sort(key=lambda r: -r[rank_by])
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    correlations = {}
    if finetune_results:
        for est in ESTIMATES:
            correlations[est] = rank_correlation({r["candidate"]: r[est] for r in rows}, finetune_results)
    return RankingResult(
        rows=rows, rank_by=rank_by, correlations=correlations, n_samples=n_samples, warnings=notes,
        too_few_samples=bool(notes),
    )  # fmt: skip


def _write_ranking(result: RankingResult, out_dir: str | os.PathLike) -> None:
    """``ranking.json`` and ``ranking.md`` in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    result.to_json(os.path.join(out_dir, "ranking.json"))
    with open(os.path.join(out_dir, "ranking.md"), "w", encoding="utf-8") as f:
        f.write(result.to_table() + "\n")
