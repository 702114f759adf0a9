"""Any finished run -> a bundle: the inference bundle of a fine-tuning run, and running a bundle's inference."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.bundle.writer import create_bundle
from monai_transfer.engines.specs import InferSpec
from monai_transfer.engines.threads import cpu_threads

logger = logging.getLogger(__name__)

__all__ = ["bundle_from_run", "run_inference", "skipped_images", "NoImagesError", "SKIPPED_NAME"]


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


SKIPPED_NAME = "skipped.json"


class NoImagesError(ValueError):
    """``infer`` found no image to predict on (an empty folder, or a folder without NIfTI/PNG/DICOM files)."""


def infer(spec: InferSpec) -> Path:
    """Run an :class:`~monai_transfer.engines.specs.InferSpec`: a bundle (or a run folder's ``bundle/``) on its images,
    with its ``device`` and ``amp`` set in the config before the user's own overrides (see :func:`run_inference`), on
    its ``threads`` CPU threads."""
    bundle = Path(spec.bundle)
    if not (bundle / "configs" / "inference.json").is_file() and (bundle / "bundle").is_dir():
        bundle = bundle / "bundle"  # a finetune run folder: its inference bundle
    from monai_transfer.engines.workflow import parse_overrides

    images = spec.images[0] if len(spec.images) == 1 else spec.images
    values = {**parse_overrides(spec.config_values()), **parse_overrides(spec.overrides)}  # the user's --set wins
    with cpu_threads(spec.threads):
        return run_inference(bundle, images, spec.out_dir, values)


def run_inference(
    bundle_dir: str | os.PathLike,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Path:
    """Run a bundle's ``inference.json`` on a folder of images (or a list of files); predictions go to ``out_dir``.

    The resolved config is saved as ``out_dir/configs/inference.json``; segmentation label maps keep each input's
    geometry, classification writes ``predictions.jsonl``. Every image is checked first (readable, finite, the
    bundle's number of spatial axes): a bad one gets no prediction, is logged in one sentence naming it and listed in
    ``out_dir/skipped.json`` (``{"skipped": [{"image", "reason"}], "n_images", "n_predicted"}``), and the other images
    are still predicted. :func:`skipped_images` reads that list back.

    Raises:
        FileNotFoundError: no bundle config, or an image file given that does not exist.
        NoImagesError: no image to predict on (an empty folder), or none of them can be read (the first is named).
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
    merged = {**values, **parse_overrides(overrides)}
    rows, dims = _inference_cases(config, merged)
    skipped: list[dict[str, str]] = []
    if rows is not None:
        if not rows:
            where = values.get("dataset_dir", images)
            raise NoImagesError(f"{os.fspath(where)} holds no image to predict on (NIfTI .nii/.nii.gz, PNG or DICOM "
                                ".dcm files): nothing was written")  # fmt: skip
        from monai_transfer.transforms.checks import image_problem

        good = []
        for row in rows:
            problem = image_problem(row, ("image",), dims)
            if problem is None:
                good.append(row)
            else:
                logger.warning("skipped: %s", problem)
                skipped.append({"image": os.fspath(row["image"]), "reason": problem})
        if not good:
            raise NoImagesError(
                f"none of the {len(rows)} images can be used, so nothing was written; the first: {skipped[0]['reason']}"
            )
        merged["datalist"] = good
    run_config(config, out_dir, overrides=merged, name="inference.json")
    record = Path(out_dir) / SKIPPED_NAME
    if skipped:
        from monai_transfer.utils.atomic import atomic_write_json

        atomic_write_json(
            record, {"skipped": skipped, "n_images": len(rows or []), "n_predicted": len(rows or []) - len(skipped)}
        )
    else:
        record.unlink(missing_ok=True)  # an earlier run's list in the same folder no longer holds
    return Path(out_dir)


def skipped_images(out_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The images :func:`run_inference` skipped in ``out_dir`` (``[]`` when it predicted them all)."""
    path = Path(out_dir) / SKIPPED_NAME
    return list(json.loads(path.read_text()).get("skipped", [])) if path.is_file() else []


def _inference_cases(config: Path, overrides: Mapping[str, Any]) -> tuple[list[dict[str, Any]] | None, int | None]:
    """The cases an inference config would predict on and its ``spatial_dims``, resolved without building anything
    else; ``(None, None)`` for a config that names its data otherwise (then nothing is checked up front)."""
    from monai.bundle import ConfigParser

    from monai_transfer.engines.workflow import apply_overrides, load_config

    raw = apply_overrides(load_config(config), dict(overrides))
    if "datalist" not in raw:
        return None, None
    parser = ConfigParser(raw)
    try:
        if "imports" in raw:
            parser.get_parsed_content("imports")
        rows = parser.get_parsed_content("datalist")
        dims = parser.get_parsed_content("spatial_dims") if "spatial_dims" in raw else None
    except Exception as err:  # noqa: BLE001 - the workflow itself then runs (and reports) it as it always did
        logger.debug("inference cases not resolved up front (%s: %s)", type(err).__name__, err)
        return None, None
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) and "image" in r for r in rows):
        return None, None
    return [dict(r) for r in rows], (int(dims) if isinstance(dims, int) else None)
