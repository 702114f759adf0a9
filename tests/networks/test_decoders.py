"""Segmentation decoders: UNet-style over CNN/Swin stage maps, UNETR over ViT token maps, and the factory."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNETR

from monai_transfer.networks import StageInfo
from monai_transfer.networks.backbones import ViTBackbone
from monai_transfer.networks.decoders import (
    UNetDecoder,
    UNETRDecoder,
    create_decoder,
    decoder_kind,
    parse_feature_info,
)
from monai_transfer.networks.transfer_net import TransferNet

# (channels, stride) layouts of the kinds of encoders the decoder must serve
LAYOUTS = {
    "resnet": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
    "segresnet": [(16, 1), (32, 2), (64, 4), (128, 8)],  # first stage at full resolution: ratio 1 to the stem
    "repeated_stride": [(16, 2), (24, 4), (40, 8), (80, 16), (112, 16), (320, 32)],  # ratio 1 between stages
    "ratio_4": [(8, 2), (16, 8)],
    "single_stage": [(8, 4)],
}


def _features(layout, spatial, batch=2):
    return [torch.randn((batch, c) + tuple(s // stride for s in spatial)) for c, stride in layout]


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet_decoder_shapes(layout, spatial_dims):
    spatial = (64, 64) if spatial_dims == 2 else (32, 32, 64)
    info = LAYOUTS[layout]
    decoder = UNetDecoder(spatial_dims, in_channels=2, out_channels=4, feature_info=info).eval()
    assert decoder.needs_features is True
    x = torch.randn((2, 2) + spatial)
    with torch.no_grad():
        y = decoder(x, _features(info, spatial))
    assert y.shape == (2, 4) + spatial


def test_unet_decoder_default_widths_and_projections():
    decoder = UNetDecoder(2, 1, 3, LAYOUTS["resnet"], feature_size=16)
    # min(channels, 16 * stride, 256): a pyramid doubling with the stride
    assert decoder.decoder_channels == [32, 64, 128, 256, 256]
    assert decoder.stem_channels == 16
    # a skip is projected only where its channels differ from the decoder width
    kinds = [type(m).__name__ for m in decoder.skips]
    assert kinds == ["UnetResBlock", "Identity", "Identity", "Identity", "UnetResBlock"]
    custom = UNetDecoder(2, 1, 3, LAYOUTS["segresnet"], decoder_channels=(16, 32, 64, 128), stem_channels=8)
    assert all(type(m).__name__ == "Identity" for m in custom.skips)
    assert custom.out.conv.conv.in_channels == 8


def test_unet_decoder_upsampling_by_stride_ratio():
    decoder = UNetDecoder(2, 1, 3, LAYOUTS["repeated_stride"])
    # up_blocks run deepest first; the last one goes to the stride-1 stem
    ratios = [up.transp_conv.conv.stride[0] for up in decoder.up_blocks]
    assert ratios == [2, 1, 2, 2, 2, 2]
    assert type(decoder.up_blocks[1].transp_conv.conv).__name__ == "Conv2d"  # ratio 1: a plain 1x1 conv
    assert type(decoder.up_blocks[0].transp_conv.conv).__name__ == "ConvTranspose2d"


def test_unet_decoder_norm_act_dropout_are_configurable():
    decoder = UNetDecoder(3, 1, 2, LAYOUTS["ratio_4"], norm="batch", act="relu", dropout=0.1)
    names = {type(m).__name__ for m in decoder.modules()}
    assert {"BatchNorm3d", "ReLU", "Dropout"} <= names
    assert "InstanceNorm3d" not in names


def test_unet_decoder_rejects_bad_layouts_and_inputs():
    with pytest.raises(ValueError, match="powers of 2"):
        UNetDecoder(2, 1, 2, [(8, 2), (16, 6)])
    with pytest.raises(ValueError, match="non-decreasing"):
        UNetDecoder(2, 1, 2, [(8, 4), (16, 2)])
    with pytest.raises(ValueError, match="one width per stage"):
        UNetDecoder(2, 1, 2, [(8, 2), (16, 4)], decoder_channels=(8,))
    with pytest.raises(ValueError, match="spatial_dims"):
        UNetDecoder(1, 1, 2, [(8, 2)])
    with pytest.raises(ValueError, match="empty"):
        UNetDecoder(2, 1, 2, [])
    decoder = UNetDecoder(2, 1, 2, LAYOUTS["ratio_4"])
    with pytest.raises(ValueError, match="feature maps"):
        decoder(torch.randn(1, 1, 32, 32), _features(LAYOUTS["ratio_4"], (32, 32))[:1])
    with pytest.raises(ValueError, match="divisible"):
        decoder(torch.randn(1, 1, 36, 32), _features(LAYOUTS["ratio_4"], (36, 32)))


def test_parse_feature_info_accepts_json_forms():
    as_stages = [StageInfo("a", 8, 2), StageInfo("b", 16, 4)]
    as_dicts = [{"name": "a", "channels": 8, "stride": 2}, {"channels": 16, "stride": 4}]
    as_pairs = [[8, 2], (16, 4)]
    expected = [(8, 2), (16, 4)]
    for form in (as_stages, as_dicts, as_pairs):
        assert [(s.channels, s.stride) for s in parse_feature_info(form)] == expected
    with pytest.raises(ValueError):
        parse_feature_info([8])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unetr_decoder_shapes(spatial_dims):
    info = [(384, 16)] * 4
    spatial = (32,) * spatial_dims
    decoder = UNETRDecoder(spatial_dims, in_channels=1, out_channels=3, feature_info=info, feature_size=8).eval()
    with torch.no_grad():
        y = decoder(torch.randn((2, 1) + spatial), _features(info, spatial))
    assert y.shape == (2, 3) + spatial


def test_unetr_decoder_generalises_map_count_and_patch():
    # three maps at stride 8: skips at strides 2 and 4, then x2 up from 8
    info = [(32, 8)] * 3
    decoder = UNETRDecoder(2, 1, 2, info, feature_size=4).eval()
    with torch.no_grad():
        assert decoder(torch.randn(1, 1, 16, 16), _features(info, (16, 16), 1)).shape == (1, 2, 16, 16)
    # four maps at stride 32: the deepest goes up x4 first
    assert UNETRDecoder(2, 1, 2, [(32, 32)] * 4, feature_size=4).up_blocks[0].transp_conv.conv.stride == (4, 4)


def test_unetr_decoder_rejects_bad_layouts():
    with pytest.raises(ValueError, match="equal channels and stride"):
        UNETRDecoder(2, 1, 2, [(32, 16), (32, 8)])
    with pytest.raises(ValueError, match="at least 2\\*\\*4"):
        UNETRDecoder(2, 1, 2, [(32, 8)] * 4)
    with pytest.raises(ValueError, match="at least two"):
        UNETRDecoder(2, 1, 2, [(32, 16)])
    decoder = UNETRDecoder(2, 1, 2, [(32, 16)] * 4, feature_size=4)
    with pytest.raises(ValueError, match="divisible"):
        decoder(torch.randn(1, 1, 40, 32), [torch.randn(1, 32, 2, 2)] * 4)


def test_unetr_decoder_reproduces_monai_unetr():
    """With a MONAI UNETR's weights (keys renamed), ViT + UNETRDecoder computes exactly what UNETR does."""
    torch.manual_seed(0)
    reference = UNETR(
        in_channels=1,
        out_channels=3,
        img_size=32,
        feature_size=8,
        hidden_size=384,
        mlp_dim=1536,
        num_heads=6,
        qkv_bias=True,
        spatial_dims=2,
    ).eval()
    backbone = ViTBackbone(
        "small", spatial_dims=2, img_size=32, global_pool="avg", out_indices=(3, 6, 9, 11), layer_norm_eps=1e-5
    )
    head = UNETRDecoder(2, 1, 3, backbone.feature_info, feature_size=8)
    net = TransferNet(backbone, head).eval()
    renames = {"vit": "backbone", "encoder1": "head.stem", "out": "head.out"}
    renames.update({f"encoder{i}": f"head.skips.{i - 2}" for i in (2, 3, 4)})
    renames.update({f"decoder{i}": f"head.up_blocks.{5 - i}" for i in (5, 4, 3, 2)})
    state = {}
    for key, value in reference.state_dict().items():
        first, rest = key.split(".", 1)
        state[f"{renames[first]}.{rest}"] = value
    net.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x))


def test_factory_picks_decoder_from_strides():
    vit_info = [StageInfo(f"blocks.{i}", 384, 16) for i in (2, 5, 8, 11)]
    swin_info = [StageInfo("p", 48, 2)] + [StageInfo(f"l{i}", 48 * 2**i, 2 ** (i + 1)) for i in range(1, 5)]
    assert decoder_kind(vit_info) == "unetr"
    assert decoder_kind(swin_info) == "unet"
    assert decoder_kind(LAYOUTS["single_stage"]) == "unet"
    assert isinstance(create_decoder(2, 1, 2, vit_info), UNETRDecoder)
    assert isinstance(create_decoder(2, 1, 2, swin_info), UNetDecoder)
    # a UNet decoder also serves a ViT (all ratios 1, then one x16 up to the stem)
    assert isinstance(create_decoder(2, 1, 2, vit_info, kind="unet", feature_size=8), UNetDecoder)
    with pytest.raises(ValueError, match="decoder kind"):
        create_decoder(2, 1, 2, vit_info, kind="fpn")


@pytest.mark.parametrize("kind, info", [("unet", LAYOUTS["repeated_stride"]), ("unetr", [(64, 16)] * 4)])
def test_decoders_script(kind, info):
    decoder = create_decoder(2, 1, 2, info, kind=kind, feature_size=8).eval()
    scripted = torch.jit.script(decoder)
    x = torch.randn(1, 1, 64, 64)
    feats = _features(info, (64, 64), 1)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x, feats), decoder(x, feats))
