"""A bundle's network in research code, in two lines::

from monai_transfer.bundle import load_bundle_network
net = load_bundle_network("bundles/resnet50_imagenet_cls2d")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_bundle_network"]


def load_bundle_network(
    bundle_dir: str | os.PathLike, weights: bool = True, device: str | torch.device | None = None
) -> torch.nn.Module:
    """Build ``network_def`` of a bundle's ``inference.json`` and load ``models/model.pt`` strictly.

    Args:
        bundle_dir: the bundle folder.
        weights: load ``models/model.pt``; a starting-point bundle without one gives the network of ``train.json``
            with its starting weights (the file ``large_files.yml`` names must have been downloaded).
        device: where the network goes (default CPU).

    Raises:
        FileNotFoundError: no ``configs/inference.json``, or no weights where they are needed.
    """
    from monai.bundle import ConfigParser

    root = Path(bundle_dir)
    model = root / "models" / "model.pt"
    use_train = weights and not model.is_file()
    config = root / "configs" / ("train.json" if use_train else "inference.json")
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: is {root} a bundle?")
    from monai_transfer.engines.workflow import read_config_file

    parser = ConfigParser(read_config_file(config))  # a broken file is named, not only the place in it
    parser["bundle_root"] = str(root)
    net: Any = parser.get_parsed_content("network_def")
    if weights and not use_train:
        state = torch.load(model, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        net.load_state_dict(state, strict=True)
    return net.to(torch.device(device) if device is not None else torch.device("cpu"))
