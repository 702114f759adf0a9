"""Pretrained-weight import: provenance records, checkpoint adapters, surgery and load reports.

>>> from monai_transfer.networks import create_backbone
>>> from monai_transfer.weights import load_pretrained
>>> net = create_backbone("resnet50", spatial_dims=3, in_channels=1)
>>> report = load_pretrained(net, "resnet50-11ad3fa6.pth")  # torchvision 2D RGB -> inflated 3D, 1 channel
>>> print(report)  # per-stage table of loaded / missing / mismatched keys

See ``docs/weights.md``.
"""

from __future__ import annotations

from monai_transfer.weights.adapters import Adapter, detect_adapter, get_adapter, list_adapters, register_adapter
from monai_transfer.weights.checkpoint import (
    CheckpointReadError,
    DownloadError,
    HashMismatchError,
    UnsafeCheckpointError,
    default_cache_dir,
    download_checkpoint,
    read_checkpoint,
    save_pretrained,
    sha256_file,
    unwrap_state_dict,
)
from monai_transfer.weights.load import load_checkpoint, load_pretrained
from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.report import LoadReport, PretrainedLoadError
from monai_transfer.weights.sources import (
    WeightFile,
    WeightSource,
    get_source,
    list_sources,
    register_source,
    source_backbone_kwargs,
)
from monai_transfer.weights.surgery import (
    adapt_input_channels,
    inflate_state_dict,
    inflate_weight,
    resample_position_embedding,
)

__all__ = [
    "Adapter",
    "CheckpointReadError",
    "DownloadError",
    "HashMismatchError",
    "LoadReport",
    "PretrainedLoadError",
    "Provenance",
    "UnsafeCheckpointError",
    "WeightFile",
    "WeightSource",
    "adapt_input_channels",
    "default_cache_dir",
    "detect_adapter",
    "download_checkpoint",
    "get_adapter",
    "get_source",
    "inflate_state_dict",
    "inflate_weight",
    "list_adapters",
    "list_sources",
    "load_checkpoint",
    "load_pretrained",
    "read_checkpoint",
    "register_adapter",
    "register_source",
    "resample_position_embedding",
    "save_pretrained",
    "sha256_file",
    "source_backbone_kwargs",
    "unwrap_state_dict",
]
