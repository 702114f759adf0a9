"""Weight surgery: 2D -> 3D inflation, input-channel adaptation and position-embedding resampling, each checked
against the response its rule predicts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_transfer.networks import create_backbone
from monai_transfer.weights import (
    adapt_input_channels,
    inflate_state_dict,
    inflate_weight,
    load_pretrained,
    resample_position_embedding,
)


@pytest.fixture(scope="module")
def resnet18_2d():
    torch.manual_seed(0)
    net = create_backbone("resnet18", spatial_dims=2, in_channels=1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def grey_volume():
    torch.manual_seed(1)
    image = torch.randn(1, 1, 32, 32)
    return image, image.unsqueeze(-1).repeat(1, 1, 1, 1, 16)  # constant along depth (last axis)


@pytest.mark.parametrize("mode", ["mean", "centre"])
def test_inflated_resnet18_first_stage(mode, resnet18_2d, grey_volume, all_loaded):
    image, volume = grey_volume
    net3d = create_backbone("resnet18", spatial_dims=3, in_channels=1)
    report = load_pretrained(net3d, resnet18_2d.state_dict(), inflate_mode=mode)
    net3d.eval()
    all_loaded(report)
    assert report.adapted["conv1.weight"] == f"inflated 2D->3D ({mode}, depth 7)"
    assert report.adapted["layer1.0.conv1.weight"] == f"inflated 2D->3D ({mode}, depth 3)"
    with torch.no_grad():
        conv2d = resnet18_2d.conv1(image)  # (1, 64, 16, 16)
        conv3d = net3d.conv1(volume)  # (1, 64, 16, 16, 8): stride 2, padding 3, kernel depth 7
        stage2d = resnet18_2d.forward_intermediates(image)[0]
        stage3d = net3d.forward_intermediates(volume)[0]
    assert conv3d.shape == (1, 64, 16, 16, 8)
    # output slice d sees input slices 2d-3 .. 2d+3; those outside [0, 15] are zero padding
    interior = [d for d in range(8) if 2 * d - 3 >= 0 and 2 * d + 3 <= 15]
    for d in range(8):
        valid = sum(0 <= 2 * d + k <= 15 for k in range(-3, 4))
        scale = 1.0 if mode == "centre" else valid / 7  # "mean": the fraction of the kernel inside the volume
        torch.testing.assert_close(conv3d[..., d], conv2d * scale, atol=1e-5, rtol=1e-4)
        if d in interior or mode == "centre":
            torch.testing.assert_close(stage3d[..., d], stage2d, atol=1e-5, rtol=1e-4)
    if mode == "mean":
        assert not torch.allclose(conv3d[..., 0], conv2d, atol=1e-3)  # the border effect is real


def test_inflate_weight_rules():
    w = torch.randn(4, 2, 3, 3)
    mean = inflate_weight(w, 5, "mean")
    centre = inflate_weight(w, 5, "centre")
    assert mean.shape == centre.shape == (4, 2, 3, 3, 5)
    torch.testing.assert_close(mean.sum(-1), w)
    torch.testing.assert_close(centre[..., 2], w)
    assert centre[..., [0, 1, 3, 4]].abs().max() == 0
    first = inflate_weight(w, 5, "centre", axis=0)  # depth as the first spatial axis
    assert first.shape == (4, 2, 5, 3, 3)
    torch.testing.assert_close(first[:, :, 2], w)
    with pytest.raises(ValueError, match="mode"):
        inflate_weight(w, 5, "zeros")


def test_inflate_state_dict_reads_depth_from_target():
    src = {"conv.weight": torch.randn(8, 3, 3, 3), "bn.weight": torch.randn(8)}
    tgt = {"conv.weight": torch.zeros(8, 3, 3, 3, 1), "bn.weight": torch.zeros(8)}
    out, adapted = inflate_state_dict(src, tgt, mode="mean")
    assert out["conv.weight"].shape == (8, 3, 3, 3, 1)
    torch.testing.assert_close(out["conv.weight"][..., 0], src["conv.weight"])
    assert out["bn.weight"] is src["bn.weight"] and list(adapted) == ["conv.weight"]


def test_rgb_to_grey_sums_kernels(all_loaded):
    torch.manual_seed(2)
    rgb = create_backbone("resnet18", spatial_dims=2, in_channels=3).eval()
    grey = create_backbone("resnet18", spatial_dims=2, in_channels=1).eval()
    report = load_pretrained(grey, rgb.state_dict())
    all_loaded(report)
    assert report.adapted["conv1.weight"] == "in_channels 3->1 (sum)"
    torch.testing.assert_close(grey.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    image = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey.conv1(image), rgb.conv1(image.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(grey(image), rgb(image.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)


def test_grey_to_rgb_repeats_and_rescales(all_loaded):
    torch.manual_seed(3)
    grey = create_backbone("resnet18", spatial_dims=2, in_channels=1).eval()
    rgb = create_backbone("resnet18", spatial_dims=2, in_channels=3).eval()
    report = load_pretrained(rgb, grey.state_dict())
    all_loaded(report)
    torch.testing.assert_close(rgb.conv1.weight, grey.conv1.weight.repeat(1, 3, 1, 1) / 3)
    image = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb.conv1(image.repeat(1, 3, 1, 1)), grey.conv1(image), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("m, n", [(3, 1), (1, 3), (3, 2), (3, 5), (2, 4), (4, 4)])
def test_channel_rule_preserves_equal_channel_response(m, n):
    torch.manual_seed(m * 10 + n)
    w = torch.randn(6, m, 3, 3)
    adapted = adapt_input_channels(w, n)
    assert adapted.shape == (6, n, 3, 3)
    torch.testing.assert_close(adapted.sum(1), w.sum(1))  # the kernel summed over channels is kept
    plane = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(
        F.conv2d(plane.repeat(1, n, 1, 1), adapted), F.conv2d(plane.repeat(1, m, 1, 1), w), atol=1e-5, rtol=1e-4
    )


def test_position_embedding_resampling():
    torch.manual_seed(4)
    pos = torch.randn(1, 1 + 16, 8)
    assert torch.equal(resample_position_embedding(pos, (4, 4), (4, 4), num_prefix_tokens=1), pos)
    smaller = resample_position_embedding(pos, (4, 4), (2, 2), num_prefix_tokens=1)
    assert smaller.shape == (1, 5, 8) and torch.equal(smaller[:, :1], pos[:, :1])
    volume = resample_position_embedding(pos[:, 1:], (4, 4), (4, 4, 3))
    grid = volume.reshape(4, 4, 3, 8)
    for d in range(3):  # 2D -> 3D: the in-plane embeddings, repeated along depth
        torch.testing.assert_close(grid[:, :, d].reshape(1, 16, 8), pos[:, 1:])
    cube = resample_position_embedding(torch.randn(1, 27, 8), (3, 3, 3), (2, 2, 2))
    assert cube.shape == (1, 8, 8)
    with pytest.raises(ValueError, match="do not match"):
        resample_position_embedding(pos, (5, 5), (2, 2))
