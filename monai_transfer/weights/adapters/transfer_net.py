"""monai_transfer's own fine-tuned networks: the ``state_dict()`` of a ``TransferNet`` (``models/model.pt`` of a
``finetune`` run folder, of its inference bundle, of a study's best bundle).

The backbone sits under ``backbone.`` with the backbone's own (MONAI) keys, the classifier or segmentation decoder
under ``head.``. The backbone part loads; the head is dropped (reported as dropped): a new task gets a new head.
Detected above the lightly/solo-learn adapter, which reads ``backbone.`` too but names other frameworks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from monai_transfer.weights.adapters.base import Adapter, KeyFn, strip_prefixes

__all__ = ["TRANSFER_NET", "TRANSFER_NET_CHILDREN"]

#: the children of ``monai_transfer.networks.TransferNet``
TRANSFER_NET_CHILDREN: tuple[str, ...] = ("backbone", "head")
_OUTER = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers


def _split(source: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    inner, tops = {}, set()
    for k, v in source.items():
        k = strip_prefixes(k, _OUTER)
        tops.add(k.split(".", 1)[0])
        if k.startswith("backbone."):
            inner[k[len("backbone.") :]] = v
    return inner, tops


def _detect(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> float:
    """Sure (1.6) when the checkpoint is ``backbone.*`` + ``head.*`` and its backbone keys are the module's own."""
    if not target:
        return 0.0
    inner, tops = _split(source)
    if tops != set(TRANSFER_NET_CHILDREN) or not inner:
        return 0.0
    found = sum(k in target for k in inner)
    # every backbone key a key of the module, and (nearly) every module key there: the same backbone
    return 1.6 if found == len(inner) and found >= 0.9 * len(target) else 0.0


def _bind(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyFn:
    def map_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        k = strip_prefixes(key, _OUTER)
        if not k.startswith("backbone."):
            return None  # the head: a new task gets its own
        return k[len("backbone.") :], value

    return map_key


TRANSFER_NET = Adapter(
    name="monai-transfer",
    family="any",
    description="monai_transfer's fine-tuned TransferNet (models/model.pt of a finetune run or bundle): backbone.* "
    "kept, head.* dropped",
    detect=_detect,
    bind=_bind,
    reference="monai_transfer.networks.TransferNet",
)
