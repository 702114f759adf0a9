"""Checkpoints built in the exact key layout and shapes of published files, written to disk and loaded back:
every module key must land (nothing missing, every stage at 1.0) with the published values."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from monai.networks import nets as monai_nets
from monai.networks.nets.swin_unetr import filter_swinunetr
from monai.networks.utils import copy_model_state
from torch import nn

from monai_transfer.networks import create_backbone
from monai_transfer.weights import UnsafeCheckpointError, load_pretrained, source_backbone_kwargs

torchvision = pytest.importorskip("torchvision")


def _assert_values(module: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, msg=lambda m, key=key: f"{key}: {m}")


# ---------------------------------------------------------------- SwinUNETR self-supervised weights (Tang et al.)


def _swin_ssl_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model_swinvit.pt``: {"state_dict": {"module.<key>"}}, MLPs named fc1/fc2, plus a final norm."""
    out = {}
    for k, v in state.items():
        k = k.replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2.")
        out["module." + k] = v.clone()
    width = state["layers4.0.downsample.reduction.weight"].shape[0]
    out["module.norm.weight"] = torch.rand(width)
    out["module.norm.bias"] = torch.rand(width)
    return out


def test_swinunetr_ssl_model_swinvit(randomize, save_checkpoint, all_loaded):
    reference = randomize(create_backbone("swin_unetr", spatial_dims=3, in_channels=1), seed=3)
    published = _swin_ssl_layout(reference.state_dict())
    assert "module.layers1.0.blocks.0.mlp.fc1.weight" in published
    path = save_checkpoint({"state_dict": published}, "model_swinvit.pt")

    # the layout is the one MONAI's own SwinUNETR.load_from reads
    swin_unetr = monai_nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=48)
    swin_unetr.load_from(torch.load(path, weights_only=True))
    _assert_values(swin_unetr.swinViT, reference.state_dict())

    ours = create_backbone("swin_unetr", spatial_dims=3, in_channels=1)
    report = load_pretrained(ours, path, source="auto")
    assert report.adapter == "swinunetr"
    all_loaded(report)
    assert sorted(report.dropped) == ["module.norm.bias", "module.norm.weight"]
    _assert_values(ours, reference.state_dict())


@pytest.fixture(scope="module")
def small_swin_unetr():
    torch.manual_seed(0)
    net = monai_nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=12).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


@pytest.mark.parametrize("source", [None, "monai"])
def test_swinunetr_bundle_swinvit_prefix(source, small_swin_unetr, tmp_path, all_loaded):
    bundle = tmp_path / "swin_unetr_bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    (bundle / "configs" / "metadata.json").write_text("{}")
    torch.save(small_swin_unetr.state_dict(), bundle / "models" / "model.pt")

    ours = create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=12)
    report = load_pretrained(ours, bundle, source=source)
    assert report.adapter == ("swinunetr" if source is None else "monai")
    all_loaded(report)
    assert report.checkpoint.endswith("model.pt")
    assert any(k.startswith("decoder1.") for k in report.dropped)
    assert not any(k.startswith("swinViT.") for k in report.dropped)
    _assert_values(ours, {k[8:]: v for k, v in small_swin_unetr.state_dict().items() if k.startswith("swinViT.")})


def test_swinunetr_encoder_outputs_match(all_loaded):
    """Same maps as SwinUNETR's own encoder after loading its state dict (2D to keep the test fast)."""
    torch.manual_seed(1)
    net = monai_nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = create_backbone("swin_unetr", spatial_dims=2, in_channels=1, feature_size=12).eval()
    all_loaded(load_pretrained(ours, net.state_dict()))
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        expected, got = net.swinViT(x, True), ours.forward_intermediates(x)
    assert len(got) == len(expected) == 5
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_swinunetr_swin_vit_old_prefix(small_swin_unetr, save_checkpoint, all_loaded):
    old = {k.replace("swinViT.", "swin_vit."): v for k, v in small_swin_unetr.state_dict().items()}
    path = save_checkpoint({"state_dict": old, "epoch": 5})
    ours = create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=12)
    all_loaded(load_pretrained(ours, path))
    _assert_values(ours, {k[8:]: v for k, v in small_swin_unetr.state_dict().items() if k.startswith("swinViT.")})


def test_swinunetr_filter_layout(randomize, save_checkpoint, all_loaded):
    """The ``encoder.layersN.0.0.`` layout that ``monai...swin_unetr.filter_swinunetr`` reads."""
    reference = randomize(create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=12), seed=4)
    published = {}
    for k, v in reference.state_dict().items():
        nested = k if k.startswith("patch_embed") else k.replace(".0.", ".0.0.", 1)
        published["encoder." + nested] = v
    published["encoder.mask_token"] = torch.zeros(1, 1, 12)
    published["encoder.norm.weight"] = torch.ones(192)
    published["encoder.norm.bias"] = torch.zeros(192)
    published["out.conv.conv.weight"] = torch.rand(1, 12, 1, 1, 1)
    published["out.conv.conv.bias"] = torch.rand(1)
    assert "encoder.layers2.0.0.blocks.1.attn.qkv.weight" in published
    path = save_checkpoint({"model": published})

    swin_unetr = monai_nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=12)
    copy_model_state(swin_unetr, published, filter_func=filter_swinunetr)  # MONAI reads the same layout
    _assert_values(swin_unetr.swinViT, reference.state_dict())

    ours = create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=12)
    report = load_pretrained(ours, path)
    assert report.adapter == "swinunetr"
    all_loaded(report)
    assert len(report.dropped) == 5
    _assert_values(ours, reference.state_dict())


# ---------------------------------------------------------------- MedicalNet (Chen et al., 2019)


@pytest.mark.parametrize("depth, shortcut, drop_counters", [(10, "B", False), (10, "B", True), (18, "A", False)])
def test_medicalnet(depth, shortcut, drop_counters, randomize, save_checkpoint, all_loaded):
    # MONAI's own MedicalNet loading builds these networks and loads {"state_dict": {"module.*"}} strictly
    factory = getattr(monai_nets, f"resnet{depth}")
    reference = factory(
        spatial_dims=3,
        n_input_channels=1,
        feed_forward=False,
        shortcut_type=shortcut,
        bias_downsample=shortcut == "A",
    )
    if depth == 10:  # (the 3D ResNet-18 is large: its default init is random enough for a layout test)
        reference = randomize(reference, seed=depth)
    published = {"module." + k: v for k, v in reference.state_dict().items()}
    if drop_counters:  # files written by older PyTorch have no num_batches_tracked
        published = {k: v for k, v in published.items() if not k.endswith("num_batches_tracked")}
    assert any("downsample" in k for k in published) == (shortcut == "B")
    path = save_checkpoint({"state_dict": published}, f"resnet_{depth}_23dataset.pth")

    kwargs = source_backbone_kwargs("medicalnet-23datasets", f"resnet{depth}")
    assert kwargs["shortcut_type"] == shortcut
    ours = create_backbone(f"resnet{depth}", spatial_dims=3, in_channels=1, **kwargs)
    report = load_pretrained(ours, path)
    assert report.adapter == "medicalnet"
    all_loaded(report)
    assert all(k.endswith("num_batches_tracked") for k in report.defaulted)
    assert bool(report.defaulted) == drop_counters
    _assert_values(ours, {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")})


def test_medicalnet_resnet18_needs_shortcut_a(randomize, save_checkpoint):
    reference = monai_nets.resnet18(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type="A")
    path = save_checkpoint({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}})
    ours = create_backbone("resnet18", spatial_dims=3, in_channels=1)  # shortcut B: has downsample parameters
    with pytest.raises(RuntimeError, match=r"layer2\.0\.downsample\.0\.weight"):
        load_pretrained(ours, path)


# ---------------------------------------------------------------- lightly / solo-learn Lightning checkpoints


def _tv_resnet18(seed: int, randomize) -> nn.Module:
    torch.manual_seed(seed)
    return randomize(torchvision.models.resnet18(weights=None), seed=seed)


def test_lightly_sequential_backbone(randomize, save_checkpoint, all_loaded):
    from lightly.models.modules import SimCLRProjectionHead

    class SimCLR(nn.Module):  # lightly's tutorial model, as a LightningModule would hold it
        def __init__(self, resnet: nn.Module) -> None:
            super().__init__()
            self.backbone = nn.Sequential(*list(resnet.children())[:-1])
            self.projection_head = SimCLRProjectionHead(512, 512, 128)

    model = SimCLR(_tv_resnet18(5, randomize)).eval()
    assert "backbone.4.0.conv1.weight" in model.state_dict()
    path = save_checkpoint({"state_dict": model.state_dict(), "epoch": 3, "global_step": 30}, "simclr.ckpt")
    ours = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = load_pretrained(ours, path, source="auto")
    ours.eval()
    assert report.adapter == "lightning-ssl"
    all_loaded(report)
    assert report.dropped and all(k.startswith("projection_head.") for k in report.dropped)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), model.backbone(x).flatten(1), atol=1e-4, rtol=1e-4)


def test_lightly_plain_backbone_with_momentum(randomize, save_checkpoint, all_loaded):
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

    class BYOL(nn.Module):
        def __init__(self, resnet: nn.Module) -> None:
            super().__init__()
            resnet.fc = nn.Identity()
            self.backbone = resnet
            self.projection_head = BYOLProjectionHead(512, 64, 32)
            self.prediction_head = BYOLPredictionHead(32, 64, 32)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)

    model = BYOL(_tv_resnet18(6, randomize))
    path = save_checkpoint({"state_dict": model.state_dict()}, "byol.ckpt")
    ours = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = load_pretrained(ours, path)
    all_loaded(report)
    prefixes = {k.split(".")[0] for k in report.dropped}
    assert prefixes == {"projection_head", "prediction_head", "backbone_momentum", "projection_head_momentum"}
    _assert_values(ours, {k[len("backbone.") :]: v for k, v in model.state_dict().items() if k.startswith("backbone.")})


def test_solo_learn_checkpoint(randomize, save_checkpoint, all_loaded):
    resnet = _tv_resnet18(7, randomize)
    resnet.fc = nn.Identity()
    backbone = {"backbone." + k: v for k, v in resnet.state_dict().items()}
    heads = {
        "projector.0.weight": torch.rand(2048, 512),
        "projector.0.bias": torch.rand(2048),
        "projector.3.weight": torch.rand(256, 2048),
        "classifier.weight": torch.rand(10, 512),
        "classifier.bias": torch.rand(10),
        "momentum_projector.0.weight": torch.rand(2048, 512),
    }
    momentum = {"momentum_backbone." + k: v + 1 for k, v in resnet.state_dict().items()}
    path = save_checkpoint({"state_dict": {**backbone, **heads, **momentum}, "epoch": 399}, "byol-solo.ckpt")
    ours = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = load_pretrained(ours, path)
    assert report.adapter == "lightning-ssl"
    all_loaded(report)
    assert len(report.dropped) == len(heads) + len(momentum)
    _assert_values(ours, resnet.state_dict())


# ---------------------------------------------------------------- TorchXRayVision DenseNet-121


def _xrv_densenet(randomize) -> nn.Module:
    torch.manual_seed(8)
    model = torchvision.models.densenet121(weights=None)
    model.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.classifier = nn.Linear(1024, 18)
    model.register_buffer("op_threshs", torch.rand(18))
    return randomize(model, seed=8)


def test_torchxrayvision_state_dict(randomize, save_checkpoint, all_loaded):
    model = _xrv_densenet(randomize)
    path = save_checkpoint(model.state_dict(), "xrv_densenet121_all.pt")
    ours = create_backbone("densenet121", spatial_dims=2, in_channels=1)
    report = load_pretrained(ours, path)
    ours.eval()
    assert report.adapter == "torchxrayvision-densenet"
    all_loaded(report)
    assert sorted(report.dropped) == ["classifier.bias", "classifier.weight", "op_threshs"]
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = F.adaptive_avg_pool2d(F.relu(model.features(x)), 1).flatten(1)
        torch.testing.assert_close(ours.forward_features(x), expected, atol=1e-4, rtol=1e-4)


def test_torchxrayvision_pickled_model_refused(save_checkpoint):
    # TorchXRayVision publishes its weights as a whole pickled model, torch.save(model)
    path = save_checkpoint(torchvision.models.densenet121(weights=None), "whole_model.pt")
    ours = create_backbone("densenet121", spatial_dims=2, in_channels=1)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(UnsafeCheckpointError, match=r"(?s)weights_only=True.*TorchXRayVision.*state_dict\(\)"):
        load_pretrained(ours, path)
    _assert_values(ours, before)


# ---------------------------------------------------------------- MONAI bundle with a classifier


def test_monai_densenet_bundle(randomize, tmp_path, all_loaded):
    net = randomize(monai_nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=3), seed=9)
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    torch.save(net.state_dict(), tmp_path / "bundle" / "models" / "model.pt")
    ours = create_backbone("densenet121", spatial_dims=2, in_channels=1)
    report = load_pretrained(ours, tmp_path / "bundle")
    assert report.adapter == "monai"
    all_loaded(report)
    assert sorted(report.dropped) == ["class_layers.out.bias", "class_layers.out.weight"]
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        expected = net.class_layers.pool(net.class_layers.relu(net.features(x))).flatten(1)
        torch.testing.assert_close(ours.eval().forward_features(x), expected)
