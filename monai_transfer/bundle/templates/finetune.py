"""A bundle's inference config (``inference.json``); its ``train.json`` and ``evaluate.json`` come from
``monai_transfer.finetune.config`` (the configs every fine-tuning run executes), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai_transfer.finetune.config import (
    KEY_METRIC_DEFAULT,
    LOSSES,
    evaluate_config,
    finetune_config,
    inferer_component,
    network_def_component,
    precision_component,
    precision_inferer,
)
from monai_transfer.transforms.preprocessing import intensity_components
from monai_transfer.utils.sizes import per_axis

__all__ = ["finetune_config", "evaluate_config", "inference_config", "KEY_METRIC_DEFAULT", "LOSSES"]


def inference_config(
    backbone: str,
    task: str,
    spatial_dims: int,
    num_classes: int,
    in_channels: int = 1,
    labels: Sequence[str] | None = None,
    intensity: Mapping[str, Any] | None = None,
    divisible_by: int = 32,
    spatial_size: Sequence[int] | int | None = None,
    patch_size: Sequence[int] | int | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    head_kwargs: Mapping[str, Any] | None = None,
    bundle_root: str = ".",
    dataset_dir: str = "$@bundle_root + '/data'",
) -> dict[str, Any]:
    """``inference.json``: predictions for every image under ``dataset_dir`` (or ``--datalist``, a list of dicts).

    Segmentation: softmax, argmax, the padding inverted (``Invertd``) and the label map written with the input's
    geometry (``SaveImaged``, ``eval/<name>_seg.nii.gz``). Classification: class probabilities, one JSON line per
    image with the class names (``eval/predictions.jsonl``). No ``Spacingd``: the network sees the image's own grid
    (MONAI Label puts an ``image_path`` string beside the image, which ``Spacingd`` in MONAI 1.6 fails on).
    """
    seg = task == "segmentation"
    pre = [
        {"_target_": "monai_transfer.transforms.checks.ReadImaged", "keys": "image", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "monai_transfer.transforms.checks.CheckFinited", "keys": "image"},
        {
            "_target_": "monai_transfer.transforms.checks.CheckSpatialDimsd",
            "keys": "image",
            "spatial_dims": int(spatial_dims),
        },
        *intensity_components(intensity, keys="image", in_channels=in_channels),
    ]
    if seg:
        m = 2 * int(divisible_by)
        pre += [{"_target_": "SpatialPadd", "keys": "image", "spatial_size": [m] * spatial_dims},
                {"_target_": "DivisiblePadd", "keys": "image", "k": int(divisible_by)}]  # fmt: skip
    elif spatial_size is not None:
        size = per_axis(spatial_size, spatial_dims, "spatial_size")
        pre.append({"_target_": "Resized", "keys": "image", "spatial_size": size,
                    "mode": "trilinear" if spatial_dims == 3 else "bilinear"})  # fmt: skip
    pre.append({"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"})
    post: list[dict[str, Any]] = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]
    handlers: list[dict[str, Any]] = [
        {"_target_": "CheckpointLoader", "load_path": "$@ckpt_dir + '/model.pt'", "load_dict": {"model": "@network"},
         "map_location": "cpu"},
        {"_target_": "StatsHandler", "iteration_log": False},
    ]  # fmt: skip
    if seg:
        post += [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": True, "to_tensor": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False, "print_log": False},
        ]  # fmt: skip
    else:
        handlers.append({"_target_": "monai_transfer.finetune.predictions.ClassProbabilityWriter",
                         "path": "$@output_dir + '/predictions.jsonl'", "labels": "@labels",
                         "decision": "@decision"})  # fmt: skip
    names = list(labels) if labels else [f"class_{i}" for i in range(int(num_classes))]
    # classification: the threshold (and temperature) the run chose on its validation set, applied to every prediction
    decision = {} if seg else {"decision": {"_target_": "monai_transfer.finetune.predictions.load_decision",
                                            "path": "$@ckpt_dir + '/decision.json'"}}  # fmt: skip
    return {
        **decision,
        "imports": ["$import glob", "$import numpy", "$import torch", "$import monai", "$import monai_transfer"],
        "bundle_root": bundle_root,
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": dataset_dir,
        "datalist": "$[{'image': f} for f in sorted(glob.glob(@dataset_dir + '/*.nii*') + "
        "glob.glob(@dataset_dir + '/*.png') + glob.glob(@dataset_dir + '/*.dcm'))]",
        "device": "$monai_transfer.engines.default_device()",
        "task": task,
        "spatial_dims": int(spatial_dims),
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
        "labels": names,
        "patch_size": patch_size,
        # "auto": CUDA AMP; on CPU bfloat16 only where a forward-only probe of the network measures that it pays
        "amp": "auto",
        "channels_last": "auto",
        "compile": "off",
        "spatial_size": None if spatial_size is None else per_axis(spatial_size, spatial_dims, "spatial_size"),
        "network_def": network_def_component(backbone, backbone_kwargs, head_kwargs),
        # the decision and its reason beside the predictions (precision.json in output_dir)
        "precision": precision_component(training=False, batch_size=1, record="$@output_dir + '/precision.json'"),
        "network": "$monai_transfer.engines.prepare_network(@network_def.to(@device), @precision, @spatial_dims)",
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},  # fmt: skip
        "inferer": inferer_component(task, spatial_dims, patch_size),
        "postprocessing": {"_target_": "Compose", "transforms": post},
        "handlers": handlers,
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "postprocessing": "@postprocessing", "val_handlers": "@handlers",
                      # the CPU half of the precision decision around the inferer; MONAI's amp is the CUDA half
                      "inferer": precision_inferer("@inferer"),
                      "amp": "$monai_transfer.engines.monai_amp(@precision)"},  # fmt: skip
        "initialize": [],
        "run": ["$@evaluator.run()"],
        "finalize": [],
    }
