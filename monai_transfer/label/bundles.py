"""What the MONAI Label app needs to know about one of our bundles, read without building anything.

A served model is a bundle folder with ``configs/metadata.json``, ``configs/inference.json`` and (to train)
``configs/train.json``. Its task is the ``task`` value of ``inference.json`` (``segmentation`` / ``classification``,
which every bundle this package writes has), else the format of the first output in ``network_data_format``; its
class names are ``labels`` of ``inference.json``, else that output's ``channel_def``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServedBundle", "BundleServeError", "read_served_bundle", "served_bundles"]

TASKS = ("segmentation", "classification")


class BundleServeError(ValueError):
    """A folder that cannot be served (the message names the folder and what is missing)."""


@dataclass(frozen=True)
class ServedBundle:
    name: str  #: the model name in MONAI Label (``/infer/<name>``)
    path: Path  #: absolute bundle folder
    task: str  #: "segmentation" or "classification"
    labels: tuple[str, ...]  #: class names, index = class (background included for segmentation)
    spatial_dims: int
    trainable: bool  #: has ``configs/train.json``
    has_weights: bool  #: has ``models/model.pt`` (a starting-point bundle has none until trained)

    @property
    def weights(self) -> Path:
        return self.path / "models" / "model.pt"


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleServeError(f"{path.parent.parent}: {path.relative_to(path.parent.parent)} is missing") from None
    except ValueError as e:
        raise BundleServeError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise BundleServeError(f"{path}: expected a JSON object")
    return data


def _model_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name).strip("_.") or "model"


def read_served_bundle(path: str | os.PathLike, name: str | None = None) -> ServedBundle:
    """Read a bundle folder's task, class names and dimensionality.

    Raises:
        BundleServeError: not a folder, a config missing or unreadable, or a task other than segmentation /
            classification.
    """
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise BundleServeError(f"{root}: not a bundle folder (no such directory)")
    meta = _json(root / "configs" / "metadata.json")
    infer = _json(root / "configs" / "inference.json")
    outputs = meta.get("network_data_format", {}).get("outputs", {})
    output = next(iter(outputs.values()), {}) if isinstance(outputs, dict) else {}
    task = str(infer.get("task") or output.get("format", "")).lower()
    if task not in TASKS:
        raise BundleServeError(
            f"{root}: task {task!r} cannot be served; the app serves {' and '.join(TASKS)} bundles "
            "('task' in configs/inference.json or network_data_format.outputs.*.format in configs/metadata.json)"
        )
    labels = infer.get("labels")
    if not isinstance(labels, list) or not labels:
        channels = output.get("channel_def", {})
        labels = [channels[k] for k in sorted(channels, key=int)] if channels else []
    if not labels:
        raise BundleServeError(f"{root}: no class names ('labels' in inference.json or the output's channel_def)")
    dims = infer.get("spatial_dims")
    if not isinstance(dims, int):
        shape = next(iter(meta.get("network_data_format", {}).get("inputs", {}).values()), {}).get("spatial_shape")
        dims = len(shape) if shape else 3
    return ServedBundle(
        name=name or _model_name(root),
        path=root,
        task=task,
        labels=tuple(str(x) for x in labels),
        spatial_dims=dims,
        trainable=(root / "configs" / "train.json").is_file(),
        has_weights=(root / "models" / "model.pt").is_file(),
    )


def served_bundles(paths: Sequence[str | os.PathLike]) -> list[ServedBundle]:
    """Read several bundles; model names are the folder names, made unique (``name``, ``name_2``, ...).

    A path may be given as ``NAME=PATH`` to choose the model name.
    """
    out: list[ServedBundle] = []
    seen: set[str] = set()
    for item in paths:
        text = os.fspath(item)
        name, sep, rest = text.partition("=")
        given = name if sep and name and not os.path.exists(text) else None
        bundle = read_served_bundle(rest if given else text, name=given)
        unique, i = bundle.name, 2
        while unique in seen:
            if given:
                raise BundleServeError(f"two bundles are named {given!r}")
            unique, i = f"{bundle.name}_{i}", i + 1
        seen.add(unique)
        out.append(bundle if unique == bundle.name else ServedBundle(**{**bundle.__dict__, "name": unique}))
    if not out:
        raise BundleServeError("no bundle to serve: give at least one --bundle PATH")
    return out
