"""The typed run specification (issue 22): one field is one setting everywhere. A field added here (in a subclass put
into the registry ``RUN_SPECS``) appears in ``finetune --help``, is accepted and checked by a study spec, and reaches
the rendered bundle config from the command line, the Python API and a study cell alike. Nothing trains."""

from __future__ import annotations

import dataclasses
import json

import pytest

from monai_transfer.cli import build_parser, main
from monai_transfer.data import make_demo_data
from monai_transfer.engines.specs import RUN_SPECS, FinetuneSpec, SpecFieldError, setting, spec_fields


@dataclasses.dataclass
class _WithNewSetting(FinetuneSpec):
    mixup_alpha: float = setting(0.0, "a setting this test adds (mixup strength)", minimum=0.0, config_id="mixup_alpha")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("specs"), n_subjects=6, size=16, n_unlabeled=1, seed=0,
                          progress=False)  # fmt: skip


@pytest.fixture
def extended(monkeypatch):
    monkeypatch.setitem(RUN_SPECS, "finetune", _WithNewSetting)


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--help"])
    return capsys.readouterr().out


TINY = ["--backbone", "resnet10", "--backbone-arg", "widen_factor=0.25", "--task", "classification"]


def test_a_new_field_is_a_flag_with_its_help(extended, capsys):
    text = _help(capsys)
    assert "--mixup-alpha MIXUP_ALPHA" in text and "a setting this test adds (mixup strength)" in text


@pytest.mark.parametrize("kind", ["finetune", "pretrain", "evaluate", "infer"])
def test_every_field_with_a_flag_is_in_its_commands_help(kind, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([kind, "--help"])
    text = capsys.readouterr().out
    for f in spec_fields(RUN_SPECS[kind], cli=True):
        shown = f.name if f.metadata.get("positional") else f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert shown in text, (kind, f.name)
        assert " ".join(f.metadata["help"].split()[:3]) in " ".join(text.split()), (kind, f.name)


def test_a_new_field_reaches_the_config_from_the_command_line(extended, capsys, demo, tmp_path):
    argv = ["finetune", *TINY, "--data", demo["lesion_cls_3d"], "--out", str(tmp_path / "run"), "--print-bundle"]
    assert main([*argv, "--mixup-alpha", "0.4"]) == 0
    assert json.loads(capsys.readouterr().out)["mixup_alpha"] == 0.4
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["mixup_alpha"] == 0.0  # the field's default
    assert main([*argv, "--mixup-alpha", "-1"]) != 0
    assert "mixup_alpha: must be >= 0.0, got -1.0" in capsys.readouterr().err


def test_a_new_field_reaches_a_written_bundle_and_a_monai_label_training_request(extended, tmp_path):
    from monai_transfer.bundle import create_bundle
    from monai_transfer.label.train_request import request_overrides, train_options

    out = create_bundle(tmp_path / "b", "resnet10", "classification", 2, 2, backbone_kwargs={"widen_factor": 0.25},
                        mixup_alpha=0.3)  # fmt: skip
    train = json.loads((out / "configs" / "train.json").read_text())
    assert train["mixup_alpha"] == 0.3
    # MONAI Label's training panel offers it at the bundle's value; a request sets it, checked as the field
    assert train_options(train)["mixup_alpha"] == 0.3
    assert request_overrides({"mixup_alpha": "0.5", "max_epochs": 2}) == {"mixup_alpha": 0.5,
                                                                         "train#trainer#max_epochs": 2}  # fmt: skip
    with pytest.raises(SpecFieldError, match=r"request.mixup_alpha: must be >= 0.0, got -1"):
        request_overrides({"mixup_alpha": -1})
    with pytest.raises(SpecFieldError, match="mixup_alpha: must be >= 0.0"):
        create_bundle(tmp_path / "bad", "resnet10", "classification", 2, 2, mixup_alpha=-1.0)
    assert not (tmp_path / "bad").exists()


def test_a_new_field_reaches_the_config_from_python(extended, demo, tmp_path):
    from monai_transfer.finetune import finetune

    config = finetune("resnet10", None, "classification", datalist=demo["lesion_cls_3d"], out_dir=tmp_path / "r",
                      backbone_kwargs={"widen_factor": 0.25}, mixup_alpha=0.25, print_config=True)  # fmt: skip
    assert config["mixup_alpha"] == 0.25
    assert not (tmp_path / "r").exists()


def test_a_new_field_is_accepted_by_a_study_spec_and_reaches_the_cells_config(extended, demo, tmp_path):
    from monai_transfer.study import parse_spec
    from monai_transfer.study.probes import cell_config
    from monai_transfer.study.runner import cell_payload, plan_study

    spec = parse_spec({"name": "s", "targets": [{"name": "t", "data": demo["lesion_cls_3d"], "task": "classification",
                                                 "spatial_dims": 3}],
                       "starts": ["random"], "backbones": ["resnet10"], "seeds": [0], "transferability": False,
                       "finetune": {"mixup_alpha": 0.3, "epochs": 1, "backbone_kwargs": {"widen_factor": 0.25}}})  # fmt: skip
    assert spec.finetune["mixup_alpha"] == 0.3
    cell = plan_study(spec, tmp_path / "study")[0]
    config = cell_config(cell_payload(cell, spec, None, tmp_path / "study"))
    assert config["mixup_alpha"] == 0.3 and config["train"]["trainer"]["max_epochs"] == 1


def test_a_study_spec_refuses_a_field_that_does_not_exist_and_names_the_closest(demo):
    from monai_transfer.study import parse_spec
    from monai_transfer.study.spec import SpecError

    base = {"name": "s", "targets": [{"name": "t", "data": demo["lesion_cls_3d"], "task": "classification",
                                      "spatial_dims": 3}], "starts": ["random"], "backbones": ["resnet10"], "seeds": [0]}  # fmt: skip
    with pytest.raises(SpecError, match=r"finetune\.mixup_alpha: unknown key"):
        parse_spec({**base, "finetune": {"mixup_alpha": 0.3}})
    with pytest.raises(SpecError, match=r"finetune\.epoch: unknown key; did you mean 'epochs'\?"):
        parse_spec({**base, "finetune": {"epoch": 3}})
    with pytest.raises(SpecError, match=r"finetune\.lr: expected a number, got 'fast'"):
        parse_spec({**base, "finetune": {"lr": "fast"}})
    with pytest.raises(SpecError, match=r"finetune\.backbone: unknown key"):  # each cell sets its backbone
        parse_spec({**base, "finetune": {"backbone": "resnet50"}})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs: must be >= 1, got 0"),
        ({"label_fraction": 0.0}, "label_fraction: must be > 0.0, got 0.0"),
        ({"label_fraction": 1.5}, "label_fraction: must be <= 1.0, got 1.5"),
        ({"task": "detection"}, "task: one of 'classification', 'segmentation', got 'detection'"),
        ({"optimizer": "adam"}, "optimizer: one of 'adamw', 'sgd', got 'adam'; did you mean 'adamw'?"),
        ({"amp": "maybe"}, "amp: one of 'auto', 'on', 'off' (or true/false), got 'maybe'"),
        ({"spatial_size": [32, "x"]}, "spatial_size: expected"),
        ({"augment": "yes"}, "augment: expected true or false, got 'yes'"),
        ({"batchsize": 4}, "batchsize: unknown key; did you mean 'batch_size'?"),
    ],
)
def test_bad_values_are_named_with_their_field(values, message):
    with pytest.raises(SpecFieldError) as err:
        FinetuneSpec.from_mapping(values)
    assert message in str(err.value)


def test_spellings_are_normalised_once():
    spec = FinetuneSpec(amp=True, channels_last=False, compile=None, out_dir=__import__("pathlib").Path("x"),
                        epochs=3.0)  # fmt: skip
    assert (spec.amp, spec.channels_last, spec.compile, spec.out_dir, spec.epochs) == ("on", "off", "off", "x", 3)


def test_a_pretraining_file_of_the_older_names_reads_as_the_shared_ones(tmp_path):
    from monai_transfer.engines.specs import PretrainSpec, load_pretrain_spec

    path = tmp_path / "config.yaml"  # as pretraining wrote config.yaml before the shared names
    path.write_text("method: simclr\nbackbone: resnet10\ndata: d.json\nout: runs/x\noverwrite: false\nresume: null\n")
    spec = load_pretrain_spec(path)
    assert (spec.datalist, spec.out_dir, spec.resume) == ("d.json", "runs/x", "never")
    assert PretrainSpec.from_mapping({"out": "o", "overwrite": True}).resume == "overwrite"
    with pytest.raises(SpecFieldError, match="out: give out or out_dir, not both"):
        PretrainSpec.from_mapping({"out": "a", "out_dir": "b"})
    with pytest.raises(SpecFieldError, match="overwrite: replaces the run; it cannot resume it"):
        PretrainSpec.from_mapping({"overwrite": True, "resume": "auto"})
    path.write_text("method: simclr\nepochs: 0\n")
    with pytest.raises(SpecFieldError, match=r"config\.yaml: epochs: must be >= 1, got 0"):
        load_pretrain_spec(path)


@pytest.mark.parametrize(
    "kind, values, message",
    [
        ("evaluate", {"checkpoint": "r", "datalist": "d.json", "threshold": "median"}, "threshold: threshold rule"),
        ("evaluate", {"checkpoint": "r", "datalist": "d.json", "calibrate": "platt"}, "calibrate: one of 'run'"),
        ("evaluate", {"checkpoint": "r"}, "give the run folder (checkpoint) and its datalist"),
        ("infer", {"bundle": "b", "images": ["x.nii.gz"]}, "give the bundle, --images and --out"),
        ("infer", {"bundle": "b", "images": "x.nii.gz", "out_dir": "o"}, "images: expected a list"),
        ("pretrain", {"modality": "xr", "spatial_dims": 3}, "modality: 'xr' (radiograph augmentations) is 2-D"),
        ("pretrain", {"resume": "no/such/file.pt"}, "resume: never, auto, overwrite or a checkpoint file"),
    ],
)
def test_each_kind_names_the_field_of_a_bad_value(kind, values, message):
    with pytest.raises(SpecFieldError) as err:
        RUN_SPECS[kind].from_mapping(values)
    assert message in str(err.value)


def test_threads_hold_for_the_run_only():
    import torch

    from monai_transfer.engines.threads import cpu_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with cpu_threads(other) as used:
        assert used == other and torch.get_num_threads() == other
    assert torch.get_num_threads() == before  # the next run in this process gets its own count, not this one's
    with pytest.raises(RuntimeError), cpu_threads(other):
        raise RuntimeError("a failed run restores the count too")
    assert torch.get_num_threads() == before
    for kind, cls in RUN_SPECS.items():
        with pytest.raises(SpecFieldError, match="threads: must be >= 1, got 0"):
            cls.from_mapping({"threads": 0})
        assert "--threads" in build_parser()._subparsers._group_actions[0].choices[kind].format_help(), kind


def test_a_word_or_numbers_flag_reads_both(capsys, demo, tmp_path):
    # class_weights is "balanced" or one weight per class: the flag derived from its type takes either
    argv = ["finetune", *TINY, "--data", demo["lesion_cls_3d"], "--out", str(tmp_path / "run"), "--print-bundle"]
    assert main([*argv, "--class-weights", "1", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"]["weight"] == "$torch.tensor([1.0, 3.0])"
    assert main([*argv, "--class-weights", "balanced"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"]["weight"].startswith("$torch.tensor([")
    assert main([*argv, "--class-weights", "1", "x"]) != 0
    assert "class_weights: expected str or list[float] or null, got [1.0, 'x']" in capsys.readouterr().err
