"""PretrainSpec: YAML and flags build the same record; bad options are named with where they came from."""

from __future__ import annotations

import pytest
import yaml

from monai_transfer.cli import build_parser, main
from monai_transfer.cli.pretrain import config_from_args
from monai_transfer.engines.specs.pretrain import PretrainSpec, load_pretrain_spec
from monai_transfer.ssl.run import resolve_config

FLAGS = [
    "pretrain",
    "--method",
    "simclr",
    "--backbone",
    "resnet18",
    "--spatial-dims",
    "2",
    "--data",
    "d.json",
    "--out",
    "runs/x",
    "--epochs",
    "3",
    "--roi-size",
    "48",
    "--method-arg",
    "temperature=0.2",
]


def _from_argv(argv: list[str]) -> PretrainSpec:
    return config_from_args(build_parser().parse_args(argv))


def test_yaml_and_flags_build_the_same_config(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "method": "simclr",
                "backbone": "resnet18",
                "spatial_dims": 2,
                "data": "d.json",
                "out": "runs/x",
                "epochs": 3,
                "roi_size": [48],
                "method_kwargs": {"temperature": 0.2},
            }
        )
    )
    assert _from_argv(FLAGS) == _from_argv(["pretrain", "--config", str(path)])


def test_flags_override_the_yaml_file_and_keep_its_other_values(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"method": "byol", "backbone": "resnet10", "epochs": 7, "lr": 0.5}))
    config = _from_argv(["pretrain", "--config", str(path), "--epochs", "2", "--method-arg", "out_dim=64"])
    assert (config.method, config.backbone, config.epochs, config.lr) == ("byol", "resnet10", 2, 0.5)
    assert config.method_kwargs == {"out_dim": 64}


def test_unknown_yaml_key_is_named_with_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"method": "simclr", "learning_rate": 0.1}))
    with pytest.raises(ValueError, match=r"bad\.yaml.*learning_rate"):
        load_pretrain_spec(path)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"modality": "pet"}, "modality"),
        ({"roi_size": [32, 32, 32], "spatial_dims": 2}, "roi_size"),
        ({"teacher_momentum": [0.9, 1.2]}, "teacher_momentum"),
        ({"lr": -1.0}, "lr"),
        ({"epochs": 5, "warmup_epochs": 6}, "warmup_epochs"),
    ],
)
def test_bad_values_raise_naming_the_option(values, match):
    with pytest.raises(ValueError, match=match):
        PretrainSpec.from_mapping(values)


def test_resolve_fills_the_method_recommendations():
    config = resolve_config(PretrainSpec(method="moco-v2", backbone="resnet18", datalist="d.json", out_dir="o"))
    assert config.method == "moco_v2"
    assert config.optimizer == "sgd" and config.lr == pytest.approx(0.03)
    assert config.teacher_momentum == [0.999, 0.999]
    assert config.roi_size == [64, 64]
    assert config.warmup_epochs == 10.0  # 10 % of the default 100 epochs
    dino = resolve_config(PretrainSpec(method="dino", backbone="resnet18", datalist="d", out_dir="o", epochs=10))
    assert dino.teacher_temperature == [0.04, 0.07, 10.0]
    assert (dino.weight_decay, dino.weight_decay_end) == (0.04, 0.4)  # DINO's cosine weight decay
    assert dino.warmup_epochs == 1.0


def test_user_values_win_over_the_method_recommendations():
    config = resolve_config(
        PretrainSpec(method="moco_v2", backbone="resnet18", datalist="d", out_dir="o", lr=0.1, teacher_momentum=[0.9, 0.99])
    )
    assert config.lr == 0.1 and config.teacher_momentum == [0.9, 0.99]


def test_method_that_does_not_fit_the_backbone_is_a_clear_cli_error(capsys):
    code = main(["pretrain", "--method", "mae", "--backbone", "resnet18", "--data", "d.json", "--out", "o",
                 "--print-config"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "mae" in err and "resnet18" in err and "vit_small_patch16" in err


def test_missing_required_option_is_a_clear_cli_error(capsys):
    code = main(["pretrain", "--method", "simclr", "--backbone", "resnet18", "--out", "o", "--print-config"])
    assert code == 2
    assert "'datalist' (--data" in capsys.readouterr().err


def test_print_config_writes_yaml_that_loads_back(tmp_path, capsys):
    assert main([*FLAGS, "--print-config"]) == 0
    path = tmp_path / "resolved.yaml"
    path.write_text(capsys.readouterr().out)
    config = load_pretrain_spec(path)
    assert config.method == "simclr" and config.roi_size == [48, 48] and config.optimizer == "adamw"
    assert config.method_kwargs == {"temperature": 0.2}


def test_list_shows_every_method_and_what_it_fits(capsys):
    from monai_transfer.ssl import list_methods

    assert main(["pretrain", "--list"]) == 0
    out = capsys.readouterr().out
    for name in list_methods():
        assert name in out
    mae_row = next(line for line in out.splitlines() if line.startswith("mae "))
    assert "vit_small_patch16" in mae_row and "resnet18" not in mae_row
