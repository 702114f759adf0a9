"""A bundle's inference config (``inference.json``); its ``train.json`` and ``evaluate.json`` come from
``monai_transfer.finetune.config`` (the configs every fine-tuning run executes), re-exported here.

``inference.json`` renders from the JSON template of the same name beside this module; the parts that depend on the
task (reading, padding or resizing, a segmentation's label-map writing, a classifier's probability writer) are named
in ``inference_parts.json`` and put together here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai_transfer.engines.specs import FinetuneSpec, SpecFieldError
from monai_transfer.engines.templates import load_template, render
from monai_transfer.finetune.config import (
    KEY_METRIC_DEFAULT,
    LOSSES,
    evaluate_config,
    finetune_config,
    inferer_component,
)
from monai_transfer.transforms.preprocessing import intensity_components
from monai_transfer.utils.sizes import per_axis

__all__ = ["finetune_config", "evaluate_config", "inference_config", "KEY_METRIC_DEFAULT", "LOSSES"]

#: the package of the JSON templates rendered here (``inference.json`` and its optional ``inference_parts.json``)
_TEMPLATES = "monai_transfer.bundle.templates"


def inference_config(spec: FinetuneSpec, labels: Sequence[str] | None = None, divisible_by: int = 32) -> dict[str, Any]:
    """``inference.json``: predictions for every image under ``dataset_dir`` (or ``--datalist``, a list of dicts).

    Segmentation: softmax, argmax, the padding inverted (``Invertd``) and the label map written with the input's
    geometry (``SaveImaged``, ``eval/<name>_seg.nii.gz``). Classification: class probabilities, one JSON line per
    image with the class names (``eval/predictions.jsonl``). No ``Spacingd``: the network sees the image's own grid
    (MONAI Label puts an ``image_path`` string beside the image, which ``Spacingd`` in MONAI 1.6 fails on).

    The network and its input come from ``spec`` as for its ``train.json`` (``spatial_dims`` and ``num_classes`` or
    ``labels`` settled), ``divisible_by`` is the backbone's largest stride.
    """
    task, spatial_dims, spatial_size, patch_size = spec.task, spec.spatial_dims, spec.spatial_size, spec.patch_size
    if spatial_dims is None:
        raise SpecFieldError("spatial_dims: give 2 or 3")
    names = list(labels) if labels else [f"class_{i}" for i in range(int(spec.num_classes or 0))]
    seg = task == "segmentation"
    parts = load_template(_TEMPLATES, "inference_parts.json")
    reading = parts["reading"]
    for comp in reading:  # the one value the reading part needs: its dimension check
        if "spatial_dims" in comp:
            comp["spatial_dims"] = int(spatial_dims)
    size: list[dict[str, Any]] = []
    if seg:  # at least 2 strides, then a multiple of the stride: the deepest map keeps 2 voxels
        pad, divisible = parts["segmentation_padding"]
        size = [{**pad, "spatial_size": [2 * int(divisible_by)] * spatial_dims}, {**divisible, "k": int(divisible_by)}]
    elif spatial_size is not None:
        mode = "trilinear" if spatial_dims == 3 else "bilinear"
        size = [{**parts["resize"], "spatial_size": per_axis(spatial_size, spatial_dims, "spatial_size"), "mode": mode}]
    intensity_xs = intensity_components(spec.intensity, keys="image", in_channels=spec.in_channels)
    values = {
        "task": task,
        "spatial_dims": int(spatial_dims),
        "in_channels": int(spec.in_channels),
        "num_classes": len(names),
        "labels": names,
        "patch_size": patch_size,
        "spatial_size": None if spatial_size is None else per_axis(spatial_size, spatial_dims, "spatial_size"),
        "network_def#backbone": spec.backbone,
        "network_def#backbone_kwargs": dict(spec.backbone_kwargs),
        "network_def#head_kwargs": dict(spec.head_kwargs),
        "preprocessing#transforms": [*reading, *intensity_xs, *size, parts["to_float"]],
        "inferer": inferer_component(task, spatial_dims, patch_size),
    }
    # classification: the threshold (and temperature) the run chose on validation, applied to every prediction
    config = render(_TEMPLATES, "inference.json", values, drop=["decision"] if seg else [])
    if seg:  # a label map with the input's geometry
        config["postprocessing"]["transforms"] += parts["segmentation_postprocessing"]
    else:  # class probabilities, one JSON line per image
        config["handlers"].append(parts["probability_writer"])
    return config
