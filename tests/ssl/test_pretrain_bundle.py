"""Pretraining as a MONAI bundle config: the ids it holds, method/family defaults as data, ``--set``, the intensity
spec, and the checks that name a bad option before anything is written. No training here (see
``test_pretrain_checks.py`` and ``test_pretrain_run.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_transfer.bundle.templates.pretrain import is_bundle_config, pretrain_config
from monai_transfer.cli import build_parser, main
from monai_transfer.cli.pretrain import config_from_args
from monai_transfer.engines.specs.pretrain import PretrainSpec
from monai_transfer.ssl.registry import get_method_spec, list_methods
from monai_transfer.transforms.intensity_spec import intensity_spec

BASE = {"data": "d.json", "out": "runs/x", "spatial_dims": 2}
FLAGS = ["pretrain", "--method", "simclr", "--backbone", "resnet10", "--data", "d.json", "--out", "runs/x"]


def _config(**values) -> dict:
    return pretrain_config(PretrainSpec.from_mapping({**BASE, **values}))


def test_the_config_has_the_ids_of_a_train_json():
    cfg = _config(method="simclr", backbone="resnet10", modality="mr")
    for cid in ("bundle_root", "output_dir", "device", "seed", "network_def", "method", "optimizer", "initialize",
                "run", "finalize", "intensity", "provenance"):  # fmt: skip
        assert cid in cfg, cid
    for cid in ("preprocessing", "augmentation", "dataset", "dataloader", "handlers", "trainer", "check", "resume"):
        assert cid in cfg["train"], cid
    assert cfg["network_def"]["name"] == "resnet10" and cfg["method"]["name"] == "simclr"
    assert cfg["intensity"] == {"name": "preset", "preset": "mr"}  # the modality's preset, as data
    assert cfg["provenance"]["preprocessing"] == {"intensity": "@intensity"}  # recorded exactly as used
    assert "$@train#trainer.run()" in cfg["run"]
    assert is_bundle_config(cfg) and not is_bundle_config({"method": "simclr", "epochs": 3})
    json.dumps(cfg)  # JSON all through: it is saved as configs/pretrain.json


def _targets(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["_target_"]] if "_target_" in node else []) + [t for v in node.values() for t in _targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _targets(v)]
    return []


def test_our_components_are_fully_qualified():
    cfg = _config(method="dino", backbone="resnet10", monitor_data="m.json", mlflow_uri="sqlite:///x.db")
    ours = [t for t in _targets(cfg) if "." in t]
    assert ours and all(t.startswith(("monai_transfer.", "torch.", "monai.")) for t in ours), ours
    short = {t for t in _targets(cfg) if "." not in t}  # MONAI's own names, found by its locator
    monai_names = {"LoadImaged", "EnsureTyped", "Compose", "SimpleInferer"}
    assert short <= monai_names | {"StatsHandler", "TensorBoardStatsHandler", "MLFlowHandler"}


@pytest.mark.parametrize(
    "method, backbone, view_key, value",
    [
        ("mae", "vit_small_patch16", "mask_patch_size", "$list(@network_def.patch_size)"),
        ("dino", "vit_small_patch16", "local_roi_size", "@roi_size"),
    ],
)
def test_family_specific_view_options_come_from_the_method_spec(method, backbone, view_key, value):
    cfg = _config(method=method, backbone=backbone, roi_size=[32])
    assert cfg["train"]["augmentation"][view_key] == value
    assert get_method_spec(method).view_defaults["vit"][view_key] == value
    assert cfg["network_def"]["img_size"] == "@roi_size"  # a ViT's input is the view crop (BACKBONE_DEFAULTS)
    cnn = _config(method=method if method != "mae" else "simmim", backbone="resnet10")
    assert view_key not in cnn["train"]["augmentation"] and "img_size" not in cnn["network_def"]


def test_a_user_view_option_wins_over_the_family_default():
    cfg = _config(method="mae", backbone="vit_small_patch16", roi_size=[32], view_kwargs={"mask_patch_size": 8})
    assert cfg["train"]["augmentation"]["mask_patch_size"] == 8


def test_chance_values_are_data_in_the_method_specs():
    contrastive = {n for n in list_methods() if get_method_spec(n).chance_loss}
    assert contrastive == {"simclr", "moco_v2", "moco_v3"}
    from monai_transfer.networks import create_backbone
    from monai_transfer.ssl import create_method
    from monai_transfer.ssl.handlers import chance_loss

    net = create_backbone("resnet10", spatial_dims=2, widen_factor=0.25)
    simclr = create_method("simclr", net, projection_dim=8)
    assert chance_loss(get_method_spec("simclr").chance_loss, simclr, 32) == pytest.approx(np.log(63))
    moco = create_method("moco_v2", create_backbone("resnet10", spatial_dims=2, widen_factor=0.25), queue_size=64)
    assert chance_loss(get_method_spec("moco_v2").chance_loss, moco, 8) == pytest.approx(np.log(65))
    v3 = create_method("moco_v3", create_backbone("resnet10", spatial_dims=2, widen_factor=0.25), temperature=0.5)
    assert chance_loss(get_method_spec("moco_v3").chance_loss, v3, 8) == pytest.approx(4 * 0.5 * np.log(8))


def test_the_simclr_loss_of_identical_embeddings_is_its_chance_value():
    from monai_transfer.losses.ntxent import NTXentLoss

    z = torch.ones(16, 8)  # 16 samples whose two views embed identically: no information
    assert float(NTXentLoss(temperature=0.5)(z, z)) == pytest.approx(np.log(2 * 16 - 1), rel=1e-6)


def test_print_bundle_applies_set_overrides(capsys):
    assert main([*FLAGS, "--print-bundle", "--set", "epochs=3", "--set", "train#chance#patience=5",
                 "--set", "intensity={\"name\": \"minmax\"}"]) == 0  # fmt: skip
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["epochs"] == 3 and cfg["train"]["chance"]["patience"] == 5 and cfg["intensity"] == {"name": "minmax"}


def test_an_unknown_set_id_is_named_with_close_ones(capsys):
    assert main([*FLAGS, "--print-bundle", "--set", "train#chanse#patience=5"]) == 2
    err = capsys.readouterr().err
    assert "train#chanse" in err and "train#chance" in err


@pytest.mark.parametrize(
    "arg, words",
    [
        ("temprature=0.1", ["'temprature'", "did you mean 'temperature'", "projection_dim"]),
        ("temperature=abc", ["'temperature'", "must be a number", "'abc'"]),
        ("num_layers=2.5", ["'num_layers'", "must be an integer"]),
    ],
)
def test_unknown_or_mistyped_method_args_name_the_key(arg, words, capsys):
    assert main([*FLAGS, "--print-config", "--method-arg", arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1
    assert all(w in err for w in words), err


def test_an_unknown_view_arg_is_named(capsys):
    assert main([*FLAGS, "--print-config", "--view-arg", "mask_ratio=0.5"]) == 2
    err = capsys.readouterr().err
    assert "view_kwargs" in err and "'simclr'" in err and "mask_ratio" in err and "Traceback" not in err


def test_a_mistyped_option_in_a_yaml_file_is_named_not_run_as_a_bundle(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("method: simclr\nbackbone: resnet10\ndata: d.json\nout: o\nlearning_rate: 0.1\n")
    assert main(["pretrain", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "p.yaml" in err


def test_yaml_method_kwargs_are_checked_too(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("method: byol\nbackbone: resnet10\ndata: d.json\nout: o\nmethod_kwargs: {out_dimm: 64}\n")
    assert main(["pretrain", "--config", str(path), "--print-config"]) == 2
    assert "'out_dimm'" in capsys.readouterr().err


def test_intensity_flags_and_yaml_build_the_same_spec(tmp_path):
    flags = config_from_args(build_parser().parse_args(
        [*FLAGS, "--intensity", "percentile", "--intensity-arg", "lower=0.5", "upper=99.5"]))  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text("method: simclr\nbackbone: resnet10\ndata: d.json\nout: runs/x\n"
                    "intensity: {name: percentile, lower: 0.5, upper: 99.5}\n")  # fmt: skip
    yaml_cfg = config_from_args(build_parser().parse_args(["pretrain", "--config", str(path)]))
    assert flags.intensity == yaml_cfg.intensity == {"name": "percentile", "lower": 0.5, "upper": 99.5}
    # an --intensity-arg alone adjusts the file's scheme
    tuned = config_from_args(build_parser().parse_args(["pretrain", "--config", str(path), "--intensity-arg",
                                                        "upper=99"]))  # fmt: skip
    assert tuned.intensity == {"name": "percentile", "lower": 0.5, "upper": 99}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("minmax", {"name": "minmax"}),
        ("ct_lung", {"name": "preset", "preset": "ct_lung"}),
        ({"name": "range", "a_min": 0, "a_max": 255}, {"name": "range", "a_min": 0, "a_max": 255}),
        ({"name": "none"}, {"name": "none"}),
    ],
)
def test_intensity_specs(value, expected):
    assert intensity_spec(value) == expected


@pytest.mark.parametrize(
    "value, match",
    [
        ("minmx", "unknown intensity 'minmx'"),
        ({"name": "percentile", "lowr": 1}, "no parameter 'lowr'"),
        ({"name": "range", "a_min": 0}, "a_max"),
        ({"name": "preset", "preset": "pet"}, "preset 'pet' is unknown"),
    ],
)
def test_bad_intensity_specs_are_named(value, match):
    with pytest.raises(ValueError, match=match):
        intensity_spec(value, where="p.yaml")


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("spec", [{"name": "minmax"}, {"name": "percentile", "lower": 1, "upper": 99},
                                  {"name": "zscore"}, {"name": "range", "a_min": 0, "a_max": 255}, {"name": "none"},
                                  {"name": "preset", "preset": "xr"}])  # fmt: skip
def test_every_intensity_works_in_2d_and_3d(spec, spatial_dims):
    from monai.transforms import Compose

    from monai_transfer.ssl.images import intensity_transforms

    rng = np.random.default_rng(0)
    image = torch.as_tensor(rng.integers(0, 256, (1,) + (12,) * spatial_dims).astype(np.float32))
    out = Compose(intensity_transforms(spec))({"image": image})["image"]
    assert out.shape == image.shape and torch.isfinite(torch.as_tensor(out)).all()
    assert float(torch.as_tensor(out).std()) > 0


def test_xr_3d_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="'xr'.*2-D.*--intensity"):
        PretrainSpec.from_mapping({**BASE, "modality": "xr", "spatial_dims": 3})


def _datalist(tmp_path, sections, name: str = "d.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(sections))
    return str(path)


def test_an_empty_unlabeled_section_is_reported_as_empty(tmp_path):
    from monai_transfer.data import DatalistError
    from monai_transfer.ssl.images import load_images

    (tmp_path / "a.nii.gz").write_bytes(b"")
    path = _datalist(tmp_path, {"unlabeled": [], "training": [{"image": "./a.nii.gz"}]})
    with pytest.raises(DatalistError, match="section 'unlabeled' is empty"):
        load_images(path)
    with pytest.raises(DatalistError, match=r"no section 'unlabeled' or 'training'.*\['test'\]"):
        load_images(_datalist(tmp_path, {"test": [{"image": "./a.nii.gz"}]}, "other.json"))
    assert load_images(path, section="training").section == "training"


def test_the_monitor_refuses_volumes_for_2d_pretraining(tmp_path):
    import nibabel as nib

    from monai_transfer.ssl.monitor import monitor_sets

    rows = []
    for i in range(2):
        nib.save(nib.Nifti1Image(np.random.default_rng(i).random((8, 8, 8)).astype(np.float32), np.eye(4)),
                 str(tmp_path / f"v{i}.nii.gz"))  # fmt: skip
        rows.append({"image": f"./v{i}.nii.gz", "label": i})
    path = _datalist(tmp_path, {"training": rows})
    with pytest.raises(ValueError, match=r"v0\.nii\.gz has 3 spatial dimensions but pretraining is 2-D"):
        monitor_sets(path, 2, (8, 8), intensity={"name": "minmax"})
    train, val = monitor_sets(path, 3, (8, 8, 8), intensity={"name": "minmax"})
    assert len(train) == 2 and val is None and float(train[0]["image"].max()) == pytest.approx(1.0)


class _Engine:
    def __init__(self) -> None:
        from types import SimpleNamespace

        self.state = SimpleNamespace(output={"loss": 0.0}, metrics={})


def _feed(losses, epochs):
    from monai_transfer.ssl.handlers import EpochLosses

    tracker, engine = EpochLosses(), _Engine()
    for epoch in epochs:
        for value in epoch:
            engine.state.output = {"loss": value}
            tracker._accumulate(engine)
        tracker._epoch_mean(engine)
    return tracker


def test_chance_monitor_flags_a_loss_stuck_at_chance_but_not_one_that_scatters_around_it():
    from monai_transfer.ssl.handlers import ChanceLossMonitor

    chance = float(np.log(7))
    stuck = _feed(None, [[chance + 1e-4, chance - 1e-4]] * 3)
    learning = _feed(None, [[chance + 0.1, chance - 0.1]] * 3)  # epoch means at chance, the steps are not

    def monitor(losses):
        m = ChanceLossMonitor(losses, "log(2 * batch - 1)", torch.nn.Identity(), batch_size=4, patience=3)
        m(_Engine())
        return m

    assert monitor(stuck).warnings and "chance value 1.9459" in monitor(stuck).warnings[0]
    assert not monitor(learning).warnings
    assert not monitor(_feed(None, [[chance, chance]] * 2)).warnings  # fewer epochs than the patience
    warm = ChanceLossMonitor(stuck, "log(2 * batch - 1)", torch.nn.Identity(), 4, patience=3, warmup_epochs=1)
    warm(_Engine())
    assert not warm.warnings  # warm-up epochs do not count: 2 epochs left
    # the state travels with the checkpoint: a resumed tracker decides the same
    restored = _feed(None, [])
    restored.load_state_dict(stuck.state_dict())
    assert monitor(restored).warnings
