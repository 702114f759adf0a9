"""The ``monai-transfer`` command, run in-process through ``main(argv)``: help, tables, exit codes and the tour."""

from __future__ import annotations

import json

import pytest
import torch

from monai_transfer.cli import main
from monai_transfer.networks import create_backbone, list_backbones

COMMANDS = [[], ["backbones"], ["data"], ["data", "scan"], ["data", "report"], ["data", "demo"], ["weights"],
            ["weights", "sources"], ["weights", "inspect"], ["weights", "convert"], ["finetune"], ["evaluate"],
            ["rank"], ["robustness"], ["tour"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: monai-transfer" in out and len(out.splitlines()) > 5


def test_backbones_json_lists_the_registry(capsys):
    assert main(["backbones", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_backbones()
    assert "torchvision-imagenet1k-v2" in next(r for r in rows if r["name"] == "resnet50")["pretrained"]


@pytest.fixture
def torchvision_layout_checkpoint(tmp_path):
    """A 2D RGB ResNet-18 state dict with torchvision's keys (ours plus the classifier), as published files are."""
    state = dict(create_backbone("resnet18", spatial_dims=2, in_channels=3).state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    return path


def test_inspect_and_convert_with_provenance(torchvision_layout_checkpoint, tmp_path, capsys):
    ckpt = str(torchvision_layout_checkpoint)
    assert main(["weights", "inspect", ckpt, "--backbone", "resnet18", "--spatial-dims", "3"]) == 0
    out = capsys.readouterr().out
    assert "adapter=torchvision-resnet" in out and "total      120     120      1.00" in out
    target = tmp_path / "r18_3d.pt"
    args = ["weights", "convert", ckpt, "--backbone", "resnet18", "--spatial-dims", "3", "--out", str(target),
            "--provenance", "method=supervised", "input_size=224,224", "modality=natural images"]  # fmt: skip
    assert main(args) == 0
    saved = torch.load(target, weights_only=True)
    assert saved["provenance"]["method"] == "supervised" and saved["provenance"]["input_size"] == [224, 224]
    assert saved["provenance"]["spatial_dims"] == 3 and saved["state_dict"]["conv1.weight"].shape[1:] == (1, 7, 7, 7)


def test_user_errors_are_one_line_and_exit_2(torchvision_layout_checkpoint, tmp_path, capsys):
    assert main(["weights", "inspect", str(tmp_path / "missing.pt"), "--backbone", "resnet18"]) == 2
    assert capsys.readouterr().err.startswith("error: Checkpoint")
    # a ResNet-18 checkpoint does not fit a ResNet-50: strict load refuses and names the keys
    assert main(["weights", "inspect", str(torchvision_layout_checkpoint), "--backbone", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "does not fit resnet50" in err and "layer1.0.conv1.weight" in err
    assert main(["weights", "sources", "--backbone", "efficientnet_b0"]) == 1


def test_tour_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "tour"
    assert main(["tour", "--out", str(out), "--subjects", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert steps["dicom_ingest"]["quarantined_files"] == 0 and steps["dicom_ingest"]["loaded_shape"] == [1, 64, 64, 64]
    assert steps["import_2d_to_3d"]["fraction_loaded"] == 1.0
    assert steps["check_inflation"]["max_abs_diff_3d_vs_2d"] < 1e-4
    assert steps["forward"]["output_shapes"] == {"classification": [1, 2], "segmentation": [1, 3, 64, 64, 64]}
    assert all(v["max_abs_diff_vs_eager"] < 1e-4 for v in steps["export"]["models"].values())
    assert steps["save_and_reload"]["identical"] is True
    ssl = steps["ssl_pretrain"]
    assert ssl["iterations"] == 2 and ssl["fraction_loaded_into_classifier"] == 1.0
    assert all(v == v for v in ssl["epoch_losses"])  # finite, not NaN
    assert "load report" in capsys.readouterr().out


def test_help_names_every_strategy_and_corruption(capsys):
    # the help texts spell the names out so that --help needs no heavy import; this keeps them in step
    from monai_transfer.finetune import list_strategies
    from monai_transfer.transforms.corruptions import CORRUPTIONS

    for command, names in ((["finetune"], list_strategies()), (["robustness"], CORRUPTIONS)):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in names), (command, names)
