"""The source forms beyond URLs: ``hf://OWNER/REPO[@REVISION]/FILE`` through huggingface_hub's cache (offline mode
honoured), ``monai-zoo:NAME[@VERSION]`` bundles, files handed out through a request form, and the harmless classes a
named source's file may pickle. Nothing touches the network: huggingface_hub runs offline, MONAI's bundle download is
replaced."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from monai_transfer.networks import create_backbone
from monai_transfer.weights import DownloadError, UnsafeCheckpointError, get_source, load_pretrained
from monai_transfer.weights.hub import hf_cache_path, parse_hf_url
from monai_transfer.weights.sources import is_source_name, resolve_source, source_backbone_kwargs
from monai_transfer.weights.zoo import parse_zoo_name, zoo_bundle_dir

pytest.importorskip("huggingface_hub")


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def small_resnet(randomize):
    return randomize(create_backbone("resnet18", spatial_dims=2, in_channels=3), seed=3)


def test_parse_hf_url():
    ref = parse_hf_url("hf://timm/vit_small_patch14_dinov2.lvd142m@a1b2/sub/model.safetensors")
    assert ref == ("timm/vit_small_patch14_dinov2.lvd142m", "a1b2", "sub/model.safetensors")
    assert parse_hf_url("hf://o/r/f.pt").revision == "main"
    with pytest.raises(ValueError, match=r"hf://OWNER/REPO\[@REVISION\]/FILE"):
        parse_hf_url("hf://only-owner/file.pt")


def test_hf_offline_missing_file_names_the_cache_path(offline, tmp_path, small_resnet):
    with pytest.raises(DownloadError) as err:
        load_pretrained(small_resnet, "hf://someone/weights/model.pt", cache_dir=tmp_path)
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "\n" not in message
    snapshot, refs = hf_cache_path(parse_hf_url("hf://someone/weights/model.pt"), tmp_path)
    assert str(snapshot) in message and str(refs) in message


def test_hf_file_placed_in_the_cache_loads(offline, tmp_path, small_resnet, all_loaded):
    """The file put where the error says is found by huggingface_hub itself, offline, and loads with a report."""
    url = "hf://someone/weights@v1/nested/model.pt"
    snapshot, refs = hf_cache_path(parse_hf_url(url), tmp_path)
    snapshot.parent.mkdir(parents=True)
    torch.save({"state_dict": small_resnet.state_dict()}, snapshot)
    refs.parent.mkdir(parents=True)
    refs.write_text("v1")
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = load_pretrained(net, url, cache_dir=tmp_path)
    all_loaded(report)
    assert report.provenance.url == url
    torch.testing.assert_close(
        net.state_dict()["layer1.0.conv1.weight"], small_resnet.state_dict()["layer1.0.conv1.weight"]
    )


def _bundle(folder, state, version):
    (folder / "models").mkdir(parents=True)
    (folder / "configs").mkdir()
    (folder / "configs" / "metadata.json").write_text(json.dumps({"version": version}))
    torch.save(state, folder / "models" / "model.pt")


def test_any_zoo_bundle_by_name_and_version(tmp_path, small_resnet, all_loaded, monkeypatch):
    """An unregistered bundle (monai adapter) downloaded by monai.bundle.download into its version folder."""
    import monai.bundle

    calls = []

    def fake_download(name, version, bundle_dir, source, repo, progress):
        calls.append((name, version, source, repo))
        _bundle(tmp_path / "monai-zoo" / version / name, {f"net.{k}": v for k, v in small_resnet.state_dict().items()},
                version)  # fmt: skip

    monkeypatch.setattr(monai.bundle, "download", fake_download)
    net = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    report = load_pretrained(net, "monai-zoo:my_resnet_bundle@0.3.1", cache_dir=tmp_path)
    assert calls == [("my_resnet_bundle", "0.3.1", "huggingface_hub", "MONAI/my_resnet_bundle")]
    assert report.adapter == "monai"
    all_loaded(report)
    assert report.provenance.url == "monai-zoo:my_resnet_bundle@0.3.1"
    load_pretrained(net, "monai-zoo:my_resnet_bundle@0.3.1", cache_dir=tmp_path)  # cached: no second download
    assert len(calls) == 1


def test_zoo_offline_error_names_the_bundle_folder(tmp_path, monkeypatch):
    import monai.bundle

    def offline_download(**kwargs):
        raise OSError("Cannot reach huggingface.co")

    monkeypatch.setattr(monai.bundle, "download", offline_download)
    net = create_backbone("segresnet", spatial_dims=3, in_channels=4, init_filters=8)
    with pytest.raises(DownloadError) as err:
        load_pretrained(net, "monai-zoo:brats_mri_segmentation@0.5.4", cache_dir=tmp_path)
    folder = zoo_bundle_dir(parse_zoo_name("monai-zoo:brats_mri_segmentation@0.5.4"), tmp_path)
    assert str(folder) in str(err.value) and "Cannot reach" in str(err.value) and "\n" not in str(err.value)


def test_pinned_zoo_source_keeps_its_encoder_map():
    assert is_source_name("monai-zoo:brats_mri_segmentation@0.5.4")
    assert get_source("monai-zoo:brats_mri_segmentation@0.5.4").name == "monai-zoo:brats_mri_segmentation"
    _, wfile = resolve_source("monai-zoo:brats_mri_segmentation@0.5.4", "segresnet")
    assert wfile.url == "monai-zoo:brats_mri_segmentation@0.5.4" and wfile.in_channels == 4
    assert source_backbone_kwargs("monai-zoo:wholeBody_ct_segmentation@0.2.0", "segresnet")["init_filters"] == 32
    with pytest.raises(ValueError, match="monai-zoo:NAME@VERSION"):
        parse_zoo_name("monai-zoo:bad name")


def test_request_form_source_names_the_form_and_the_path(tmp_path):
    net = create_backbone("genesis_unet3d", spatial_dims=3, in_channels=1)
    with pytest.raises(DownloadError) as err:
        load_pretrained(net, "models-genesis-chest-ct", cache_dir=tmp_path)
    message = str(err.value)
    assert get_source("models-genesis-chest-ct").files["genesis_unet3d"].request_url in message
    assert str(tmp_path / "Genesis_Chest_CT.pt") in message and "\n" not in message


def test_pycontrast_namespace_allowed_only_for_its_source(tmp_path, save_checkpoint, all_loaded):
    """PyContrast files pickle their options (argparse.Namespace): allowed when read as the named source, refused (with
    the way out) when the same file is passed as a path."""
    reference = create_backbone("resnet50", spatial_dims=2, in_channels=3, widen_factor=0.25)
    obj = {
        "opt": argparse.Namespace(epochs=800),
        "model": {f"module.encoder.{k}": v for k, v in reference.state_dict().items()},
    }
    path = save_checkpoint(obj, "InfoMin_800.pth")
    net = create_backbone("resnet50", spatial_dims=2, in_channels=3, widen_factor=0.25)
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        load_pretrained(net, path)
    all_loaded(load_pretrained(net, "infomin-imagenet1k", cache_dir=path.parent))


def test_unknown_safe_global_is_refused():
    from monai_transfer.weights.fetch import allowed_globals

    with pytest.raises(ValueError, match="os.system"):
        with allowed_globals(["os.system"]):
            pass
