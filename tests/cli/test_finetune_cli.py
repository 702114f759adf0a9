"""``monai-transfer finetune`` / ``infer`` as a user runs them: the run is a bundle config, saved, re-runnable, and
it ends in an inference bundle (issue 9); an existing run is continued or refused, never overwritten (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.cli import main
from monai_transfer.data import load_datalist, make_demo_data

ARGS = ["--backbone", "resnet10", "--task", "classification", "--epochs", "1", "--batch-size", "4",
        "--backbone-arg", "widen_factor=0.25", "--quiet", "--no-tensorboard"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftcli")
    demo = make_demo_data(root / "demo", n_subjects=12, size=32, n_unlabeled=1, seed=0)
    out = root / "run"
    assert main(["finetune", *ARGS, "--data", demo["lesion_cls_3d"], "--out", str(out), "--set", "lr=0.002"]) == 0
    return out, demo, root


def _tree(path):
    return {p: os.stat(os.path.join(d, p)).st_mtime_ns for d, _, files in os.walk(path) for p in files}


def test_run_folder_is_a_bundle_config_and_an_inference_bundle(run):
    out, demo, _ = run
    config = json.loads((out / "configs" / "train.json").read_text())
    assert config["lr"] == 0.002 and config["train"]["trainer"]["max_epochs"] == 1  # flags and --set in one config
    result = json.loads((out / "result.json").read_text())
    assert result["labels"] == ["no_lesion", "lesion"] and result["overrides"] == {"lr": 0.002}
    cases = json.loads((out / "test_cases.json").read_text())["cases"]
    assert all(c["id"].endswith("_T1w.nii.gz") and "/" not in c["id"] for c in cases)  # named, no local path
    # the inference bundle holds the best weights (hard-linked) and passes the linter
    from monai_transfer.bundle import check_bundle

    assert os.path.samefile(out / "bundle" / "models" / "model.pt", out / "models" / "model.pt")
    assert [str(p) for p in check_bundle(out / "bundle", export=False)] == []
    meta = json.loads((out / "bundle" / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "no_lesion", "1": "lesion"}


def test_existing_run_is_refused_or_continued_never_overwritten(run, capsys):
    out, demo, _ = run
    before = _tree(out)
    assert main(["finetune", *ARGS, "--data", demo["lesion_cls_3d"], "--out", str(out)]) == 2
    assert "holds a fine-tuning run already" in capsys.readouterr().err
    assert _tree(out) == before
    # --resume auto on a finished run keeps its result (issue 12: it wrote "seconds": 0.0 over it)
    result = json.loads((out / "result.json").read_text())
    assert main(["finetune", *ARGS, "--data", demo["lesion_cls_3d"], "--out", str(out), "--resume", "auto",
                 "--no-bundle", "--set", "lr=0.002"]) == 0  # fmt: skip (the same settings: issue 21)
    assert json.loads((out / "result.json").read_text()) == result and result["duration_s"] > 0


def test_set_reaches_any_id_and_a_typo_is_named(run, capsys, tmp_path):
    _, demo, _ = run
    out = tmp_path / "p"
    assert main(["finetune", *ARGS, "--data", demo["lesion_cls_3d"], "--out", str(out), "--print-bundle",
                 "--set", "train#dataloader#num_workers=0", "--set", "validate#inferer#_target_=SimpleInferer"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["dataloader"]["num_workers"] == 0 and not out.exists()  # printed, nothing written
    assert main(["finetune", *ARGS, "--data", demo["lesion_cls_3d"], "--out", str(out), "--set", "lr_shedule=1"]) == 2
    assert "no id 'lr_shedule'; did you mean lr_schedule" in capsys.readouterr().err
    assert not out.exists()


def test_saved_config_reruns_with_a_new_seed(run, tmp_path):
    out, _, _ = run
    again = tmp_path / "again"
    code = main(["finetune", "--config", str(out / "configs" / "train.json"), "--out", str(again), "--set", "seed=1",
                 "--no-bundle"])  # fmt: skip
    assert code == 0
    config = json.loads((again / "configs" / "train.json").read_text())
    assert config["seed"] == 1 and config["bundle_root"] == str(again.resolve())
    assert (again / "models" / "model.pt").is_file() and (again / "test_cases.json").is_file()


def test_a_config_run_refuses_flags_it_would_not_read(run, tmp_path, capsys):
    out, _, _ = run
    code = main(["finetune", "--config", str(out / "configs" / "train.json"), "--out", str(tmp_path / "x"),
                 "--epochs", "5", "--data", "other.json"])  # fmt: skip
    assert code == 2 and not (tmp_path / "x").exists()
    err = capsys.readouterr().err
    assert "is a bundle config: set its values with --set ID=VALUE" in err and "not --data, --epochs" in err


def test_infer_and_monai_bundle_run_write_class_probabilities(run, tmp_path):
    out, demo, _ = run
    images = tmp_path / "images"
    images.mkdir()
    for e in load_datalist(demo["lesion_cls_3d"], "test")[:2]:
        os.link(e["image"], images / os.path.basename(e["image"]))
    assert main(["infer", str(out), "--images", str(images), "--out", str(tmp_path / "pred")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and set(rows[0]["probabilities"]) == {"no_lesion", "lesion"}
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    # the same bundle through MONAI's own entry point
    bundle = out / "bundle"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(images), "--output_dir", str(tmp_path / "mb")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    again = [json.loads(line) for line in (tmp_path / "mb" / "predictions.jsonl").read_text().splitlines()]
    # flat per class (pytest.approx of nested lists and dicts raises TypeError from pytest 9.2 on)
    assert [sorted(r["probabilities"]) for r in again] == [sorted(r["probabilities"]) for r in rows]
    got = [p for r in again for _, p in sorted(r["probabilities"].items())]
    want = [p for r in rows for _, p in sorted(r["probabilities"].items())]
    assert got == pytest.approx(want, abs=1e-5)


def test_a_volume_given_to_a_2d_bundle_is_named(run, tmp_path, capsys):
    out, _, _ = run
    img = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.float32), np.eye(4)), str(img))
    assert main(["infer", str(out), "--images", str(img), "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert "slice.nii.gz has 2 spatial axes" in err and "network is 3D" in err


def test_mlflow_tracks_loss_and_validation_in_one_run(run, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    _, demo, _ = run
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"  # MLflow 3 has no file store
    out = tmp_path / "tracked"
    assert main(["finetune", *ARGS, "--data", demo["lesion_cls_3d"], "--out", str(out), "--epochs", "2",
                 "--mlflow-uri", uri, "--no-bundle", "--test-section", ""]) == 0  # fmt: skip
    client = mlflow.tracking.MlflowClient(uri)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("monai_transfer_finetune").experiment_id])
    assert len(client.get_metric_history(mlrun.info.run_id, "train_loss")) >= 2
    assert len(client.get_metric_history(mlrun.info.run_id, "auroc")) == 2  # one validation per epoch, same run
    assert mlrun.data.params["backbone"] == "resnet10" and "datalist" not in mlrun.data.params


def test_evaluate_rebuilds_from_the_saved_config_and_takes_set(run, capsys, tmp_path):
    out, demo, _ = run
    assert main(["evaluate", str(out), "--data", demo["lesion_cls_3d"], "--out", str(tmp_path / "m.json")]) == 0
    base = json.loads((tmp_path / "m.json").read_text())
    capsys.readouterr()
    # a value of the run's config changed for this evaluation only: the mapping the network sees differs
    assert main(["evaluate", str(out), "--data", demo["lesion_cls_3d"], "--out", str(tmp_path / "z.json"),
                 "--set", 'validate#preprocessing#transforms#5={"_target_": "ScaleIntensityd", "keys": "image"}']) == 0  # fmt: skip
    other = json.loads((tmp_path / "z.json").read_text())
    assert [c["prob"] for c in other["cases"]] != [c["prob"] for c in base["cases"]]
    assert (
        json.loads((out / "configs" / "train.json").read_text())["validate"]["preprocessing"]["transforms"][5][
            "nonzero"
        ]
        is False
    )  # the run's own config is untouched
    assert main(["evaluate", str(out), "--data", demo["lesion_cls_3d"], "--set", "validate#inferr#x=1"]) == 2
    assert "did you mean validate#inferer" in capsys.readouterr().err
