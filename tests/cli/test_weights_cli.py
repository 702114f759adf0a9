"""``monai-transfer weights`` on first use (issue 12): offline sources, the sources table, files that are not
checkpoints, ``convert`` onto its own input, the help texts, and MONAI's repeated nvImageCodec message."""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
import warnings

import pytest
import torch

from monai_transfer.cli import main
from monai_transfer.networks import create_backbone
from monai_transfer.weights import get_source, list_sources


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "r10.pt"
    torch.save(create_backbone("resnet10", spatial_dims=2, in_channels=1).state_dict(), path)
    return path


def test_inspect_offline_is_one_sentence_with_exit_2(monkeypatch, tmp_path, capsys):
    def no_network(url, *a, **k):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert main(["weights", "inspect", "torchvision-imagenet1k-v1", "--backbone", "resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "URLError" not in err
    assert err.startswith("error: Could not download the weights 'torchvision-imagenet1k-v1 (resnet18)'")
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err
    assert str(tmp_path / "torch_home" / "hub" / "monai_transfer" / "resnet18-f37072fd.pth") in err
    assert "pass the file's path" in err


def test_sources_show_licence_and_the_full_published_hash(capsys):
    assert main(["weights", "sources", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        src = get_source(row["source"])
        f = src.files[row["backbone"]]
        assert row["licence"] == src.provenance.licence and row["licence"]
        assert row["sha256"] == (f.sha256 or "")  # all that is published, never cut
        assert row["checked"] == ("not checked" if not f.sha256 else
                                  "full sha256" if len(f.sha256) == 64 else f"sha256 prefix ({len(f.sha256)} hex)")  # fmt: skip
    assert {r["source"] for r in rows} == set(list_sources())
    assert main(["weights", "sources"]) == 0
    out = capsys.readouterr().out
    assert "licence" in out and "BSD-3-Clause" in out and "sha256 prefix (8 hex)" in out and "not checked" in out
    assert "none published" in out and "checked before use" in out


def test_random_bytes_are_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"\x13" + os.urandom(2047))
    assert main(["weights", "inspect", str(bad), "--backbone", "resnet10"]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad} is not a readable checkpoint" in err and "pickled Python objects" not in err


def test_convert_refuses_to_overwrite_its_input(checkpoint, tmp_path, capsys):
    before = checkpoint.read_bytes()
    same = [str(checkpoint), str(tmp_path / "." / checkpoint.name), os.path.relpath(checkpoint)]
    link = tmp_path / "link.pt"
    link.symlink_to(checkpoint)
    for out in [*same, str(link)]:
        args = ["weights", "convert", str(checkpoint), "--backbone", "resnet10", "--out", out]
        assert main(args) == 2, out
        assert "refusing to overwrite the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
    args = ["weights", "convert", str(checkpoint), "--backbone", "resnet10", "--out", str(tmp_path / "new.pt")]
    assert main(args) == 0 and (tmp_path / "new.pt").is_file()


def test_weights_help_documents_the_real_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["weights", "inspect", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit code 1 when something did not fit." not in out
    assert "2 when the checkpoint cannot be read or downloaded, or does not fit" in out
    assert "with --allow-partial, 1 when something did not fit" in out
    assert "(default: None)" not in out
    for command in (["weights", "sources"], ["weights", "convert"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "(default: None)" not in text and "%%" not in text


def test_nvimagecodec_message_at_most_once_and_other_warnings_kept(capsys, caplog):
    assert main(["weights", "sources", "--backbone", "resnet10"]) == 0  # installs the filter
    log = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            log.warning("nvImageCodec is not available; skipping pydicom decoder plugin registration.")
        log.warning("a different problem of the plugin")
    texts = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert sum(t.startswith("nvImageCodec is not available") for t in texts) <= 1
    assert "a different problem of the plugin" in texts
    with warnings.catch_warnings(record=True) as seen:
        main(["weights", "sources", "--backbone", "resnet10"])
        warnings.simplefilter("always")
        main(["weights", "sources", "--backbone", "resnet10"])  # re-installs its filter in front
        for _ in range(3):
            warnings.warn("NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully. "
                          "Falling back to default pydicom decoders.", UserWarning, stacklevel=1)  # fmt: skip
        warnings.warn("a real warning", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert not any("nvImageCodec decoder plugin" in m for m in messages) and "a real warning" in messages
