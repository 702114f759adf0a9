"""``--amp``, ``--channels-last`` and ``--compile`` of ``finetune`` and ``pretrain`` reach the run's config ids
(``amp``, ``channels_last``, ``compile``), as ``--set amp=on`` does; nothing trains here."""

from __future__ import annotations

import json

import pytest

from monai_transfer.cli import build_parser, main
from monai_transfer.data import make_demo_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("speed"), n_subjects=6, size=16, n_unlabeled=1, seed=0,
                          progress=False)  # fmt: skip


def _bundle(capsys, demo, tmp_path, *extra: str) -> dict:
    args = ["finetune", "--backbone", "resnet10", "--task", "classification", "--data", demo["lesion_cls_3d"],
            "--out", str(tmp_path / "run"), "--print-bundle", *extra]  # fmt: skip
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_finetune_defaults_and_flags(capsys, demo, tmp_path):
    config = _bundle(capsys, demo, tmp_path)
    assert (config["amp"], config["channels_last"], config["compile"]) == ("auto", "auto", "off")
    assert config["precision"]["_target_"] == "monai_transfer.engines.resolve_precision"
    config = _bundle(capsys, demo, tmp_path, "--amp", "on", "--channels-last", "off", "--compile", "on")
    assert (config["amp"], config["channels_last"], config["compile"]) == ("on", "off", "on")
    assert _bundle(capsys, demo, tmp_path, "--set", "amp=off")["amp"] == "off"
    assert not (tmp_path / "run").exists()  # printing writes nothing


def test_pretrain_flags_reach_its_config():
    from monai_transfer.cli.pretrain import config_from_args
    from monai_transfer.ssl.bundle_config import pretrain_config

    base = ["pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", "2", "--data", "x.json",
            "--out", "o"]  # fmt: skip
    config = config_from_args(build_parser().parse_args(base))
    assert (config.amp, config.compile) == ("auto", "off")
    config = config_from_args(build_parser().parse_args([*base, "--amp", "off", "--channels-last", "on"]))
    assert (config.amp, config.channels_last) == ("off", "on")
    bundle = pretrain_config(config)
    assert (bundle["amp"], bundle["channels_last"], bundle["compile"]) == ("off", "on", "off")
    assert bundle["train"]["trainer"]["precision"] == "@precision"  # the trainer takes the engines decision


def test_finetune_decision_flags_reach_the_run_spec():
    from monai_transfer.cli.finetune import _settings
    from monai_transfer.engines.specs import FinetuneSpec
    from monai_transfer.finetune.decision import decision_settings

    argv = ["finetune", "--backbone", "resnet10", "--task", "classification", "--data", "d.json", "--out", "o"]
    defaults = FinetuneSpec(**_settings(build_parser().parse_args(argv)))
    assert decision_settings(defaults.threshold, defaults.calibrate, defaults.one_vs_rest) == {
        "rule": "youden", "calibrate": "none", "one_vs_rest": False}  # fmt: skip
    args = build_parser().parse_args([*argv, "--threshold", "f1", "--calibrate", "temperature", "--one-vs-rest"])
    chosen = FinetuneSpec(**_settings(args))
    assert (chosen.threshold, chosen.calibrate, chosen.one_vs_rest) == ("f1", "temperature", True)
