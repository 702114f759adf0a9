"""The weight doctor (issue 24) on checkpoints saved in the exact key layouts and containers of lightly, solo-learn,
MMPretrain/MMSelfSup, ``DataParallel``, Lightning and a fine-tuned SwinUNETR: each reaches full encoder coverage and
its converted file loads strictly through the fine-tuning network's ``pretrained=``; a checkpoint that fits no
backbone is refused with the reason; ambiguous pairings are reported, not taken; inflation happens only when asked.

The stand-ins are real networks (torchvision ResNet-18, lightly's projection head, MONAI's SwinUNETR at
``feature_size=12``) with random weights, saved as those libraries save them (layouts read from their sources:
lightly's ``nn.Sequential(*list(resnet.children())[:-1])`` backbone and ``projection_head.layers.*``; solo-learn's
``backbone.*`` with ``fc = Identity()``, ``projector``, ``momentum_backbone``, ``classifier``; MMPretrain's
``{"meta", "state_dict"}`` with ``backbone.*`` in torchvision names, ``neck.*`` and ``head.fc.*``).
"""

from __future__ import annotations

import copy
import os
import re

import pytest
import torch
import torchvision
from torch import nn

from monai_transfer.networks import create_backbone, create_transfer_net
from monai_transfer.weights import inflate_weight
from monai_transfer.weights.doctor import DoctorError, convert, diagnose


@pytest.fixture
def resnet(randomize):
    return randomize(torchvision.models.resnet18(), seed=1)


def _lightning(state_dict: dict, **extra) -> dict:
    """A PyTorch Lightning checkpoint as ``trainer.save_checkpoint`` writes it (only weights_only-safe values)."""
    return {
        "epoch": 99,
        "global_step": 1234,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state_dict,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
        "lr_schedulers": [],
        **extra,
    }


def _lightly_simclr(resnet: nn.Module) -> dict:
    from lightly.models.modules import SimCLRProjectionHead

    class SimCLR(nn.Module):  # lightly's examples/pytorch_lightning/simclr.py, as a plain module
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(*list(resnet.children())[:-1])
            self.projection_head = SimCLRProjectionHead(512, 512, 128)

    return _lightning(SimCLR().state_dict())


def _lightly_moco(resnet: nn.Module) -> dict:
    from lightly.models.modules import MoCoProjectionHead

    class MoCo(nn.Module):  # lightly's MoCo: a momentum copy of backbone and head beside them
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(*list(resnet.children())[:-1])
            self.projection_head = MoCoProjectionHead(512, 512, 128)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)

    return _lightning(MoCo().state_dict())


def _solo_learn(resnet: nn.Module) -> dict:
    class BYOL(nn.Module):  # solo-learn's BaseMomentumMethod + BYOL: fc replaced by Identity
        def __init__(self) -> None:
            super().__init__()
            self.backbone = copy.deepcopy(resnet)
            self.backbone.fc = nn.Identity()
            self.classifier = nn.Linear(512, 10)
            self.projector = nn.Sequential(nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32))
            self.predictor = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32))
            self.momentum_backbone = copy.deepcopy(self.backbone)
            self.momentum_projector = copy.deepcopy(self.projector)

    return _lightning(BYOL().state_dict(), hyper_parameters={"cfg": {"method": "byol"}})


def _mmpretrain(resnet: nn.Module) -> dict:
    backbone = {f"backbone.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    head = {"head.fc.weight": torch.randn(10, 512), "head.fc.bias": torch.randn(10)}
    meta = {"mmpretrain_version": "1.2.0", "dataset_meta": {"classes": [str(i) for i in range(10)]}, "epoch": 100}
    return {"meta": meta, "state_dict": {**backbone, **head}}


def _mmselfsup_mocov2(resnet: nn.Module) -> dict:
    # MMSelfSup/MMPretrain MoCoV2: backbone + neck, an EMA copy of both, and the queue in the head
    sd = {f"backbone.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    sd |= {"neck.mlp.0.weight": torch.randn(2048, 512), "neck.mlp.2.weight": torch.randn(128, 2048)}
    sd |= {f"momentum_encoder.module.0.{k[len('backbone.'):]}": v.clone() for k, v in sd.items() if "backbone" in k}
    sd |= {"head.queue": torch.randn(128, 4096), "head.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"meta": {"mmselfsup_version": "1.0.0"}, "state_dict": sd}


def _mmpretrain_avg_down(resnet: nn.Module) -> dict:
    # MMPretrain ResNet(avg_down=True): downsample.0 is an AvgPool, the 1x1 conv and its norm sit at .1 and .2
    def shift(key: str) -> str:
        return key.replace(".downsample.1.", ".downsample.2.").replace(".downsample.0.", ".downsample.1.")

    sd = {f"backbone.{shift(k)}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    return {"meta": {"mmpretrain_version": "1.2.0"}, "state_dict": sd}


def _moco_official(resnet: nn.Module) -> dict:
    # facebookresearch/moco main_moco.py: DDP-wrapped MoCo with encoder_q, encoder_k (momentum), queue; v2's MLP fc
    q = copy.deepcopy(resnet)
    q.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    sd = {f"module.encoder_q.{k}": v for k, v in q.state_dict().items()}
    sd |= {f"module.encoder_k.{k}": v.clone() + 1 for k, v in q.state_dict().items()}
    sd |= {"module.queue": torch.randn(128, 4096), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    optimizer = torch.optim.SGD(q.parameters(), lr=0.03, momentum=0.9).state_dict()
    return {"epoch": 200, "arch": "resnet18", "state_dict": sd, "optimizer": optimizer}


def _data_parallel(resnet: nn.Module) -> dict:
    return nn.DataParallel(resnet).state_dict()  # "module.conv1.weight", ...


def _lightning_model(resnet: nn.Module) -> dict:
    class Classifier(nn.Module):  # a LightningModule holding the network as self.model
        def __init__(self) -> None:
            super().__init__()
            self.model = resnet

    return _lightning(Classifier().state_dict())


RESNET_LAYOUTS = {
    "lightly-simclr": (_lightly_simclr, "backbone.", "resnet-children"),
    "lightly-moco": (_lightly_moco, "backbone.", "resnet-children"),
    "solo-learn-byol": (_solo_learn, "backbone.", "as-is"),
    "mmpretrain": (_mmpretrain, "backbone.", "as-is"),
    "mmselfsup-mocov2": (_mmselfsup_mocov2, "backbone.", "as-is"),
    "mmpretrain-avg-down": (_mmpretrain_avg_down, "backbone.", "mmpretrain-avg-down"),
    "moco-official": (_moco_official, "module.encoder_q.", "as-is"),
    "data-parallel": (_data_parallel, "module.", "as-is"),
    "lightning-model": (_lightning_model, "model.", "as-is"),
}


def _assert_loads_strictly(out, resnet: nn.Module, in_channels: int = 3) -> None:
    """The converted file through the fine-tuning network's own path (``network_def``'s ``pretrained``)."""
    net = create_transfer_net("resnet18", "classification", 2, in_channels, num_classes=2, pretrained=str(out))
    report = net.backbone.load_report
    assert report.ok and report.strict and report.fraction_loaded == 1.0, report.to_table()
    loaded = net.backbone.state_dict()
    for key, value in resnet.state_dict().items():
        if not key.startswith("fc.") and (in_channels == 3 or key != "conv1.weight"):
            assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("layout", sorted(RESNET_LAYOUTS))
def test_published_layouts_reach_full_coverage_and_load_strictly(layout, resnet, save_checkpoint, tmp_path):
    build, prefix, reader = RESNET_LAYOUTS[layout]
    path = save_checkpoint(build(resnet), f"{layout}.ckpt")
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = convert(path, net, tmp_path / "converted.pt")
    assert report.ok and report.filled == report.total == 100, report.to_table()
    assert all(f == t for f, t in report.stages.values()) and list(report.stages)[0] == "stem"
    assert (report.prefix, report.reader) == (prefix, reader)
    assert report.step_counts()["shapes"] == 0 and report.ambiguous == []
    _assert_loads_strictly(tmp_path / "converted.pt", resnet)
    saved = torch.load(tmp_path / "converted.pt", weights_only=True)
    doctor = saved["provenance"]["extra"]["weights_doctor"]
    assert doctor["prefix"] == prefix and doctor["reader"] == reader
    assert saved["provenance"]["sha256"] == report.checkpoint_sha256 and len(report.checkpoint_sha256) == 64
    assert saved["provenance"]["backbone_name"] == "resnet18"


def test_the_container_and_the_skipped_copies_are_reported(resnet, save_checkpoint):
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = diagnose(save_checkpoint(_lightly_moco(resnet)), net)
    assert report.container == ["state_dict"] and "optimizer_states" in report.siblings
    assert report.skipped_copies == ["prefix 'backbone_momentum.' read resnet-children"]
    assert any(k.startswith("backbone_momentum.") for k in report.unused)
    table = report.to_table()
    assert "skipped by convention" in table and "container: state_dict" in table and "total" in table


def test_channel_surgery_on_the_stem_is_reported(resnet, save_checkpoint, tmp_path):
    net = create_backbone("resnet18", spatial_dims=2, in_channels=1)
    report = convert(save_checkpoint(_data_parallel(resnet)), net, tmp_path / "grey.pt")
    assert report.matches["conv1.weight"].surgery == "in_channels 3->1 (sum)"
    _assert_loads_strictly(tmp_path / "grey.pt", resnet, in_channels=1)


@pytest.mark.parametrize("prefix", ["swin_vit.", "swinViT."])
def test_a_fine_tuned_swin_unetr_gives_its_encoder(prefix, randomize, save_checkpoint, tmp_path):
    from monai.networks.nets import SwinUNETR

    swin = randomize(SwinUNETR(in_channels=1, out_channels=3, feature_size=12, spatial_dims=3), seed=2)
    state = {k.replace("swinViT.", prefix): v for k, v in swin.state_dict().items()}
    # research-contributions' BTCV fine-tuning saves {"epoch", "best_acc", "state_dict"}
    path = save_checkpoint({"epoch": 5000, "best_acc": 0.8, "state_dict": state}, "swin.pt")
    net = create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=12)
    report = convert(path, net, tmp_path / "swin_encoder.pt")
    assert report.ok and report.prefix == prefix, report.to_table()
    assert any(k.startswith("decoder1.") for k in report.unused)  # the UNETR decoder is not the backbone
    loaded = create_backbone(
        "swin_unetr", spatial_dims=3, in_channels=1, feature_size=12, pretrained=str(tmp_path / "swin_encoder.pt")
    )
    assert loaded.load_report.ok and loaded.load_report.fraction_loaded == 1.0
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, swin.state_dict()["swinViT." + key]), key


def test_unique_shapes_fill_what_names_leave(resnet):
    # an unknown library that calls the stem "stem.conv"/"stem.norm": every stem tensor has exactly one candidate
    renamed = {
        k.replace("conv1.", "stem.conv.", 1) if k.startswith("conv1.") else k: v for k, v in resnet.state_dict().items()
    }
    renamed = {("stem.norm." + k[4:]) if k.startswith("bn1.") else k: v for k, v in renamed.items()}
    report = diagnose(renamed, create_backbone("resnet18", spatial_dims=2, in_channels=3))
    assert report.ok, report.to_table()
    shaped = {k: m.source for k, m in report.matches.items() if m.step == "shapes"}
    assert shaped == {
        "conv1.weight": "stem.conv.weight",
        "bn1.weight": "stem.norm.weight",
        "bn1.bias": "stem.norm.bias",
        "bn1.running_mean": "stem.norm.running_mean",
        "bn1.running_var": "stem.norm.running_var",
    }
    assert "matched by a unique shape" in report.to_table()


def test_an_ambiguous_shape_match_is_reported_not_taken(resnet, tmp_path):
    # two blocks of layer1 renamed beyond recognition: each tensor fits two keys (layer1.0 and layer1.1 alike)
    state = {
        k.replace("layer1.0.", "blockA.").replace("layer1.1.", "blockB."): v for k, v in resnet.state_dict().items()
    }
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = diagnose(state, net)
    assert not report.ok and report.ambiguous
    for group in report.ambiguous:
        assert len(group.sources) > 1 or len(group.targets) > 1
        assert not any(t in report.matches for t in group.targets)
    assert "layer1.0.conv1.weight" in report.unmatched and report.stages["layer1"] == (0, 20)
    assert "ambiguous, not taken" in report.reason and report.reason.count(".") >= 1
    with pytest.raises(DoctorError, match="ambiguous, not taken"):
        convert(state, net, tmp_path / "never.pt")
    assert not (tmp_path / "never.pt").exists()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # diagnose never loads


def test_two_equal_readings_are_refused_until_a_prefix_is_named(resnet, tmp_path):
    state = {f"net_a.{k}": v for k, v in resnet.state_dict().items()}
    state |= {f"net_b.{k}": v + 1 for k, v in resnet.state_dict().items()}
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = diagnose(state, net)
    assert report.matches == {} and len(report.tied_readings) == 2
    assert "--prefix" in report.reason and "'net_a.'" in report.reason and "'net_b.'" in report.reason
    with pytest.raises(
        DoctorError, match=r"No checkpoint key starts with the prefix 'net_c\.'; .*'net_a\.', 'net_b\.'"
    ):
        diagnose(state, net, prefix="net_c.")
    report = convert(state, net, tmp_path / "b.pt", prefix="net_b.")
    assert report.ok and report.prefix == "net_b."
    saved = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert torch.equal(saved["conv1.weight"], resnet.state_dict()["conv1.weight"] + 1)


def test_a_checkpoint_that_fits_no_backbone_is_refused_with_the_reason(randomize, tmp_path):
    other = randomize(torchvision.models.squeezenet1_0(), seed=3).state_dict()
    with pytest.raises(DoctorError) as err:
        convert(other, create_backbone("resnet18", spatial_dims=2, in_channels=3), tmp_path / "x.pt")
    message = str(err.value)
    assert message.startswith("<state dict> fits no part of resnet18 (100 tensors): none of its 52 tensors")
    assert not re.search(r"\w\. [A-Z]", message) and message.endswith(".") and "\n" not in message  # one sentence
    assert not (tmp_path / "x.pt").exists()


def test_another_architecture_is_not_paired_by_coincident_shapes():
    # a DenseNet's stem (64, 3, 7, 7) has the shape of a ResNet's: with no names in common, no shape is trusted
    densenet = torchvision.models.densenet121().state_dict()
    report = diagnose(densenet, create_backbone("resnet18", spatial_dims=2, in_channels=3))
    assert report.matches == {} and report.ambiguous == []
    assert "fits no part of resnet18" in report.reason
    assert report.reason.endswith("; it reads as a densenet checkpoint (torchvision-densenet layout).")


def test_shapes_complete_names_but_never_replace_them(resnet):
    # names settle only the stem (5 of 100): the 95 tensors of an unknown block naming are not paired by shape
    state = {k.replace("layer", "stage"): v for k, v in resnet.state_dict().items()}
    report = diagnose(state, create_backbone("resnet18", spatial_dims=2, in_channels=3))
    assert report.filled == 5 and report.step_counts()["shapes"] == 0
    assert report.notes == ["unique shapes not tried: names settle 5 of 100 tensors (shapes complete at most half)"]


def test_inflation_only_when_asked(resnet, tmp_path):
    net = create_backbone("resnet18", spatial_dims=3, in_channels=3)
    report = diagnose(_data_parallel(resnet), net)
    assert not report.ok and len(report.needs_inflation) == 20 and "--inflate" in report.reason
    assert report.filled == 80  # batch norms fit as they are; the 20 kernels wait for the user's word
    report = convert(_data_parallel(resnet), net, tmp_path / "i3d.pt", inflate="centre")
    assert report.ok and report.matches["conv1.weight"].surgery.startswith("inflated 2D->3D (centre")
    saved = torch.load(tmp_path / "i3d.pt", weights_only=True)
    expected = inflate_weight(resnet.state_dict()["conv1.weight"], 7, mode="centre")
    assert torch.equal(saved["state_dict"]["conv1.weight"], expected)
    loaded = create_backbone("resnet18", spatial_dims=3, in_channels=3, pretrained=str(tmp_path / "i3d.pt"))
    assert loaded.load_report.ok and torch.equal(loaded.state_dict()["conv1.weight"], expected)


def test_the_converted_file_is_written_atomically(resnet, tmp_path, monkeypatch):
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous")

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert(_data_parallel(resnet), net, out)
    assert out.read_bytes() == b"previous" and os.listdir(tmp_path) == ["out.pt"]  # no temporary file left
    monkeypatch.undo()
    convert(_data_parallel(resnet), net, out)
    assert set(torch.load(out, weights_only=True)) == {"state_dict", "provenance"}


def test_the_report_is_json_serialisable(resnet):
    import json

    report = diagnose(_lightly_simclr(resnet), create_backbone("resnet18", spatial_dims=2, in_channels=3))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] and data["filled"] == data["total"] == 100 and data["steps"] == {"names": 120, "shapes": 0}
    assert data["reason"] == "" and data["container"] == ["state_dict"]


def test_the_converted_file_may_be_safetensors(resnet, tmp_path):
    pytest.importorskip("safetensors")
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    convert(_lightning_model(resnet), net, tmp_path / "r18.safetensors")
    _assert_loads_strictly(tmp_path / "r18.safetensors", resnet)


def test_equal_names_with_other_values_are_two_readings(resnet):
    # the same keys under one prefix, once as they are and once as a reader that changes values would give them:
    # a reading is its names and its values, so two readings that differ only in values are still a tie
    from monai_transfer.weights.doctor_match import read_names
    from monai_transfer.weights.renames import Reader

    def doubled(source, target):
        return lambda key, value: (key, value * 2)

    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    target = net.state_dict()
    readers = (Reader("as-is", "", lambda s, t: lambda k, v: (k, v)), Reader("doubled", "", doubled))
    choice = read_names(resnet.state_dict(), target, set(target), readers, "conv1.weight")
    assert choice.chosen is None and [r.reader for r in choice.tied] == ["as-is", "doubled"]


def test_containers_teacher_before_student_and_encoder(resnet):
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    # DINO's checkpoint.pth: student and teacher (each a MultiCropWrapper: backbone + head), the teacher evaluated
    student = {f"module.backbone.{k}": v + 1 for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    teacher = {f"backbone.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    head = {"head.last_layer.weight_g": torch.ones(64, 1)}
    dino = {"student": {**student, **head}, "teacher": {**teacher, **head}, "epoch": 100, "args": {"arch": "resnet18"}}
    report = diagnose(dino, net)
    assert report.ok and report.container == ["teacher"] and report.prefix == "backbone."
    assert {"student", "epoch", "args"} <= set(report.siblings)
    assert torch.equal(report.state_dict["conv1.weight"], resnet.state_dict()["conv1.weight"])
    report = diagnose({"encoder": resnet.state_dict(), "epoch": 3}, net)
    assert report.ok and report.container == ["encoder"] and report.unused == ["fc.weight", "fc.bias"]


def test_the_swin_ssl_release_reads_through_the_adapters_renames(randomize):
    from monai.networks.nets import SwinUNETR

    swin = randomize(SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=3), seed=5)
    # model_swinvit.pt: {"state_dict": {"module.layers1.0.blocks.0.mlp.fc1.weight", ..., "module.norm.weight"}}
    state = {
        "module." + k[len("swinViT.") :].replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2."): v
        for k, v in swin.state_dict().items()
        if k.startswith("swinViT.")
    }
    state |= {"module.norm.weight": torch.ones(192), "module.rotation_head.weight": torch.randn(4, 192)}
    net = create_backbone("swin_unetr", spatial_dims=3, in_channels=1, feature_size=12)
    report = diagnose({"state_dict": state}, net)
    assert report.ok and report.reader == "swinunetr", report.to_table()
    assert "module.norm.weight" in report.dropped and "module.rotation_head.weight" in report.dropped


def test_a_timm_vit_in_a_lightning_module_gives_timm_features(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(6)
    reference = timm.create_model("vit_small_patch16_224", img_size=32, num_classes=10).eval()
    state = {f"model.{k}": v for k, v in reference.state_dict().items()}
    net = create_backbone("vit_small_patch16", spatial_dims=2, in_channels=3, img_size=32)
    report = convert(_lightning(state), net, tmp_path / "vit.pt")
    assert report.ok and (report.prefix, report.reader) == ("model.", "timm-vit")  # the adapter's renames and fold
    ours = create_backbone(
        "vit_small_patch16", spatial_dims=2, in_channels=3, img_size=32, pretrained=str(tmp_path / "vit.pt")
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(ours.eval().forward_features(x), expected, atol=1e-4, rtol=1e-4)
