"""``monai-transfer bundle create`` and ``bundle check``, run in-process through ``main(argv)``: help, exit codes
(0 clean, 1 problems, 2 usage), one line per problem."""

from __future__ import annotations

import json

import pytest

from monai_transfer.cli import main

TINY = ["--backbone", "resnet10", "--backbone-arg", "widen_factor=0.125", "--task", "classification",
        "--spatial-dims", "2", "--labels", "normal", "lesion"]  # fmt: skip


@pytest.mark.parametrize("command", [["bundle"], ["bundle", "create"], ["bundle", "check"]], ids=" ".join)
def test_bundle_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "usage: monai-transfer bundle" in text
    if command[-1] == "create":
        for words in ("--pretrained SOURCE|PATH", "large_files.yml", "download_large_files", "models/pretrained/",
                      "--overwrite", "Exit codes", "examples:", "swinunetr-ssl-5050ct"):  # fmt: skip
            assert words in text, words
    if command[-1] == "check":
        for words in (
            "verify_net_in_out",
            "ckpt_export",
            "25 MB",
            "one line per problem",
            "Exit codes: 0",
            "--no-export",
        ):
            assert words in text, words


def test_create_then_check(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bundle", "create", *TINY, "--out", str(out), "--set", "lr=0.0005", "--strategy", "llrd",
                 "--strategy-arg", "decay=0.7"]) == 0  # fmt: skip
    assert f"wrote bundle {out}" in capsys.readouterr().out
    train = json.loads((out / "configs" / "train.json").read_text())
    assert train["lr"] == 0.0005 and train["num_classes"] == 2 and train["labels"] == ["normal", "lesion"]
    assert train["finetune_strategy"]["name"] == "llrd" and train["finetune_strategy"]["decay"] == 0.7
    assert train["network_def"]["pretrained"] == "@pretrained" and train["pretrained"] is None

    assert main(["bundle", "check", str(out), "--no-export"]) == 0
    assert capsys.readouterr().out.strip() == f"{out}: no problems found"

    # an existing folder is refused without --overwrite: one error line, exit 2, the bundle untouched
    assert main(["bundle", "create", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert main(["bundle", "create", *TINY, "--out", str(out), "--overwrite", "--check", "--no-export"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("no problems found")


def test_check_prints_one_line_per_problem_and_exits_1(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bundle", "create", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "LICENSE").unlink()
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    meta["version"] = "0.2.0"  # no changelog entry for it
    (out / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4))
    assert main(["bundle", "check", str(out), "--no-export"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "LICENSE: required file is missing",
        "configs/metadata.json: version: no changelog entry for version 0.2.0",
    ]
    assert "2 problems" in captured.err

    assert main(["bundle", "check", str(out), "--no-export", "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"file": "LICENSE", "key": "", "message": "required file is missing"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bundle", "check", "{tmp}/nope"], "no such folder"),
        (
            ["bundle", "create", "--backbone", "resnet10", "--task", "classification", "--out", "{tmp}/x"],
            "--num-classes or --labels",
        ),
        ([*TINY, "--num-classes", "3", "--out", "{tmp}/x"], "labels"),
        ([*TINY, "--strategy", "everything", "--out", "{tmp}/x"], "unknown fine-tuning strategy"),
        ([*TINY, "--pretrained", "{tmp}/missing.pt", "--out", "{tmp}/x"], "not found"),
        ([*TINY, "--intensity-arg", "a_min=0", "--out", "{tmp}/x"], "--intensity-arg needs --intensity"),
    ],
    ids=["no-folder", "no-classes", "labels-vs-classes", "strategy", "pretrained", "intensity-arg"],
)
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, capsys):
    if argv[0] != "bundle":
        argv = ["bundle", "create", *argv]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "argv",
    [["bundle", "check"], ["bundle", "create", "--task", "classification", "--out", "x"],
     ["bundle", "create", *TINY[:4], "--task", "detection", "--out", "x"]],  # fmt: skip
    ids=["check-no-dir", "create-no-backbone", "create-bad-task"],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: monai-transfer bundle" in capsys.readouterr().err
