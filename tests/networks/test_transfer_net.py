"""TransferNet over the whole registry (every backbone x task x spatial_dims) and its builder."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from network_cases import backbone_kwargs, make_input, transfer_cases

from monai_transfer.networks import create_backbone, get_backbone_config
from monai_transfer.networks.base import stage_of_key
from monai_transfer.networks.decoders import UNetDecoder, UNETRDecoder
from monai_transfer.networks.export import export_onnx, export_torchscript
from monai_transfer.networks.heads import ClassificationHead
from monai_transfer.networks.transfer_net import TransferNet, create_transfer_net

NUM_CLASSES = 3
# MONAI's SwinTransformer does not script. Swin segmentation networks (SwinUNETR's use) are exported to ONNX; Swin
# classifiers are traced, as MONAI's swin_unetr bundles export TorchScript, which keeps the suite within its time
# budget (scripts/make_export_table.py exports all four to ONNX too). Every other network scripts.
NOT_SCRIPTABLE = {"swin"}


def _build(name, spatial_dims, task, seed=0):
    torch.manual_seed(seed)
    return create_transfer_net(
        name,
        task=task,
        spatial_dims=spatial_dims,
        in_channels=1,
        num_classes=NUM_CLASSES,
        backbone_kwargs=backbone_kwargs(name),
    ).eval()


@pytest.fixture(scope="module", params=transfer_cases())
def built(request):
    """One network per case, built and run once; pytest groups the tests of a case around it."""
    name, spatial_dims, task = request.param
    net = _build(name, spatial_dims, task)
    x = make_input(name, spatial_dims, task)
    with torch.no_grad():
        y = net(x)
    return name, spatial_dims, task, net, x, y


def test_forward_shape(built):
    name, spatial_dims, task, net, x, y = built
    if task == "classification":
        assert isinstance(net.head, ClassificationHead)
        assert y.shape == (x.shape[0], NUM_CLASSES)
    else:
        expected = UNETRDecoder if get_backbone_config(name).family in ("vit", "sam") else UNetDecoder
        assert isinstance(net.head, expected)
        assert y.shape == (x.shape[0], NUM_CLASSES) + tuple(x.shape[2:])
    assert torch.isfinite(y).all()
    assert (net.task, net.spatial_dims, net.in_channels) == (task, spatial_dims, 1)


def test_state_dict_round_trip(built):
    name, spatial_dims, task, net, x, y = built
    state = net.state_dict()
    assert {k.split(".", 1)[0] for k in state} == {"backbone", "head"}
    fresh = _build(name, spatial_dims, task, seed=1)
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), y)


def test_export(built, tmp_path):
    name, _, task, net, x, y = built
    if get_backbone_config(name).family in NOT_SCRIPTABLE:
        if task == "segmentation":
            path = export_onnx(net, x, tmp_path / "net.onnx")  # checker + onnxruntime comparison inside
            assert path.stat().st_size > 0
        else:
            export_torchscript(net, x, method="trace")  # verified on two batch sizes inside
        return
    module = export_torchscript(net, x, method="script")  # raises ExportError if outputs differ from eager
    with torch.no_grad():
        torch.testing.assert_close(module(x), y, rtol=1e-3, atol=1e-4)


def test_builder_argument_checks():
    with pytest.raises(ValueError, match="task"):
        create_transfer_net("resnet10", task="detection", num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        create_transfer_net("resnet10")
    with pytest.raises(ValueError, match="disagree"):
        create_transfer_net("resnet10", task="segmentation", num_classes=2, out_channels=3)
    with pytest.raises(ValueError, match="in_channels"):
        create_transfer_net("resnet10", in_channels=0, num_classes=2)
    with pytest.raises(ValueError, match="spatial_dims"):
        create_transfer_net("resnet10", spatial_dims=1, num_classes=2)
    with pytest.raises(TypeError):
        create_transfer_net(18, num_classes=2)
    backbone = create_backbone("segresnet", spatial_dims=2)
    with pytest.raises(ValueError, match="spatial_dims"):
        create_transfer_net(backbone, spatial_dims=3, num_classes=2)
    with pytest.raises(ValueError, match="built backbone"):
        create_transfer_net(backbone, pretrained="torchvision-imagenet1k-v1", num_classes=2)


def test_builder_with_module_out_channels_and_head_kwargs():
    backbone = create_backbone("segresnet", spatial_dims=2, in_channels=2)
    net = create_transfer_net(backbone, task="segmentation", out_channels=4, head_kwargs={"feature_size": 8})
    assert net.backbone is backbone and net.in_channels == 2
    assert net.head.stem_channels == 8
    assert net(torch.randn(1, 2, 32, 32)).shape == (1, 4, 32, 32)
    net = create_transfer_net(
        "segresnet", num_classes=5, head_kwargs={"hidden_dims": (32,), "dropout": 0.2, "multi_label": True}
    )
    assert net.head.hidden_dims == (32,) and net.head.multi_label
    net = create_transfer_net(
        "vit_small_patch16",
        task="segmentation",
        num_classes=2,
        backbone_kwargs={"img_size": 32},
        head_kwargs={"kind": "unet", "feature_size": 8},
    )
    assert isinstance(net.head, UNetDecoder)
    assert TransferNet.from_config(backbone="segresnet", num_classes=2).head.num_classes == 2


def test_transfer_net_checks_head_against_backbone():
    backbone = create_backbone("segresnet", spatial_dims=2)
    with pytest.raises(ValueError, match="num_features"):
        TransferNet(backbone, ClassificationHead(backbone.num_features + 1, 2))
    with pytest.raises(ValueError, match="stages"):
        TransferNet(backbone, UNetDecoder(2, 1, 2, [(16, 1), (32, 2)]))
    with pytest.raises(ValueError, match="spatial_dims"):
        TransferNet(backbone, UNetDecoder(3, 1, 2, backbone.feature_info))
    with pytest.raises(ValueError, match="lacks"):
        TransferNet(torch.nn.Conv2d(1, 1, 1), ClassificationHead(1, 2))


def test_bundle_network_def_builds_from_json():
    config = {
        "num_classes": 2,
        "network_def": {
            "_target_": "monai_transfer.networks.create_transfer_net",
            "backbone": "segresnet",
            "task": "segmentation",
            "spatial_dims": 3,
            "in_channels": 1,
            "num_classes": "@num_classes",
            "head_kwargs": {"feature_size": 8, "norm": ["batch", {"momentum": 0.05}]},
        },
        "composed": {
            "_target_": "monai_transfer.networks.TransferNet",
            "backbone": {"_target_": "monai_transfer.networks.create_backbone", "name": "resnet10", "spatial_dims": 2},
            "head": {"_target_": "monai_transfer.networks.ClassificationHead", "in_features": 512, "num_classes": 4},
        },
    }
    parser = ConfigParser(config)
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, TransferNet) and net.task == "segmentation"
    assert net(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)
    composed = parser.get_parsed_content("composed")
    assert composed.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_param_stages_and_backbone_transfer():
    net = create_transfer_net("segresnet", task="segmentation", spatial_dims=2, num_classes=2)
    stages = net.param_stages()
    assert list(stages)[-1] == "head" and all(k.startswith("backbone.") for k in list(stages)[:-1])
    assert all(stage_of_key(k, stages) != "other" for k in net.state_dict())
    # a backbone checkpoint loads into net.backbone, and the fine-tuned backbone comes back out
    source = create_backbone("segresnet", spatial_dims=2)
    net.backbone.load_state_dict(source.state_dict(), strict=True)
    extracted = {k[len("backbone.") :]: v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    create_backbone("segresnet", spatial_dims=2).load_state_dict(extracted, strict=True)


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_training_step_updates_backbone_and_head(task):
    torch.manual_seed(0)
    net = create_transfer_net("resnet10", task=task, spatial_dims=2, num_classes=2).train()
    x = torch.randn(2, 1, 64, 64)
    if task == "classification":
        loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1]))
    else:
        loss = torch.nn.functional.cross_entropy(net(x), torch.randint(0, 2, (2, 64, 64)))
    loss.backward()
    assert net.backbone.conv1.weight.grad is not None and net.backbone.conv1.weight.grad.abs().sum() > 0
    head_grads = [p.grad for p in net.head.parameters()]
    assert all(g is not None for g in head_grads)


def test_pretrained_checkpoint_goes_into_the_backbone(tmp_path):
    source = create_backbone("segresnet", spatial_dims=2)
    torch.save(source.state_dict(), tmp_path / "backbone.pt")
    net = create_transfer_net(
        "segresnet", task="segmentation", spatial_dims=2, num_classes=2, pretrained=str(tmp_path / "backbone.pt")
    )
    assert net.backbone.load_report is not None
    for key, value in source.state_dict().items():
        torch.testing.assert_close(net.state_dict()[f"backbone.{key}"], value)
