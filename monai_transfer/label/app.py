"""The MONAI Label app that serves our bundles, segmentation and classification alike.

Imports ``monailabel``: MONAI Label loads it (through the ``main.py`` that :func:`monai_transfer.label.server.build_app`
writes) inside the MONAI Label environment. The served bundles are the folders (or links) under ``<app>/model/``
named by ``--conf models a,b``, as in MONAI Label's own ``monaibundle`` app.

Requests that cannot be served get a 4xx answer that says why (MONAI Label answers 500 "Internal Server Error" for
all of them): an unknown model (404), an unknown image id (404), a bundle with no trained weights yet (409), an
uploaded file that is not a readable image of the bundle's dimensionality (422), training with no labels (409).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import monai_transfer
from monai_transfer.label.bundles import ServedBundle, read_served_bundle
from monai_transfer.label.tasks import (
    ClassificationInferTask,
    LabelRequestError,
    TransferTrainTask,
    segmentation_infer_task,
)

__all__ = ["TransferLabelApp"]

logger = logging.getLogger(__name__)


class TransferLabelApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        names = [m.strip() for m in (conf.get("models") or "").split(",") if m.strip()]
        if not names:
            raise ValueError("no model to serve: start with --conf models NAME[,NAME...] (folders under <app>/model)")
        self.bundles: dict[str, ServedBundle] = {
            n: read_served_bundle(os.path.realpath(os.path.join(app_dir, "model", n)), name=n) for n in names
        }
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai_transfer bundles",
            description="Segmentation and classification bundles of monai_transfer",
            version=monai_transfer.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, bundle in self.bundles.items():
            if bundle.task == "classification":
                task = ClassificationInferTask(bundle, self.conf)
            else:
                task = segmentation_infer_task(bundle, self.conf)
            if not task.is_valid():
                raise ValueError(f"{bundle.path}: MONAI Label could not read the bundle's inference config")
            infers[name] = task
            logger.info(f"+++ {name}: {bundle.task}, {bundle.spatial_dims}D, classes {list(bundle.labels)}")
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        trainers: dict[str, TrainTask] = {}
        for name, bundle in self.bundles.items():
            if bundle.trainable:
                trainers[name] = TransferTrainTask(bundle, self.conf, self.studies)
        return trainers

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}

    # ---------------------------------------------------------------------------------------------- requests

    def _bundle(self, request: dict[str, Any], verb: str) -> ServedBundle:
        model = request.get("model")
        if model not in self.bundles:
            raise HTTPException(
                status_code=404, detail=f"no model {model!r} to {verb}; this server has {', '.join(self.bundles)}"
            )
        return self.bundles[model]

    def infer(self, request, datastore=None):
        bundle = self._bundle(request, "infer with")
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            store = datastore or self.datastore()
            if not store.get_image_uri(image):
                known = sorted(store.list_images())
                hint = f" (e.g. {', '.join(known[:3])})" if known else " (the datastore is empty)"
                raise HTTPException(
                    status_code=404, detail=f"no image {image!r} in the datastore of {len(known)} images{hint}"
                )
        if not bundle.weights.is_file():
            raise HTTPException(
                status_code=409,
                detail=f"{bundle.name!r} has no trained weights yet ({bundle.weights}); POST /train/{bundle.name} first",
            )
        try:
            return super().infer(request, datastore)
        except ValueError as e:  # our checks name the file and what is wrong with it (ReadImaged, CheckSpatialDimsd)
            message = str(e)
            if isinstance(image, str) and os.path.dirname(image) == tempfile.gettempdir():
                message = message.replace(image, "the uploaded file")  # MONAI Label's temporary copy means nothing
            raise HTTPException(status_code=422, detail=f"cannot infer with {bundle.name!r}: {message}") from None

    def train(self, request):
        self._bundle(request, "train")
        if request.get("model") not in self._trainers:
            raise HTTPException(status_code=404, detail=f"{request.get('model')!r} has no configs/train.json")
        try:
            return super().train(request)
        except LabelRequestError as e:
            raise HTTPException(status_code=e.status, detail=str(e)) from None
