"""``monai-transfer weights doctor``: exit codes, one-sentence errors without a traceback, the report on stdout, and
the converted file written atomically and loaded strictly by ``weights inspect`` (the ``--pretrained`` path)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torchvision
from torch import nn

from monai_transfer.cli import main


@pytest.fixture
def lightning_file(randomize, save_checkpoint):
    """A Lightning checkpoint of a classifier held as ``self.model`` (``state_dict`` with ``model.`` keys)."""
    resnet = randomize(torchvision.models.resnet18(), seed=4)
    state = {f"model.{k}": v for k, v in resnet.state_dict().items()}
    return save_checkpoint({"epoch": 3, "global_step": 30, "state_dict": state}, "epoch=3.ckpt"), resnet


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_doctor_converts_and_the_file_loads_strictly(lightning_file, tmp_path, capsys):
    path, resnet = lightning_file
    out = tmp_path / "converted" / "resnet18.pt"
    args = ["weights", "doctor", str(path), "--backbone", "resnet18", "--in-channels", "3", "--out", str(out)]
    assert main(args + ["--provenance", "method=supervised", "modality=CT"]) == 0
    printed = capsys.readouterr().out
    assert "names: prefix 'model.', read as-is" in printed and "container: state_dict" in printed
    assert "total                100     100      1.00" in printed and f"wrote {out}" in printed
    assert os.listdir(out.parent) == ["resnet18.pt"]  # renamed into place: no temporary file beside it
    saved = torch.load(out, weights_only=True)
    assert saved["provenance"]["method"] == "supervised" and saved["provenance"]["modality"] == "CT"
    assert saved["provenance"]["extra"]["weights_doctor"]["prefix"] == "model."
    assert torch.equal(saved["state_dict"]["layer4.1.bn2.running_var"], resnet.state_dict()["layer4.1.bn2.running_var"])
    assert main(["weights", "inspect", str(out), "--backbone", "resnet18", "--in-channels", "3"]) == 0
    assert "total" in capsys.readouterr().out


def test_doctor_json(lightning_file, capsys):
    path, _ = lightning_file
    assert main(["weights", "doctor", str(path), "--backbone", "resnet18", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["prefix"] == "model." and data["matches"]["conv1.weight"]["surgery"].startswith("in_")


def test_a_checkpoint_that_fits_no_backbone_exits_2_with_one_sentence(randomize, save_checkpoint, tmp_path, capsys):
    path = save_checkpoint(randomize(torchvision.models.squeezenet1_0()).state_dict(), "squeeze.pth")
    out = tmp_path / "never.pt"
    assert main(["weights", "doctor", str(path), "--backbone", "resnet18", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert line.startswith(f"error: {path} fits no part of resnet18 (100 tensors): none of its 52 tensors")
    assert "unmatched backbone tensors" in captured.out  # the report is still printed
    assert not out.exists()
    assert main(["weights", "doctor", str(path), "--backbone", "resnet18"]) == 2  # refused without --out too


def test_an_incomplete_mapping_exits_1_and_is_refused_with_out(randomize, save_checkpoint, tmp_path, capsys):
    resnet = randomize(torchvision.models.resnet18())
    state = {
        k.replace("layer1.0.", "blockA.").replace("layer1.1.", "blockB."): v for k, v in resnet.state_dict().items()
    }
    path = save_checkpoint(state, "renamed.pth")
    assert main(["weights", "doctor", str(path), "--backbone", "resnet18"]) == 1
    assert "ambiguous (reported, not taken)" in capsys.readouterr().out
    out = tmp_path / "never.pt"
    assert main(["weights", "doctor", str(path), "--backbone", "resnet18", "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "fills 80 of the 100 tensors of resnet18" in line and "ambiguous, not taken" in line
    assert not out.exists()


def test_inflation_needs_the_flag(save_checkpoint, tmp_path, capsys):
    path = save_checkpoint(nn.DataParallel(torchvision.models.resnet18()).state_dict(), "dp.pth")
    args = ["weights", "doctor", str(path), "--backbone", "resnet18", "--spatial-dims", "3"]
    assert main(args) == 1
    assert "pass --inflate" in capsys.readouterr().out
    assert main(args + ["--inflate", "mean", "--out", str(tmp_path / "r18_3d.pt")]) == 0
    args = ["weights", "inspect", str(tmp_path / "r18_3d.pt"), "--backbone", "resnet18", "--spatial-dims", "3"]
    assert main(args) == 0


def test_doctor_refuses_to_overwrite_its_input_and_unreadable_files(lightning_file, tmp_path, capsys):
    path, _ = lightning_file
    before = path.read_bytes()
    assert main(["weights", "doctor", str(path), "--backbone", "resnet18", "--out", str(path)]) == 2
    assert "refusing to overwrite the input" in _one_error_line(capsys.readouterr().err)
    assert path.read_bytes() == before
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x13" + os.urandom(1023))
    assert main(["weights", "doctor", str(bad), "--backbone", "resnet18"]) == 2
    assert "is not a readable checkpoint" in _one_error_line(capsys.readouterr().err)
    assert main(["weights", "doctor", str(tmp_path / "missing.pt"), "--backbone", "resnet18"]) == 2
    assert "does not exist" in _one_error_line(capsys.readouterr().err)


def test_backbone_options_reach_the_backbone_and_the_message(randomize, save_checkpoint, tmp_path, capsys):
    from monai.networks.nets import SwinUNETR

    swin = randomize(SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=3))
    path = save_checkpoint({"state_dict": swin.state_dict()}, "swin.pt")
    out = tmp_path / "swin_encoder.pt"
    args = ["weights", "doctor", str(path), "--backbone", "swin_unetr", "--backbone-kwargs", "feature_size=12"]
    assert main(args + ["--spatial-dims", "2", "--out", str(out)]) == 2  # 3D kernels for a 2D backbone
    assert "holds 3D kernels" in _one_error_line(capsys.readouterr().err) and not out.exists()
    assert main(args + ["--out", str(out)]) == 0  # --spatial-dims defaults to the checkpoint's own (3)
    printed = capsys.readouterr().out
    assert "names: prefix 'swinViT.', read as-is" in printed and "backbone options feature_size=12" in printed
    assert torch.load(out, weights_only=True)["provenance"]["extra"]["backbone_kwargs"] == {"feature_size": 12}


def test_doctor_help_names_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as code:
        main(["weights", "doctor", "--help"])
    assert code.value.code == 0
    text = capsys.readouterr().out
    assert "Exit codes" in text and "--inflate" in text and "--prefix" in text and "--out" in text
