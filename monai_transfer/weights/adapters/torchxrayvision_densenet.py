"""TorchXRayVision DenseNet-121 (Cohen et al., 2022, "TorchXRayVision", arXiv:2111.00595).

``xrv.models.DenseNet(weights="densenet121-res224-all")`` is a torchvision-style DenseNet-121 with one input
channel, an 18-output ``classifier`` and an ``op_threshs`` buffer (per-pathology operating points). Its
``state_dict()`` is therefore ``features.*`` (torchvision names) + ``classifier.*`` + ``op_threshs``; the adapter
maps ``features.*`` like the torchvision DenseNet adapter and drops the classifier and thresholds.

The file TorchXRayVision publishes is a whole pickled model (``torch.save(model)``), which
``torch.load(weights_only=True)`` refuses and ``monai_transfer`` will not unpickle. Convert it once, in an
environment you trust::

    import torch, torchxrayvision as xrv
    torch.save(xrv.models.DenseNet(weights="densenet121-res224-all").state_dict(), "xrv_densenet121_all.pt")

and load ``xrv_densenet121_all.pt``. Inputs must be normalised as TorchXRayVision does: ``[0, 255]`` mapped to
``[-1024, 1024]`` (``xrv.datasets.normalize(img, 255)``), one channel, 224x224.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter, strip_prefixes
from monai_transfer.weights.adapters.torchvision_models import is_densenet_layout, map_densenet_key

__all__ = ["TORCHXRAYVISION"]


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    keys = {strip_prefixes(k): v for k, v in source.items()}
    if not is_densenet_layout(keys):
        return 0.0
    if "op_threshs" in keys:
        return 0.95
    conv0, cls = keys.get("features.conv0.weight"), keys.get("classifier.weight")
    if conv0 is not None and cls is not None and conv0.shape[1] == 1 and cls.shape[0] == 18:
        return 0.9
    return 0.0


TORCHXRAYVISION = Adapter(
    name="torchxrayvision-densenet",
    family="densenet",
    description="TorchXRayVision DenseNet-121 state dict (1 channel; classifier and op_threshs dropped)",
    detect=_detect,
    map_key=map_densenet_key,
    reference="Cohen et al., 2022, arXiv:2111.00595; https://github.com/mlmed/torchxrayvision",
)
