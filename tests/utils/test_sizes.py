"""One size for every axis, or one per axis (found on real data: ``--spatial-size 64`` on 2D radiographs failed)."""

from __future__ import annotations

import pytest

from monai_transfer.engines.specs import FinetuneSpec
from monai_transfer.finetune.config import finetune_config
from monai_transfer.utils.sizes import per_axis


def test_per_axis_repeats_one_value_and_checks_the_length():
    assert per_axis(64, 2) == per_axis([64], 2) == [64, 64]
    assert per_axis([32, 48, 64], 3) == [32, 48, 64]
    with pytest.raises(ValueError, match="spatial_size .* 2 values for 3 spatial axes"):
        per_axis([32, 48], 3, "spatial_size")


def test_a_one_number_size_reaches_every_axis_of_the_config():
    cfg = finetune_config(FinetuneSpec(backbone="resnet10", spatial_dims=2, num_classes=2, spatial_size=[64]))
    resize = [t for t in cfg["validate"]["preprocessing"]["transforms"] if t["_target_"] == "Resized"]
    assert resize[0]["spatial_size"] == [64, 64] and cfg["spatial_size"] == [64, 64]
    seg = finetune_config(
        FinetuneSpec(backbone="resnet10", task="segmentation", spatial_dims=3, num_classes=2, patch_size=[32])
    )
    assert seg["patch_size"] == [32, 32, 32]
