"""``monai-transfer pretrain`` end to end on the demo data: outputs, weights that load, resume, monitor, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from monai_transfer.cli import main
from monai_transfer.data import make_demo_data
from monai_transfer.networks import create_backbone
from monai_transfer.ssl import load_pretrain_spec, pretrain
from monai_transfer.weights import read_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """8 unlabeled 32^3 simulated T1w volumes and a 3D lesion-classification datalist for the monitor."""
    return make_demo_data(tmp_path_factory.mktemp("demo"), n_subjects=6, size=32, n_unlabeled=8, seed=0,
                          progress=False)  # fmt: skip


def _flags(demo, out, *extra: str) -> list[str]:
    return [
        "pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", "2", "--data", demo["unlabeled"],
        "--out", str(out), "--modality", "mr", "--roi-size", "32", "--batch-size", "4", "--warmup-epochs", "0",
        "--checkpoint-every", "1", "--quiet", "--method-arg", "projection_dim=32", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run_2d(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("simclr2d")
    assert main(_flags(demo, out, "--epochs", "2")) == 0
    return out


def test_cli_run_writes_every_output(run_2d):
    result = json.loads((run_2d / "result.json").read_text())
    assert result["epochs"] == 2 and result["iterations"] == 4  # 8 images, batch 4, drop_last
    assert len(result["epoch_losses"]) == 2 and all(v == v for v in result["epoch_losses"])
    assert (run_2d / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one checkpoint by default (issue 12: last.pt and last.prev.pt doubled the disk); --keep-previous keeps both
    assert (run_2d / "checkpoints" / "last.pt").is_file() and not (run_2d / "checkpoints" / "last.prev.pt").exists()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_2d / "tensorboard"))
    # the resolved config repeats the run: every default is filled in
    config = load_pretrain_spec(run_2d / "config.yaml")
    assert (config.method, config.optimizer, config.roi_size, config.lr) == ("simclr", "adamw", [32, 32], 1e-3)


def test_encoder_loads_strictly_with_its_provenance(run_2d):
    path = run_2d / "encoder.pt"
    raw = read_checkpoint(path)
    assert raw["provenance"]["backbone_name"] == "resnet10" and raw["provenance"]["spatial_dims"] == 2
    assert raw["provenance"]["method"].startswith("simclr") and raw["provenance"]["modality"] == "MR"
    published = json.dumps(raw["provenance"])
    assert "unl-" not in published and str(run_2d) not in published  # no identifiers or local paths travel
    net = create_backbone("resnet10", spatial_dims=2, in_channels=1, pretrained=str(path))
    report = net.load_report
    assert not report.missing and not report.unexpected and not report.mismatched
    for key, value in net.state_dict().items():
        assert torch.equal(value, raw["state_dict"][key]), key
    # pretraining moved the weights away from the seed's initialisation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        init = create_backbone("resnet10", spatial_dims=2, in_channels=1)
    first = next(iter(init.state_dict()))
    assert not torch.equal(init.state_dict()[first], net.state_dict()[first])


def test_resume_auto_continues_a_finished_run_to_more_epochs(demo, run_2d, tmp_path):
    # copy the finished 2-epoch run, then ask for 3 epochs: it continues from its checkpoint, not from scratch
    import shutil

    out = tmp_path / "continued"
    shutil.copytree(run_2d, out)
    left = [out / "checkpoints" / ".last.pt.tmp-x1y2z3.pt", out / ".encoder.pt.tmp-a1b2c3.pt"]  # as a kill leaves them
    for tmp in left:
        tmp.write_bytes(b"partial")
    assert main(_flags(demo, out, "--epochs", "3", "--resume", "auto")) == 0
    assert not any(tmp.exists() for tmp in left)  # the resume cleans what the killed writes left
    before = json.loads((run_2d / "result.json").read_text())
    after = json.loads((out / "result.json").read_text())
    assert after["resumed_from"].endswith("last.pt")
    assert after["iterations"] == 6 and after["epochs"] == 3
    assert after["epoch_losses"][:2] == before["epoch_losses"]


def test_cached_images_give_the_same_views(demo):
    # --cache runs read + intensity once per image; the random views drawn from them must not change, bit for bit
    from monai_transfer.data.datalist import load_datalist
    from monai_transfer.ssl.data import make_ssl_dataloader
    from monai_transfer.ssl.views import make_load_transforms, make_pretrain_transforms

    images = [{"image": r["image"]} for r in load_datalist(demo["unlabeled"], key="unlabeled")]
    plain = make_pretrain_transforms("simclr", 2, 32, modality="mr")
    random_part = make_pretrain_transforms("simclr", 2, 32, modality="mr", load=False, intensity=None)
    loaders = [
        make_ssl_dataloader(images, plain, batch_size=4, seed=3, num_replicas=1, rank=0),
        make_ssl_dataloader(images, random_part, batch_size=4, seed=3, num_replicas=1, rank=0,
                            cache_transform=make_load_transforms("mr")),  # fmt: skip
    ]
    for loader in loaders:
        loader.sampler.set_epoch(2)
    for a, b in zip(*loaders):
        for key in ("image_v1", "image_v2"):
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key


def test_cached_run_matches_the_plain_run(demo, run_2d, tmp_path):
    out = tmp_path / "cached"
    assert main(_flags(demo, out, "--epochs", "2", "--cache", "--no-tensorboard")) == 0
    cached = json.loads((out / "result.json").read_text())["epoch_losses"]
    # one intra-op thread in both runs (conftest); the tolerance covers float sums in another order elsewhere
    assert cached == pytest.approx(json.loads((run_2d / "result.json").read_text())["epoch_losses"], rel=1e-5)


def test_missing_resume_checkpoint_is_an_error(demo, tmp_path, capsys):
    assert main(_flags(demo, tmp_path / "o", "--epochs", "1", "--resume", str(tmp_path / "none.pt"))) == 2
    assert "none.pt" in capsys.readouterr().err


def test_too_few_images_for_one_batch_is_an_error(demo, tmp_path, capsys):
    assert main(_flags(demo, tmp_path / "o", "--epochs", "1", "--batch-size", "16")) == 2
    assert "batch" in capsys.readouterr().err


def test_python_api_3d_with_knn_monitor_and_yaml(demo, tmp_path):
    config = {
        "method": "byol",
        "backbone": "resnet10",
        "spatial_dims": 3,
        "data": demo["unlabeled"],
        "out": str(tmp_path / "byol3d"),
        "modality": "mr",
        "roi_size": [32],
        "batch_size": 4,
        "epochs": 2,
        "warmup_epochs": 0,
        "progress": False,
        "tensorboard": False,
        "monitor_data": demo["lesion_cls_3d"],
        "monitor_k": 3,
        "method_kwargs": {"projection_dim": 32, "hidden_dim": 64},
    }
    path = tmp_path / "byol.yaml"
    path.write_text(yaml.safe_dump(config))
    result = pretrain(load_pretrain_spec(path))
    assert result["spatial_dims"] == 3 and result["iterations"] == 4
    history = result["knn_accuracy"]
    assert len(history) >= 2 and all(0.0 <= h["knn_accuracy"] <= 1.0 for h in history)
    net = create_backbone("resnet10", spatial_dims=3, in_channels=1, pretrained=result["encoder"])
    assert not net.load_report.missing


def test_mlflow_run_through_monai_handler(demo, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"  # MLflow 3 has no file store; MONAI's handler refuses file: URIs
    result = pretrain(method="simclr", backbone="resnet10", spatial_dims=2, data=demo["unlabeled"],
                      out=str(tmp_path / "o"), modality="mr", roi_size=[32], batch_size=4, epochs=2, progress=False,
                      tensorboard=False, mlflow_uri=uri, method_kwargs={"projection_dim": 16})  # fmt: skip
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("monai_transfer_pretrain").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "loss")) == result["iterations"]
    assert run.data.params["method"] == "simclr" and run.data.params["backbone"] == "resnet10"
    assert not {"data", "out", "mlflow_uri"} & set(run.data.params)  # no local paths in a shared tracker


@pytest.mark.integration
def test_same_command_runs_under_torchrun(demo, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "monai_transfer.cli", *_flags(demo, out, "--epochs", "1", "--batch-size", "2", "--device", "cpu")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2
    assert result["iterations"] == 2  # 8 images over 2 ranks, batch 2 per rank
    assert (out / "encoder.pt").is_file()
