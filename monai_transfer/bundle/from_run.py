"""Any finished run -> a bundle: the inference bundle of a fine-tuning run, and running a bundle's inference."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.bundle.writer import create_bundle

__all__ = ["bundle_from_run", "run_inference"]


def bundle_from_run(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Write the bundle of a finished fine-tuning run (``run_dir/bundle`` by default) holding its best weights.

    The network, labels, intensity mapping and input size come from the run's ``configs/train.json``, the starting
    point and test metrics from its ``result.json``; ``models/model.pt`` is hard-linked (no second copy on disk).
    The bundle's ``train.json`` fine-tunes again from the same starting point; ``inference.json`` predicts with the
    run's best weights.
    """
    run = Path(run_dir)
    config = json.loads((run / "configs" / "train.json").read_text())
    result_file = run / "result.json"
    result: Mapping[str, Any] = json.loads(result_file.read_text()) if result_file.is_file() else {}
    nd = config["network_def"]
    test = result.get("test") or {}
    metrics = {k: v for k, v in test.items() if isinstance(v, (int, float)) and k != "n"}
    start = result.get("pretrained") or "random initialisation"
    name = f"{nd['backbone']} {config['spatial_dims']}D {config['task']} fine-tuned from {start}"
    best = result.get("best_metric")
    best = f"{best:.4g}" if isinstance(best, float) else best
    return create_bundle(
        Path(out_dir) if out_dir is not None else run / "bundle",
        backbone=nd["backbone"], task=config["task"], spatial_dims=config["spatial_dims"],
        num_classes=config["num_classes"], in_channels=config["in_channels"], labels=config["labels"],
        pretrained=result.get("pretrained"), weights=run / "models" / "model.pt",
        strategy=config["finetune_strategy"]["name"], intensity=config.get("intensity"),
        spatial_size=config.get("spatial_size"), patch_size=config.get("patch_size"),
        backbone_kwargs=nd.get("backbone_kwargs"), head_kwargs=nd.get("head_kwargs"), name=name,
        description=f"{name}; best validation {result.get('best_metric_name')} {best} at epoch "
        f"{result.get('best_epoch')}.",
        extra_metadata={"eval_metrics": metrics, "load_report": result.get("load_report_table"),
                        "fine_tuning": {k: result.get(k) for k in (
            "strategy", "label_fraction", "seed", "n_train", "best_metric", "best_metric_name", "best_epoch")}},
        overwrite=overwrite,
    )  # fmt: skip


def run_inference(
    bundle_dir: str | os.PathLike,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Path:
    """Run a bundle's ``inference.json`` on a folder of images (or a list of files); predictions go to ``out_dir``.

    The resolved config is saved as ``out_dir/configs/inference.json``; segmentation label maps keep each input's
    geometry, classification writes ``predictions.jsonl``.
    """
    from monai_transfer.engines.workflow import parse_overrides, run_config

    root = Path(bundle_dir).resolve()
    config = root / "configs" / "inference.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: is {root} a bundle (or a run folder with bundle/)?")
    values: dict[str, Any] = {"bundle_root": str(root), "output_dir": str(Path(out_dir).resolve())}
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        values["dataset_dir"] = str(Path(images).resolve())
    else:
        files = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"image not found: {f}")
        values["datalist"] = [{"image": str(Path(f).resolve())} for f in files]
    run_config(config, out_dir, overrides={**values, **parse_overrides(overrides)}, name="inference.json")
    return Path(out_dir)
