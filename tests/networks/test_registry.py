"""Contract test over the whole backbone registry: every name, every spatial_dims it supports."""

from __future__ import annotations

import pytest
import torch
from network_cases import backbone_kwargs, make_input, registry_cases

from monai_transfer.networks import create_backbone, get_backbone_config, list_backbones
from monai_transfer.networks.base import StageInfo, stage_of_key

CASES = registry_cases()


@pytest.fixture(scope="module", params=CASES)
def built(request):
    """One backbone per case, built once; pytest groups the tests of a case around it."""
    name, spatial_dims = request.param
    torch.manual_seed(0)
    model = create_backbone(name, spatial_dims=spatial_dims, in_channels=1, **backbone_kwargs(name)).eval()
    x = make_input(name, spatial_dims)
    with torch.no_grad():
        maps = model.forward_intermediates(x)
        features = model.forward_features(x)
    return name, spatial_dims, model, x, maps, features


def test_registry_is_not_empty_and_sorted():
    names = list_backbones()
    assert names == sorted(names)
    for expected in ("resnet18", "densenet121", "efficientnet_b0", "vit_small_patch16", "swin_unetr", "segresnet"):
        assert expected in names
    assert list_backbones("resnet*") == ["resnet10", "resnet18", "resnet34", "resnet50"]
    assert set(list_backbones(spatial_dims=3)) <= set(names)


def test_feature_info_matches_intermediates(built):
    _, spatial_dims, model, x, maps, _ = built
    assert model.spatial_dims == spatial_dims and model.in_channels == 1
    assert all(isinstance(s, StageInfo) for s in model.feature_info)
    assert len(maps) == len(model.feature_info)
    strides = [s.stride for s in model.feature_info]
    assert strides == sorted(strides), "stages run shallow to deep"
    for stage, fmap in zip(model.feature_info, maps):
        assert fmap.shape[:2] == (x.shape[0], stage.channels), stage
        assert tuple(fmap.shape[2:]) == tuple(s // stage.stride for s in x.shape[2:]), stage


def test_num_features_and_forward(built):
    name, _, model, x, _, features = built
    assert model.num_features == get_backbone_config(name).num_features
    assert features.shape == (x.shape[0], model.num_features)
    assert torch.isfinite(features).all()
    with torch.no_grad():
        torch.testing.assert_close(model(x), features)


def test_param_stages_cover_every_tensor(built):
    model = built[2]
    stages = model.param_stages()
    assert list(stages) == model.stage_names()
    orphans = [k for k in model.state_dict() if stage_of_key(k, stages) == "other"]
    assert not orphans


def test_state_dict_round_trip(built):
    name, spatial_dims, model, x, maps, features = built
    torch.manual_seed(1)
    fresh = create_backbone(name, spatial_dims=spatial_dims, in_channels=1, **backbone_kwargs(name)).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh.forward_features(x), features)
        torch.testing.assert_close(fresh.forward_intermediates(x)[-1], maps[-1])


def test_bad_inputs_raise_value_error(built):
    model, x = built[2], built[3]
    with pytest.raises(ValueError):
        model.forward_features(torch.cat([x, x], dim=1))  # in_channels mismatch
    with pytest.raises(ValueError):
        model.forward_features(x[:, 0])  # missing channel axis


@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("spatial_dims", [1, 4])
def test_unsupported_spatial_dims_raise_value_error(name, spatial_dims):
    with pytest.raises(ValueError, match="spatial_dims"):
        create_backbone(name, spatial_dims=spatial_dims)


@pytest.mark.parametrize("in_channels", [0, -1, 1.5])
def test_invalid_in_channels_raise_value_error(in_channels):
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        create_backbone("resnet18", spatial_dims=2, in_channels=in_channels)
