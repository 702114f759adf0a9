"""Shared cases for the network tests: small inputs that keep the whole registry fast on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

from monai_transfer.networks import get_backbone_config, list_backbones

# ViT position embeddings are built for one size: 32 px with 16 px patches gives a 2^d token grid (28 px with the
# 14 px patches of DINOv2's ViTs)
VIT_IMG_SIZE = 32


def vit_img_size(name: str) -> int:
    return 28 if name.endswith("patch14") else VIT_IMG_SIZE


def backbone_kwargs(name: str) -> dict:
    family = get_backbone_config(name).family
    if family == "sam":  # SAM's encoder is built for one size too: the 2D test input (4x4 patches, padded windows)
        return {"img_size": 64}
    return {"img_size": vit_img_size(name)} if family == "vit" else {}


def input_shape(name: str, spatial_dims: int, task: str = "classification") -> tuple[int, ...]:
    """Spatial shape of the test input for a backbone.

    2D: 64x64; 3D: 32^3 (multiples of 32 for Swin); ViT: its img_size. For 3D segmentation with a stride-32
    backbone the last axis is 64, so that the deepest map has 2 voxels: instance norm (the decoders' default, as in
    SwinUNETR) rejects a single-voxel map, as it does in SwinUNETR itself.
    """
    if get_backbone_config(name).family == "vit":
        return (vit_img_size(name),) * spatial_dims
    if spatial_dims == 2:
        return (64, 64)
    if task == "segmentation" and get_backbone_config(name).family != "segresnet":
        return (32, 32, 64)
    return (32, 32, 32)


def make_input(name: str, spatial_dims: int, task: str = "classification", batch: int | None = None, seed: int = 0):
    """A random batch: two 2D images or one 3D volume unless ``batch`` is given."""
    if batch is None:
        batch = 2 if spatial_dims == 2 else 1
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 1) + input_shape(name, spatial_dims, task), generator=g)


def transfer_cases() -> list:
    """``pytest.param((name, spatial_dims, task))`` for every backbone, spatial_dims and task."""
    cases = []
    for name in list_backbones():
        for dims in get_backbone_config(name).spatial_dims:
            for task in ("classification", "segmentation"):
                if task == "segmentation" and name.endswith("patch14"):
                    continue  # UNETR's decoder upsamples by 2s: a 14 px patch has no segmentation decoder (tested)
                marks = [pytest.mark.slow] if is_slow(name, dims, task) else []
                cases.append(pytest.param((name, dims, task), id=f"{name}-{dims}d-{task[:3]}", marks=marks))
    return cases


def registry_cases() -> list:
    """``pytest.param((name, spatial_dims))`` for every registered backbone and every spatial_dims it supports
    (one value each, for parametrized fixtures)."""
    cases = []
    for name in list_backbones():
        for dims in get_backbone_config(name).spatial_dims:
            marks = [pytest.mark.slow] if is_slow(name, dims) else []
            cases.append(pytest.param((name, dims), id=f"{name}-{dims}d", marks=marks))
    return cases


def is_slow(name: str, spatial_dims: int, task: str | None = None) -> bool:
    """Cases that take more than about 5 s on a 2-core CPU: the ONNX exports of Swin segmentation networks
    (20-60 s; Swin does not script, and the ``torch.export``-based exporter is slow on its graph)."""
    return name == "swin_unetr" and task == "segmentation"
