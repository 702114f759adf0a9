"""ResNet ``norm`` reaches every block (MONAI 1.6's ResNet applies it to the stem only)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_transfer.networks import create_backbone


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_group_norm_replaces_every_batch_norm_and_keeps_the_keys(spatial_dims):
    batch = create_backbone("resnet10", spatial_dims=spatial_dims)
    group = create_backbone("resnet10", spatial_dims=spatial_dims, norm=("group", {"num_groups": 8}))
    kinds = {type(m) for m in group.modules() if isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm))}
    assert kinds == {nn.GroupNorm}
    # group norm has no running statistics; every other key of the MONAI layout is unchanged
    stats = {k for k in batch.state_dict() if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert set(group.state_dict()) == set(batch.state_dict()) - stats
    out = group(torch.randn(2, 1, *([32] * spatial_dims)))
    assert out.shape == (2, group.num_features)
