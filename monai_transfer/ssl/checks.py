"""Checks of a pretraining run before anything trains: the method's options, the batch size and the data.

* :func:`check_method_kwargs`: unknown or mistyped method options, named;
* :func:`check_batch_size`: a batch the method cannot learn from;
* :func:`check_pretraining_data`: enough images for a batch, and a sample of the views neither constant nor collapsed
  by the intensity mapping (else :class:`ViewCheckError` naming the mapping and suggesting another).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_transfer.ssl.images import PretrainData
from monai_transfer.utils.distributed import world_size

__all__ = [
    "method_options",
    "check_method_kwargs",
    "check_batch_size",
    "ViewCheckError",
    "check_pretraining_data",
]

logger = logging.getLogger("monai_transfer.ssl")


def method_options(name: str) -> tuple[str, dict[str, inspect.Parameter], bool]:
    """``(canonical name, the options of the method's constructor, whether it also takes **kwargs)``."""
    from monai_transfer.ssl.registry import get_method_spec

    spec = get_method_spec(name)
    params = dict(inspect.signature(spec.resolve().__init__).parameters)
    params.pop("self", None)
    params.pop("backbone", None)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return spec.name, {k: p for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}, var_kw


def _type_problem(value: Any, param: inspect.Parameter) -> str | None:
    """Why ``value`` cannot be ``param`` (from its default and its annotation), or ``None``."""
    default = param.default
    note = str(param.annotation) if param.annotation is not inspect.Parameter.empty else ""
    if value is None:
        return None if default is None or "None" in note else "may not be null"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) or note.startswith("bool"):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, float) or note.startswith("float"):
        return None if is_number else "must be a number"
    if isinstance(default, int) or note.startswith("int"):
        return None if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else "must be an integer"
    if isinstance(default, str) and note.startswith("str") and not isinstance(value, str):
        return "must be a string"
    return None


def check_method_kwargs(name: str, kwargs: Mapping[str, Any], where: str = "method_kwargs") -> None:
    """Raise ``ValueError`` naming an option method ``name`` does not take, or a value of the wrong type.

    The message lists the options the method accepts (``--method-arg KEY=VALUE`` / YAML ``method_kwargs``).
    """
    method, params, var_kw = method_options(name)
    accepted = ", ".join(f"{k}={p.default!r}" for k, p in params.items())
    for key, value in kwargs.items():
        if key not in params:
            if var_kw:
                continue
            import difflib

            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: SSL method {method!r} has no option {key!r}{hint}; it accepts: {accepted}")
        problem = _type_problem(value, params[key])
        if problem:
            raise ValueError(
                f"{where}: option {key!r} of SSL method {method!r} {problem}, got {value!r} "
                f"(default {params[key].default!r})"
            )


def _planned_world_size() -> int:
    """Ranks of the run: the process group's when it exists, else ``torchrun``'s ``WORLD_SIZE`` (checks run before
    the group is made)."""
    if world_size() > 1:
        return world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_batch_size(
    name: str, batch_size: int, kwargs: Mapping[str, Any] | None = None, world: int | None = None
) -> None:
    """Refuse a batch size method ``name`` cannot learn from, before anything runs.

    The minimum is the method's :attr:`~monai_transfer.ssl.registry.MethodSpec.min_batch` (counted over the global
    batch, per-rank batch x ranks, where the loss gathers across ranks), and 2 per rank when its heads use batch
    norm (``head_norm="batch"``). The last incomplete batch is no concern: pretraining drops it (``drop_last``).

    Args:
        name: the method.
        batch_size: the batch per rank.
        kwargs: the method's options (``head_norm``, ``gather_distributed``).
        world: ranks (default: the process group's, or ``WORLD_SIZE``).

    Raises:
        ValueError: one sentence naming the method, the batch size and the minimum.
    """
    from monai_transfer.ssl.registry import get_method_spec

    spec = get_method_spec(name)
    kwargs = dict(kwargs or {})
    world = _planned_world_size() if world is None else int(world)
    batch = int(batch_size)
    _, params, _ = method_options(spec.name)
    gathers = world > 1 and bool(kwargs.get("gather_distributed", "gather_distributed" in params))
    counted = batch * world if spec.min_batch_scope == "global" and gathers else batch
    per = f" per rank x {world} ranks = {counted}" if counted != batch else (" per rank" if world > 1 else "")
    if counted < spec.min_batch:
        least = -(-spec.min_batch // (world if counted != batch else 1))
        raise ValueError(
            f"{spec.name} cannot learn from a batch of {batch}{per}: {spec.min_batch_why or 'its loss needs more'}; "
            f"use --batch-size {least} or more (batch_size >= {least})"
        )
    head_norm = kwargs.get("head_norm", params["head_norm"].default if "head_norm" in params else None)
    if head_norm == "batch" and batch < 2:
        raise ValueError(
            f"{spec.name} cannot learn from a batch of {batch}{' per rank' if world > 1 else ''}: the batch norms of "
            "its heads need 2 samples or more per rank; use --batch-size 2 or more, or --method-arg head_norm=layer"
        )


class ViewCheckError(ValueError):
    """The sampled pretraining views are constant or collapsed: the run would learn nothing."""


#: a share of voxels at one value at or above which an image counts as nearly constant
_FLAT_SHARE = 0.999


def _flatness(x: torch.Tensor, max_values: int = 1_000_000) -> tuple[bool, float]:
    """``(flat, value)``: whether ``x`` is constant or nearly so (``_FLAT_SHARE`` of its voxels at one value)."""
    v = torch.as_tensor(x).detach().float().reshape(-1)
    if v.numel() == 0:
        return True, 0.0
    if v.numel() > max_values:
        v = v[:: int(math.ceil(v.numel() / max_values))]
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi), abs(lo)):
        return True, lo
    values, counts = torch.unique(v, return_counts=True)
    i = int(counts.argmax())
    return float(counts[i]) / v.numel() >= _FLAT_SHARE, float(values[i])


def _suggest(spec: Mapping[str, Any]) -> str:
    name = spec.get("name")
    if name == "minmax":
        return "--intensity percentile (a percentile range over all voxels) or --intensity none"
    return (
        "--intensity minmax (each image's own minimum and maximum to [0, 1]; fits already-normalised or uint8 data), "
        "or --intensity percentile --intensity-arg lower=0.5 upper=99.5 (over all voxels)"
    )


def check_pretraining_data(
    data: PretrainData,
    loading: Sequence[Callable],
    intensity: Sequence[Callable],
    augmentation: Callable,
    intensity_spec: Mapping[str, Any] | None,
    batch_size: int,
    samples: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Check, before training, that the data can train anything; return what was checked.

    * enough images for one full batch per rank;
    * a sample of up to ``samples`` images (spread over the list): after the intensity mapping, at most half may be
      constant or nearly so (99.9 % of the voxels at one value), and at most half of their views may be constant.
      A mapping that collapses the images (an MR percentile preset on binary or mostly-empty uint8 data maps
      everything to 0) is named, with another to try; images that are constant before any mapping are named too.

    Args:
        data: the run's images (:func:`load_images`).
        loading: the transforms reading an image (before the intensity mapping).
        intensity: the intensity transforms.
        augmentation: the random view pipeline (reseeded with ``set_random_state``).
        intensity_spec: the spec behind ``intensity``, for the message.
        batch_size: per rank.
        samples: images sampled.
        seed: seeds the sampled views.

    Raises:
        ValueError: too few images for one batch.
        ViewCheckError: the sampled images or views are constant or collapsed.
    """
    from monai.transforms import Compose

    from monai_transfer.transforms.preprocessing import describe_intensity

    n, world = len(data), world_size()
    if n // world < int(batch_size):
        most = max(1, n // world)
        raise ValueError(
            f"{data.datalist or data.source}: {n} image(s) in section {data.section!r} make no full batch of "
            f"{batch_size}{f' per rank ({world} ranks)' if world > 1 else ''}; lower --batch-size (at most {most})"
        )
    spec = dict(intensity_spec or {})
    where = describe_intensity(spec) if spec else "none"
    picks = sorted({int(i) for i in np.linspace(0, n - 1, num=min(int(samples), n))})
    load, scale = Compose(list(loading)), Compose(list(intensity))
    raw_flat, flat, views_flat, n_views, examples = [], [], 0, 0, []
    for i in picks:
        item = data.items[i]
        name = os.path.basename(str(item["image"]))
        loaded = load(dict(item))
        raw = torch.as_tensor(loaded["image"])
        if not torch.isfinite(raw).all():
            raise ViewCheckError(f"{name}: the image holds NaN or infinite values; fix or remove it from the datalist")
        if _flatness(raw)[0]:
            raw_flat.append(name)
        normalised = scale(loaded)
        is_flat, value = _flatness(normalised["image"])
        if is_flat:
            flat.append(name)
            if len(examples) < 3:
                examples.append(f"{name}: {100 * _FLAT_SHARE:g} % or more of the voxels at {value:.4g}")
        augmentation.set_random_state(seed=(int(seed) + i) % 2**32)
        views = augmentation(dict(normalised))
        for key, view in views.items():
            if isinstance(view, torch.Tensor) and view.is_floating_point() and key != "mask" and view.ndim > 1:
                n_views += 1
                v = view.detach().float()
                views_flat += int(float(v.max() - v.min()) <= 1e-6 * max(1.0, float(v.abs().max())))
    checked = {"images": len(picks), "flat_images": len(flat), "views": n_views, "constant_views": views_flat}
    if len(raw_flat) * 2 > len(picks):
        raise ViewCheckError(
            f"{data.source}: {len(raw_flat)} of {len(picks)} sampled images are constant or nearly so as read "
            f"(e.g. {', '.join(raw_flat[:3])}), before any intensity mapping: there is nothing to learn from; check "
            f"the images and the datalist"
        )
    if len(flat) * 2 > len(picks) or (n_views and views_flat * 2 > n_views):
        raise ViewCheckError(
            f"{data.source}: the intensity mapping {where} collapses the images: {len(flat)} of {len(picks)} sampled "
            f"images are constant or nearly so after it ({'; '.join(examples) or 'their views are constant'}), and "
            f"{views_flat} of {n_views} views are constant, so pretraining would learn nothing. Choose a mapping that "
            f"fits the data: {_suggest(spec)} (YAML: intensity: {{name: minmax}}; bundle: --set intensity=...)"
        )
    logger.info("checked %d images and %d views with intensity %s: none collapsed", len(picks), n_views, where)
    return checked
