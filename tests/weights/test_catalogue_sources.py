"""Every source of the catalogue (``monai_transfer.weights.catalogue``), loaded *by name*: a stand-in file in the
publisher's exact key layout and container format is put where the download would land (the cache; nothing is
downloaded), and the load must be strict, reach every stage at 100 % and carry the published values."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from monai_transfer.networks import create_backbone
from monai_transfer.weights import get_source, list_sources, load_pretrained, source_backbone_kwargs
from monai_transfer.weights.catalogue import CATALOGUE
from monai_transfer.weights.zoo import parse_zoo_name, zoo_bundle_dir

monai_nets = pytest.importorskip("monai.networks.nets")
torchvision = pytest.importorskip("torchvision")

SMALL_RESNET = {"widen_factor": 0.25}  # the published layout (keys) with a quarter of the channels: fast


@dataclass
class Case:
    source: str
    backbone: str
    adapter: str
    build: Callable[[dict[str, torch.Tensor]], Any]  # our reference state dict -> the published file's object
    spatial_dims: int = 2
    in_channels: int = 3
    kwargs: dict[str, Any] = field(default_factory=dict)
    fmt: str = "torch"  # "torch" (torch.save) or "safetensors"
    reference: Callable[[Callable], dict[str, torch.Tensor]] | None = None  # (randomize) -> the publisher's file


def _prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def _moco(sd):
    heads = {"fc.0.weight": torch.randn(8, 8), "fc.0.bias": torch.randn(8), "fc.2.weight": torch.randn(4, 8)}
    state = {**_prefixed("module.encoder_q.", {**sd, **heads}), **_prefixed("module.encoder_k.", sd)}
    state.update({"module.queue": torch.randn(4, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def _swav(sd, prototypes="prototypes.weight"):
    heads = {"projection_head.0.weight": torch.randn(8, 8), "projection_head.1.running_mean": torch.randn(8)}
    return _prefixed("module.", {**sd, **heads, prototypes: torch.randn(30, 4)})


def _pycontrast(sd, jigsaw=False):
    heads = {"head.fc.weight": torch.randn(4, 8)}
    if jigsaw:
        heads["head_jig.fc1.weight"] = torch.randn(4, 8)
    opt = argparse.Namespace(method="PIRL" if jigsaw else "InsDis", epochs=800)
    return {"opt": opt, "model": _prefixed("module.encoder.", {**sd, **heads}), "contrast": {}, "epoch": 800}


def _converted(sd):  # BYOL / SimCLR after conversion: a torchvision ResNet-50 with its fc
    return {"state_dict": {**sd, "fc.weight": torch.randn(10, 8), "fc.bias": torch.randn(10)}}


def _ssl(source, build, adapter="ssl-resnet50"):
    return Case(source, "resnet50", adapter, build, kwargs=SMALL_RESNET)


def _timm_dinov2(randomize):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)  # 518 px, as published
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.state_dict()


def _open_clip_tower(randomize):
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    # BiomedCLIP's vision_cfg: timm_model_name vit_base_patch16_224, timm_pool "", timm_proj "linear", embed_dim 512
    tower = open_clip.timm_model.TimmModel("vit_base_patch16_224", embed_dim=512, pool="", proj="linear")
    state = _prefixed("visual.", tower.state_dict())
    state.update(
        {"text.transformer.embeddings.word_embeddings.weight": torch.randn(10, 8), "logit_scale": torch.ones(())}
    )
    return state


def _sam(randomize):
    """The whole ``Sam`` model's state dict as published: the image encoder at 1024 px, beside the prompt encoder and
    mask decoder (a few of their tensors stand in for them)."""
    torch.manual_seed(4)
    encoder = create_backbone("sam_vit_b", spatial_dims=2, in_channels=3, img_size=1024)
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = {"image_encoder." + k: v for k, v in encoder.state_dict().items()}
    state.update({"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 128)})
    state.update({"mask_decoder.iou_token.weight": torch.randn(1, 256), "pixel_mean": torch.randn(3, 1, 1)})
    return state


def _zoo_segresnet(in_channels, randomize):
    torch.manual_seed(1)
    net = monai_nets.SegResNet(
        spatial_dims=3, in_channels=in_channels, out_channels=3, init_filters=8, blocks_down=(1, 2, 2, 4)
    )
    return randomize(net, seed=1).state_dict()


def _zoo_unet(randomize):
    torch.manual_seed(3)
    net = monai_nets.UNet(
        spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8, 16, 32, 64), strides=(2, 2, 2, 2),
        num_res_units=2, norm="batch",
    )  # fmt: skip
    return randomize(net, seed=3).state_dict()


def _zoo_swin(randomize):
    torch.manual_seed(2)
    return monai_nets.SwinUNETR(in_channels=1, out_channels=14, feature_size=12).state_dict()


def _radimagenet_resnet(randomize):
    model = randomize(torchvision.models.resnet50(weights=None), seed=3)
    children = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
    sd = model.state_dict()
    published = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        if head in children:
            published[f"backbone.{children.index(head)}.{rest}"] = v
    return published


def _radimagenet_densenet(randomize):
    model = randomize(torchvision.models.densenet121(weights=None), seed=4)
    return {
        "backbone.0." + k[len("features.") :]: v for k, v in model.state_dict().items() if k.startswith("features.")
    }


def _genesis(sd):
    decoder = {
        "up_tr256.up_conv.weight": torch.randn(4, 4, 2, 2, 2),
        "out_tr.final_conv.weight": torch.randn(1, 4, 1, 1, 1),
    }
    return {"state_dict": _prefixed("module.", {**sd, **decoder})}


CASES = [
    _ssl("moco-v1-imagenet1k", _moco),
    _ssl("moco-v2-imagenet1k", _moco),
    _ssl("pcl-v1-imagenet1k", _moco),
    _ssl("pcl-v2-imagenet1k", _moco),
    _ssl("swav-imagenet1k", _swav),
    _ssl("deepcluster-v2-imagenet1k", lambda sd: _swav(sd, "prototypes.prototypes0.weight")),
    _ssl("sela-v2-imagenet1k", lambda sd: _swav(sd, "prototypes.prototypes1.weight")),
    _ssl("barlowtwins-imagenet1k", lambda sd: dict(sd), adapter="torchvision-resnet"),
    _ssl("insdis-imagenet1k", _pycontrast),
    _ssl("pirl-imagenet1k", lambda sd: _pycontrast(sd, jigsaw=True)),
    _ssl("infomin-imagenet1k", _pycontrast),
    _ssl("byol-imagenet1k", _converted, adapter="torchvision-resnet"),
    _ssl("simclr-v1-imagenet1k", _converted, adapter="torchvision-resnet"),
    _ssl("simclr-v2-imagenet1k", _converted, adapter="torchvision-resnet"),
    Case("dinov2-lvd142m", "vit_small_patch14", "timm-vit", None, kwargs={"img_size": 28}, fmt="safetensors",
         reference=_timm_dinov2),
    Case("biomedclip-pmc15m", "vit_base_patch16", "open-clip-timm-vit", None, kwargs={"img_size": 32},
         reference=_open_clip_tower),
    Case("sam-vit-b-sa1b", "sam_vit_b", "sam-image-encoder", None, kwargs={"img_size": 64}, reference=_sam),
    Case("medsam-vit-b", "sam_vit_b", "sam-image-encoder", None, kwargs={"img_size": 64}, reference=_sam),
    Case("ct-fm", "segresnet_ds", "monai", dict, spatial_dims=3, in_channels=1, kwargs={"init_filters": 4},
         fmt="safetensors"),
    Case("radimagenet", "resnet50", "radimagenet", None, reference=_radimagenet_resnet),
    Case("radimagenet", "densenet121", "radimagenet", None, reference=_radimagenet_densenet),
    Case("models-genesis-chest-ct", "genesis_unet3d", "models-genesis", _genesis, spatial_dims=3, in_channels=1),
    Case("monai-zoo:wholeBody_ct_segmentation", "segresnet", "monai", None, spatial_dims=3, in_channels=1,
         kwargs={"init_filters": 8}, reference=lambda r: _zoo_segresnet(1, r)),
    Case("monai-zoo:brats_mri_segmentation", "segresnet", "monai", None, spatial_dims=3, in_channels=4,
         kwargs={"init_filters": 8}, reference=lambda r: _zoo_segresnet(4, r)),
    Case("monai-zoo:spleen_ct_segmentation", "unet", "monai-unet", None, spatial_dims=3, in_channels=1,
         kwargs={"channels": (4, 8, 16, 32, 64)}, reference=_zoo_unet),
    Case("monai-zoo:swin_unetr_btcv_segmentation", "swin_unetr", "swinunetr", None, spatial_dims=3, in_channels=1,
         kwargs={"feature_size": 12}, reference=_zoo_swin),
]  # fmt: skip

# full ViT-B encoders (86M and 90M parameters, SAM's at 1024 px) written and read back
SLOW = {"biomedclip-pmc15m", "sam-vit-b-sa1b", "medsam-vit-b"}


def _place(case: Case, obj: Any, cache: Path) -> Path:
    """Write the stand-in where loading by name looks for the published file."""
    wfile = get_source(case.source).files[case.backbone]
    if case.source.startswith("monai-zoo:"):
        folder = zoo_bundle_dir(parse_zoo_name(case.source), cache)
        (folder / "models").mkdir(parents=True)
        (folder / "configs").mkdir()
        (folder / "configs" / "metadata.json").write_text(json.dumps({"version": "9.9.9"}))
        torch.save(obj, folder / "models" / "model.pt")
        return folder / "models" / "model.pt"
    path = cache / (wfile.filename or Path(urllib.parse.urlparse(wfile.url).path).name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return path


def test_every_catalogue_source_has_a_case():
    covered = {(c.source, c.backbone) for c in CASES}
    expected = {(s.name, b) for s in CATALOGUE for b in s.files}
    # DINOv2's ViT-B/14 file is the ViT-S/14 layout at another width (equivalence: test_catalogue_equivalence)
    assert expected - covered == {("dinov2-lvd142m", "vit_base_patch14")}
    assert len(list_sources()) >= 20


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=f"{c.source}-{c.backbone}", marks=[pytest.mark.slow] if c.source in SLOW else [])
        for c in CASES
    ],
)
def test_catalogue_source_loads_by_name(case: Case, tmp_path, all_loaded, randomize):
    # the architecture options the source fixes (as create_backbone(pretrained=source) applies them), then the test's
    kwargs = {**source_backbone_kwargs(case.source, case.backbone), **case.kwargs}
    net = create_backbone(case.backbone, spatial_dims=case.spatial_dims, in_channels=case.in_channels, **kwargs)
    if case.reference is not None:  # the publisher's own network, its state dict as published
        published = case.reference(randomize)
        expected = None
    else:
        reference = randomize(
            create_backbone(case.backbone, spatial_dims=case.spatial_dims, in_channels=case.in_channels, **kwargs),
            seed=7,
        )
        expected = reference.state_dict()
        published = case.build(expected)
    _place(case, published, tmp_path)

    report = load_pretrained(net, case.source, cache_dir=tmp_path)
    assert report.adapter == case.adapter
    all_loaded(report)
    assert report.provenance is not None and report.provenance.licence
    assert report.provenance.preprocessing.get("intensity"), "every source states its intensity contract"
    if expected is not None:
        state = net.state_dict()
        for key, value in expected.items():
            if not key.endswith("num_batches_tracked"):
                torch.testing.assert_close(state[key], value, msg=lambda m, key=key: f"{key}: {m}")
    if case.source.startswith("monai-zoo:"):
        assert report.provenance.url == f"{case.source}@9.9.9"  # the bundle version read is recorded
        decoders = ("up_layers.", "conv_final.", "decoder1.", "model.2.")
        assert any(k.startswith(decoders) for k in report.dropped), report.dropped[:5]


def test_weights_sources_lists_the_catalogue_with_licence_and_hash_check(capsys):
    from monai_transfer.cli import main

    assert main(["weights", "sources", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = {r["source"] for r in rows}
    assert {s.name for s in CATALOGUE} <= listed and len(listed) >= 20
    for row in rows:
        assert row["licence"] and row["licence"] != "unknown", row["source"]
        assert row["checked"] in ("not checked", "full sha256") or row["checked"].startswith("sha256 prefix"), row
