"""Downloads (file:// URLs only; tests never reach the network), hash checks, and the registry of sources."""

from __future__ import annotations

import hashlib

import pytest
import torch

from monai_transfer.networks import create_backbone
from monai_transfer.weights import (
    HashMismatchError,
    WeightFile,
    WeightSource,
    default_cache_dir,
    download_checkpoint,
    get_source,
    list_sources,
    load_pretrained,
    register_source,
    source_backbone_kwargs,
)
from monai_transfer.weights.checkpoint import hash_prefix_from_filename
from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.sources import _SOURCES


@pytest.fixture
def published(tmp_path):
    torch.manual_seed(0)
    net = create_backbone("resnet10", spatial_dims=2, in_channels=3)
    state = {**net.state_dict(), "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}
    path = tmp_path / "server" / "resnet10-published.pth"
    path.parent.mkdir()
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path, digest, net.state_dict()


@pytest.mark.parametrize("hash_length", [64, 8])
def test_download_with_correct_hash(published, tmp_path, hash_length):
    path, digest, _ = published
    cache = tmp_path / "cache"
    got = download_checkpoint(path.as_uri(), digest[:hash_length], cache_dir=cache)
    assert got == cache / path.name and got.read_bytes() == path.read_bytes()
    assert [p.name for p in cache.iterdir()] == [path.name]
    assert download_checkpoint(path.as_uri(), digest, cache_dir=cache) == got  # cached: no second copy


def test_download_with_wrong_hash_leaves_nothing(published, tmp_path):
    path, digest, _ = published
    cache = tmp_path / "cache"
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(HashMismatchError, match="mismatch"):
        download_checkpoint(path.as_uri(), wrong, cache_dir=cache)
    assert list(cache.iterdir()) == []
    with pytest.raises(ValueError, match="hex"):
        download_checkpoint(path.as_uri(), "abc", cache_dir=cache)


def test_torchvision_style_filename_hash(tmp_path):
    assert hash_prefix_from_filename("resnet18-f37072fd.pth") == "f37072fd"
    assert hash_prefix_from_filename("model_swinvit.pt") is None
    src = tmp_path / "resnet10-deadbeef.pth"
    src.write_bytes(b"not the right content")
    with pytest.raises(HashMismatchError):  # the name promises sha256 deadbeef...
        download_checkpoint(src.as_uri(), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_default_cache_dir_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert default_cache_dir() == tmp_path / "hub" / "monai_transfer"


def test_load_named_source_end_to_end(published, tmp_path, monkeypatch, all_loaded):
    path, digest, state = published
    source = WeightSource(
        name="test-local-source",
        adapter="torchvision-resnet",
        files={"resnet10": WeightFile(path.as_uri(), digest[:12], backbone_kwargs={"shortcut_type": "B"})},
        provenance=Provenance(method="supervised", source_data="nothing real", licence="CC0-1.0"),
    )
    monkeypatch.setitem(_SOURCES, source.name, source)
    assert "test-local-source" in list_sources("resnet10")
    assert source_backbone_kwargs("test-local-source", "resnet10") == {"shortcut_type": "B"}
    net = create_backbone("resnet10", spatial_dims=2, in_channels=3)
    cache = tmp_path / "cache"
    report = load_pretrained(net, "test-local-source", cache_dir=cache)
    all_loaded(report)
    assert report.adapter == "torchvision-resnet" and sorted(report.dropped) == ["fc.bias", "fc.weight"]
    assert report.provenance.url == path.as_uri() and report.provenance.backbone_name == "resnet10"
    assert report.provenance.licence == "CC0-1.0" and report.checkpoint_sha256 == digest
    assert (cache / path.name).is_file()
    torch.testing.assert_close(net.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])

    other = create_backbone("resnet18", spatial_dims=2, in_channels=3)
    with pytest.raises(KeyError, match="no weights for backbone 'resnet18'"):
        load_pretrained(other, "test-local-source", cache_dir=cache)


def test_registry_sources():
    names = list_sources()
    for name in (
        "torchvision-imagenet1k-v1",
        "torchvision-imagenet1k-v2",
        "medicalnet-23datasets",
        "timm-augreg-in21k-ft-in1k",
        "swinunetr-ssl-5050ct",
        "torchxrayvision-all",
    ):
        assert name in names
    assert list_sources("resnet18") == ["medicalnet-23datasets", "torchvision-imagenet1k-v1"]
    assert "torchvision-imagenet1k-v2" in list_sources("resnet50")
    assert source_backbone_kwargs("medicalnet-23datasets", "resnet18") == {"shortcut_type": "A"}
    assert source_backbone_kwargs("medicalnet-23datasets", "resnet10") == {
        "shortcut_type": "B",
        "bias_downsample": False,
    }
    assert source_backbone_kwargs("some/path.pt", "resnet18") == {}
    assert source_backbone_kwargs(None) == {}
    tv = get_source("torchvision-imagenet1k-v1")
    assert tv.files["resnet18"].url.endswith("resnet18-f37072fd.pth") and tv.files["resnet18"].sha256 == "f37072fd"
    assert tv.adapter_for("densenet121") == "torchvision-densenet"
    assert get_source("torchvision-imagenet1k-v2").files["resnet50"].url.endswith("resnet50-11ad3fa6.pth")
    prov = get_source("swinunetr-ssl-5050ct").provenance_for("swin_unetr")
    assert prov.modality == "CT" and prov.spatial_dims == 3 and prov.url.endswith("model_swinvit.pt")
    for name in names:  # every sha256 given is a valid full digest or 8+ hex prefix
        for f in get_source(name).files.values():
            assert f.sha256 is None or (8 <= len(f.sha256) <= 64 and int(f.sha256, 16) >= 0)
    with pytest.raises(KeyError, match="already registered"):
        register_source(get_source("torchvision-imagenet1k-v1"))


def test_registry_backbone_names_exist():
    from monai_transfer.networks import list_backbones

    known = set(list_backbones())
    for name in list_sources():
        for backbone in get_source(name).files:
            assert backbone in known, (name, backbone)


def test_3d_source_into_2d_backbone_is_refused_before_download(tmp_path, monkeypatch):
    source = WeightSource(
        name="test-3d-source",
        adapter="medicalnet",
        files={"resnet10": WeightFile((tmp_path / "never-read.pth").as_uri(), spatial_dims=3, in_channels=1)},
        provenance=Provenance(),
    )
    monkeypatch.setitem(_SOURCES, source.name, source)
    net = create_backbone("resnet10", spatial_dims=2, in_channels=1)
    with pytest.raises(ValueError, match=r"3D weights .* cannot load into a 2D backbone"):
        load_pretrained(net, "test-3d-source", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
