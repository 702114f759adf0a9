"""A fine-tuning run folder never mixes two runs nor keeps stale results (issue 21, section 1).

``resume="auto"`` continues a run only when its settings, data content, starting weights and package version are
those of the run in the folder (``identity.json``), apart from the declared safe changes (more epochs), which are
logged and recorded; a finished run with other settings, or a run whose checkpoint is gone, is refused with the
difference named. ``overwrite`` removes every output the run writes, and nothing of the user's, once the new run's
inputs are checked. ``result.json`` records the values that took effect (after ``--set``).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from monai_transfer.cli import main
from monai_transfer.data import make_demo_data
from monai_transfer.engines import RunCheckpoint
from monai_transfer.engines.run_identity import RunChangedError
from monai_transfer.finetune import finetune
from monai_transfer.finetune import run as run_module

TINY = {"backbone": "resnet10", "pretrained": None, "task": "segmentation", "strategy": "full", "batch_size": 4,
        "label_fraction": 0.5, "backbone_kwargs": {"widen_factor": 0.25, "no_max_pool": True},
        "head_kwargs": {"feature_size": 8}, "tensorboard": False, "amp": "off", "test_section": None,
        "overrides": ["warmup_epochs=0.5"]}  # fmt: skip
CLI = ["--backbone", "resnet10", "--task", "segmentation", "--batch-size", "4", "--label-fraction", "0.5",
       "--backbone-arg", "widen_factor=0.25", "no_max_pool=true", "--amp", "off", "--quiet", "--no-tensorboard",
       "--test-section", "", "--no-bundle", "--set", "warmup_epochs=0.5", "--set", 'network_def#head_kwargs={"feature_size": 8}']  # fmt: skip


class _Stop(Exception):
    """Stands for a kill after the checkpoint of epoch 1."""


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """Demo data and a run of 2 epochs stopped after the checkpoint of its first epoch (no result.json)."""
    root = tmp_path_factory.mktemp("identity")
    demo = make_demo_data(root / "demo", n_subjects=12, size=32, n_unlabeled=0, seed=0)
    out = root / "run"
    original = RunCheckpoint.epoch_completed

    def stop_after_first(self, engine):
        original(self, engine)
        if engine.state.epoch == 1:
            raise _Stop

    RunCheckpoint.epoch_completed = stop_after_first
    try:
        with pytest.raises(_Stop):
            finetune(datalist=demo["tissue_seg_2d"], out_dir=out, epochs=2, **TINY)
    finally:
        RunCheckpoint.epoch_completed = original
    assert (out / "checkpoints" / "last.pt").is_file() and not (out / "result.json").exists()
    assert (out / "identity.json").is_file()
    return root, out


def _copy(stopped, tmp_path):
    """A copy of the stopped run and of its data (a test may change the data)."""
    root, out = stopped
    shutil.copytree(root / "demo", tmp_path / "demo")
    shutil.copytree(out, tmp_path / "run")
    return tmp_path / "run", str(tmp_path / "demo" / "tissue_seg_2d.json")


def _tree(path):
    return {os.path.relpath(os.path.join(d, f), path): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(path) for f in files}  # fmt: skip


def test_identity_records_what_the_result_depends_on(stopped):
    _, out = stopped
    identity = json.loads((out / "identity.json").read_text())
    settings = identity["settings"]
    assert settings["lr"] == 0.001 and settings["warmup_epochs"] == 0.5  # the config that runs, --set included
    assert settings["train"]["trainer"]["max_epochs"] == 2
    for key in ("resume", "num_workers", "device", "bundle_root", "datalist"):  # they do not change the result
        assert key not in settings
    assert "tissue_seg_2d.json" in identity["data"] and len(identity["data"]) > 10  # the datalist and its files
    assert identity["package_version"] and identity["pretrained"] is None


def test_resume_with_other_settings_or_data_is_refused_before_anything_runs(stopped, tmp_path, capsys):
    out, datalist = _copy(stopped, tmp_path)
    before = _tree(out)
    with pytest.raises(RunChangedError, match=r"other settings: lr: 0.001 -> 0.05\. Continue"):
        finetune(datalist=datalist, out_dir=out, epochs=2, lr=0.05, resume="auto", **TINY)
    # labels changed in the datalist: two training cases swap their label maps
    data = json.loads(open(datalist).read())
    a, b = data["training"][0], data["training"][1]
    a["label"], b["label"] = b["label"], a["label"]
    with open(datalist, "w") as f:
        json.dump(data, f)
    with pytest.raises(RunChangedError, match=r"data content: 1 file\(s\) changed"):
        finetune(datalist=datalist, out_dir=out, epochs=2, resume="auto", **TINY)
    # the command line says it in one sentence, no traceback
    code = main(["finetune", *CLI, "--data", datalist, "--out", str(out), "--epochs", "2", "--lr", "0.05",
                 "--resume", "auto"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "lr: 0.001 -> 0.05" in err and "data content: 1 file(s) changed" in err and "--overwrite" in err
    assert _tree(out) == before  # nothing written, the old config kept
    # the same through a saved config (--config): its --set values count as the flags' do
    from monai_transfer.finetune import finetune_config_run

    with pytest.raises(RunChangedError, match=r"other settings: .*lr: 0.001 -> 0.05"):
        finetune_config_run(out / "configs" / "train.json", out, overrides=["lr=0.05"], resume="auto")
    assert _tree(out) == before


def test_more_epochs_continue_logged_and_recorded_then_a_finished_run_is_checked(stopped, tmp_path, caplog, capsys):
    out, datalist = _copy(stopped, tmp_path)
    with caplog.at_level("WARNING"):
        result = finetune(datalist=datalist, out_dir=out, epochs=3, num_workers=0, resume="auto", **TINY)
    assert "resuming with changed settings: train#trainer#max_epochs: 2 -> 3" in caplog.text
    assert result["epochs_run"] == 3 and result["epochs"] == 3
    saved = json.loads((out / "result.json").read_text())
    assert saved["resumed_with_changes"] == {"train#trainer#max_epochs": [2, 3]}
    assert saved["warmup_epochs"] == 0.5  # the value that took effect (--set), not the argument's 0.0
    # finished: unchanged -> returned as it is; changed (even more epochs) -> refused, named
    assert finetune(datalist=datalist, out_dir=out, epochs=3, resume="auto", **TINY) == saved
    with pytest.raises(RunChangedError, match=r"holds a finished fine-tuning run with other settings: lr: "):
        finetune(datalist=datalist, out_dir=out, epochs=3, lr=0.05, resume="auto", **TINY)
    with pytest.raises(RunChangedError, match=r"train#trainer#max_epochs: 3 -> 5"):
        finetune(datalist=datalist, out_dir=out, epochs=5, resume="auto", **TINY)
    # checkpoints deleted: never trained again over models/model.pt. A finished run (result.json, identity.json) of
    # the same settings is kept as it is (a study drops finished cells' resume state), a changed one refused...
    shutil.rmtree(out / "checkpoints")
    assert finetune(datalist=datalist, out_dir=out, epochs=3, resume="auto", **TINY) == saved
    with pytest.raises(RunChangedError, match=r"holds a finished fine-tuning run with other settings: lr: "):
        finetune(datalist=datalist, out_dir=out, epochs=3, lr=0.05, resume="auto", **TINY)
    # ...and one that cannot be checked or did not finish is refused
    (out / "result.json").unlink()
    before = _tree(out)
    with pytest.raises(FileExistsError, match=r"without its checkpoint .* start again with --overwrite"):
        finetune(datalist=datalist, out_dir=out, epochs=3, resume="auto", **TINY)
    code = main(["finetune", *CLI, "--data", datalist, "--out", str(out), "--epochs", "3", "--resume", "auto"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "without its checkpoint" in err
    assert _tree(out) == before


def test_overwrite_removes_every_run_output_and_nothing_else(stopped, tmp_path, monkeypatch):
    out, datalist = _copy(stopped, tmp_path)
    # what the package writes into a run folder besides training: bundle (hard link), test records, predictions...
    (out / "models").mkdir(exist_ok=True)
    (out / "models" / "model.pt").write_bytes(b"old weights")
    (out / "bundle" / "models").mkdir(parents=True)
    os.link(out / "models" / "model.pt", out / "bundle" / "models" / "model.pt")
    for name in ("test_cases.json", "result.json", "predictions/predictions.jsonl", "robustness/robustness.json",
                 "tensorboard/events.out", "eval/metrics.csv"):  # fmt: skip
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old")
    (out / "notes.txt").write_text("mine")
    (out / "configs" / "my_variant.json").write_text("{}")
    before = _tree(out)
    # a bad input with overwrite: refused, the old run untouched
    with pytest.raises(Exception, match="not_there.json"):
        finetune(datalist=str(tmp_path / "not_there.json"), out_dir=out, epochs=1, resume="overwrite", **TINY)
    with pytest.raises(Exception, match="lr_shedule"):
        finetune(
            datalist=datalist, out_dir=out, epochs=1, resume="overwrite", **{**TINY, "overrides": ["lr_shedule=1"]}
        )
    assert _tree(out) == before
    # a good one: what the folder holds when the new run starts
    seen = {}

    def fake_run_config(config, folder, **kwargs):
        seen["files"] = sorted(_tree(folder))
        raise _Stop

    monkeypatch.setattr(run_module, "run_config", fake_run_config)
    with pytest.raises(_Stop):
        finetune(datalist=datalist, out_dir=out, epochs=1, resume="overwrite", **TINY)
    assert seen["files"] == ["configs/my_variant.json", "identity.json", "notes.txt"]
    assert sorted(_tree(out)) == ["configs/my_variant.json", "notes.txt"]  # a failed start leaves no output
