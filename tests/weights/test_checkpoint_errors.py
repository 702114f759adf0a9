"""Files that are not checkpoints, and weights that cannot be downloaded, give one named error each (issue 12)."""

from __future__ import annotations

import argparse
import gzip
import os
import urllib.error
import urllib.request

import pytest
import torch

from monai_transfer.networks import create_backbone
from monai_transfer.weights import (
    CheckpointReadError,
    DownloadError,
    UnsafeCheckpointError,
    download_checkpoint,
    load_pretrained,
    read_checkpoint,
)


def _good(path):
    torch.save({"w": torch.zeros(64)}, path)
    return path.read_bytes()


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("random", "random or foreign data"),
        ("empty", "empty"),
        ("truncated_zip", "zip archive PyTorch cannot read"),
        ("truncated_legacy", "ends early"),
        ("gzip", "gzip"),
        ("text", "text file"),
        ("lfs", "Git LFS pointer"),
        ("html", "HTML page"),
        ("safetensors", "not a valid safetensors file"),
    ],
)
def test_files_that_are_not_checkpoints_say_so(tmp_path, kind, reason):
    good = _good(tmp_path / "good.pt")
    torch.save({"w": torch.zeros(64)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    legacy = (tmp_path / "legacy.pt").read_bytes()
    contents = {
        "random": b"\x13" + os.urandom(4095),  # not \x80 or PK: bytes no torch.save writes first
        "empty": b"",
        "truncated_zip": good[: len(good) // 2],
        "truncated_legacy": legacy[:-20],
        "gzip": gzip.compress(b"weights" * 50),
        "text": b"these are not weights\n",
        "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 46827520\n",
        "html": b"<!DOCTYPE html><html><body>Sign in</body></html>",
        "safetensors": os.urandom(256),
    }
    path = tmp_path / (f"{kind}.safetensors" if kind == "safetensors" else f"{kind}.pt")
    path.write_bytes(contents[kind])
    with pytest.raises(CheckpointReadError, match=reason) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "pickled Python objects" not in str(info.value)
    net = create_backbone("resnet10", spatial_dims=2, in_channels=1)
    with pytest.raises(CheckpointReadError):
        load_pretrained(net, path)


def test_random_bytes_that_start_like_a_pickle_are_corrupt_not_unsafe(tmp_path):
    path = tmp_path / "rand.pt"
    path.write_bytes(b"\x80\x02" + bytes([231]) + os.urandom(1000))
    with pytest.raises(CheckpointReadError, match="not a valid PyTorch pickle"):
        read_checkpoint(path)


def test_a_pickled_object_is_still_refused_as_unsafe(tmp_path):
    path = tmp_path / "hp.pt"
    torch.save({"w": torch.zeros(2), "hparams": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="pickled Python objects"):
        read_checkpoint(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    def no_network(url, *a, **k):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_offline_download_names_the_url_and_the_local_alternatives(offline, tmp_path):
    with pytest.raises(DownloadError) as info:
        download_checkpoint("https://example.org/w/resnet18-f37072fd.pth", cache_dir=tmp_path / "cache")
    text = str(info.value)
    assert "Could not download" in text and "https://example.org/w/resnet18-f37072fd.pth" in text
    assert str(tmp_path / "cache" / "resnet18-f37072fd.pth") in text and "pass the file's path" in text
    assert "name resolution" in text and len(text.splitlines()) == 1
    assert not (tmp_path / "cache" / "resnet18-f37072fd.pth").exists()
    err = urllib.error.HTTPError("https://example.org/x.pth", 404, "Not Found", {}, None)  # type: ignore[arg-type]

    def gone(url, *a, **k):
        raise err

    with pytest.raises(DownloadError, match="HTTP 404 Not Found"):
        download_checkpoint("https://example.org/x.pth", cache_dir=tmp_path / "cache", opener=gone)


def test_readme_embedding_snippet_offline_says_what_to_do(offline):
    # the README's snippet: create_transfer_net(..., pretrained="torchvision-imagenet1k-v2") raised a bare URLError
    from monai_transfer.networks import create_transfer_net

    with pytest.raises(DownloadError) as info:
        create_transfer_net("resnet50", task="segmentation", spatial_dims=3, in_channels=1, num_classes=3,
                            pretrained="torchvision-imagenet1k-v2")  # fmt: skip
    text = str(info.value)
    assert "'torchvision-imagenet1k-v2 (resnet50)'" in text
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in text and "resnet50-11ad3fa6.pth" in text
    assert not isinstance(info.value, urllib.error.URLError)


class _Command:  # a malicious pickle: loading it would run a shell command
    def __reduce__(self):
        import os

        return (os.system, ("echo this would run at load time",))


def test_a_malicious_pickle_names_the_blocked_global_not_a_corrupt_download(tmp_path):
    # issue 21: torch says "unsupported GLOBAL posix.system whose module posix is blocked" for os.system; that was
    # reported as "corrupt or truncated ... download it again"
    import os

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "hook": _Command()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert f"refused the global {os.system.__module__}.system" in message
    assert "truncated" not in message and "download it again" not in message
