"""MONAI Label tasks for our bundles: MONAI Label's own bundle tasks, with what classification and strict loading need.

Imports ``monailabel``: runs inside the MONAI Label environment (:mod:`monai_transfer.label.environment`).

* Segmentation infers through MONAI Label's ``BundleInferTask`` unchanged: the bundle's ``inference.json``
  preprocessing keeps the input's geometry (no ``Spacingd``), its ``Invertd`` undoes the padding, and MONAI Label's
  restore step finds nothing left to undo.
* Classification skips that restore step (it resizes a label map and breaks on a vector of scores) and answers with
  the class names and scores as JSON.
* Training runs the bundle's ``train.json`` through MONAI Label's ``BundleTrainTask``; for classification the
  datalist comes from :mod:`monai_transfer.label.class_labels` instead of label files, and every split keeps at least
  one validation case (the bundle saves ``models/model.pt`` on its best validation score, so a run without
  validation would train and keep nothing).
* A request's fine-tuning settings (``lr``, ``batch_size``... offered in the client's training panel) are the fields of
  the fine-tuning spec, checked as a run checks them (:mod:`monai_transfer.label.train_request`).
* Weights load strictly (MONAI Label's default is ``strict=False``, which would serve a half-loaded network).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask

from monai_transfer.engines.specs import SpecFieldError
from monai_transfer.label.bundles import ServedBundle
from monai_transfer.label.class_labels import DEFAULT_CSV, class_from_info, read_class_csv
from monai_transfer.label.train_request import request_overrides, train_options

__all__ = ["ClassificationInferTask", "TransferTrainTask", "LabelRequestError", "classification_datalist"]

logger = logging.getLogger(__name__)


class LabelRequestError(ValueError):
    """A request the server cannot carry out because of what it asks for; ``status`` is the HTTP code to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def segmentation_infer_task(bundle: ServedBundle, conf: dict[str, str]) -> BundleInferTask:
    return BundleInferTask(str(bundle.path), conf, type=InferType.SEGMENTATION, load_strict=True)


class ClassificationInferTask(BundleInferTask):
    """A classification bundle: the softmax scores of ``postprocessing``, answered as JSON."""

    def __init__(self, bundle: ServedBundle, conf: dict[str, str]):
        self.class_names = list(bundle.labels)
        super().__init__(
            str(bundle.path), conf, type=InferType.CLASSIFICATION, add_post_restore=False, load_strict=True
        )
        # MONAI Label drops a class named "background" from the names it lists; a classifier's classes are all real
        self.labels = {name: i for i, name in enumerate(self.class_names)}

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[None, dict[str, Any]]:
        scores = [float(s) for s in data[self.output_label_key].reshape(-1).tolist()]
        if len(scores) != len(self.class_names):
            raise RuntimeError(f"{len(scores)} scores for {len(self.class_names)} classes {self.class_names}")
        best = max(range(len(scores)), key=scores.__getitem__)
        return None, {
            "label": self.class_names[best],
            "index": best,
            "scores": dict(zip(self.class_names, scores)),
            "prediction": [
                {"idx": i, "label": n, "score": s} for i, (n, s) in enumerate(zip(self.class_names, scores))
            ],
        }


def classification_datalist(datastore: Datastore, bundle: ServedBundle, csv_path: str) -> list[dict[str, Any]]:
    """``[{"image": path, "label": class index}]`` for every datastore image with a class (CSV first, then the info
    of its ``final`` label, then the image's own info).

    Raises:
        LabelRequestError: (409) no image has a class; (422) a CSV row or info names an unknown class.
    """
    try:
        from_csv = read_class_csv(csv_path, bundle.labels)
    except ValueError as e:
        raise LabelRequestError(422, str(e)) from None
    images = datastore.list_images()
    rows = []
    for image in sorted(images):
        index = from_csv.get(image)
        try:
            if index is None:
                final = datastore.get_labels_by_image_id(image).get("final")
                info = datastore.get_label_info(final, "final") if final else None
                index = class_from_info(info, bundle.labels, f"label info of image {image!r}")
            if index is None:
                index = class_from_info(datastore.get_image_info(image), bundle.labels, f"info of image {image!r}")
        except ValueError as e:
            raise LabelRequestError(422, str(e)) from None
        if index is not None:
            rows.append({"image": datastore.get_image_uri(image), "label": index})
    unknown = sorted(set(from_csv) - set(images))
    if unknown:
        logger.warning(f"{csv_path}: {len(unknown)} image(s) not in the datastore, ignored: {', '.join(unknown[:5])}")
    if not rows:
        raise LabelRequestError(
            409,
            f"no image of the datastore has a class for {bundle.name!r}: write {csv_path} (columns image,label; "
            f"classes {list(bundle.labels)}) or set a 'label' in an image's info",
        )
    classes = sorted({r["label"] for r in rows})
    if len(classes) < 2:
        raise LabelRequestError(
            422,
            f"all {len(rows)} labelled images are {bundle.labels[classes[0]]!r}: training {bundle.name!r} needs images "
            "of at least two classes",
        )
    return rows


class TransferTrainTask(BundleTrainTask):
    """Train one of our bundles on the datastore's labels through its ``train.json``."""

    def __init__(self, bundle: ServedBundle, conf: dict[str, str], studies: str):
        self.bundle = bundle
        self.csv_path = conf.get("class_labels_csv") or os.path.join(studies, DEFAULT_CSV)
        self._settings: dict[str, Any] = {}
        super().__init__(str(bundle.path), conf, load_strict=True)

    def config(self):
        """MONAI Label's training options, with the fine-tuning settings the bundle holds (``lr``, ``batch_size``...)
        at the bundle's own values."""
        return {**super().config(), **train_options(self.bundle_config.get())}

    def _update_overrides(self, overrides):
        overrides.update(self._settings)
        return overrides

    def _fetch_datalist(self, request, datastore: Datastore):
        if self.bundle.task == "classification":
            return classification_datalist(datastore, self.bundle, self.csv_path)
        rows = super()._fetch_datalist(request, datastore)
        if not rows:
            raise LabelRequestError(
                409, f"no image of the datastore has a final label to train {self.bundle.name!r} on; save labels first"
            )
        return rows

    def _partition_datalist(self, datalist, request, shuffle=False):
        """MONAI Label's split (the last ``val_split`` of the datastore order for validation), with at least one
        validation case whenever ``val_split > 0``, and for classification stratified per class (one case of each
        class with two or more goes to validation, so that AUROC is defined). ``val_split <= 0`` validates on the
        training cases (said in the log: the score that picks the kept weights is then not held out)."""
        val_split = float(request.get("val_split", 0.2))
        n = len(datalist)
        if val_split <= 0 or n < 2:
            logger.warning(
                f"{self.bundle.name}: validating on the {n} training case(s) (val_split={val_split}): the score that "
                "picks the kept weights is not held out"
            )
            return list(datalist), list(datalist)
        if self.bundle.task == "classification":
            groups: dict[Any, list] = {}
            for row in datalist:
                groups.setdefault(row["label"], []).append(row)
        else:
            groups = {None: list(datalist)}
        train, val = [], []
        for rows in groups.values():
            k = min(len(rows) - 1, max(1, math.floor(len(rows) * val_split))) if len(rows) > 1 else 0
            train += rows[: len(rows) - k]
            val += rows[len(rows) - k :]
        if not val:
            train, val = list(datalist[:-1]), list(datalist[-1:])
        if self.bundle.task == "classification" and len({r["label"] for r in val}) < 2:
            logger.warning(f"{self.bundle.name}: the validation cases hold one class only; AUROC is undefined")
        logger.info(f"{self.bundle.name}: {len(train)} training and {len(val)} validation case(s)")
        return train, val

    def __call__(self, request, datastore: Datastore):
        try:  # the request's fine-tuning settings, checked as spec fields before anything trains
            self._settings = request_overrides(request)
        except SpecFieldError as err:
            raise LabelRequestError(422, f"{self.bundle.name}: {err}") from None
        before = _stamp(self.bundle.weights)
        result = super().__call__(request, datastore)
        if _stamp(self.bundle.weights) == before:
            raise LabelRequestError(
                422,
                f"training {self.bundle.name!r} ran, but no epoch had a defined validation score (for classification, "
                "AUROC needs both classes among the validation cases), so models/model.pt was kept as it was; label "
                "more images of the missing class or raise val_split",
            )
        return result


def _stamp(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino
