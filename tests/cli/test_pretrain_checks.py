"""``monai-transfer pretrain`` on data it cannot learn from, and its bundle config run again (issues 9 and 12).

* uint8 volumes that the MR percentile preset maps to constant zeros stop the run before training, with the preset
  named and another mapping suggested (exit 2, nothing written); ``--intensity minmax`` then trains and is recorded;
* a contrastive loss that stays at its chance value ln(2B - 1) is flagged in the log and in ``result.json``;
* the saved ``configs/pretrain.json`` runs again with ``--config`` / ``--set`` and with ``python -m monai.bundle run``;
* a folder holding a run is refused without ``--resume`` or ``--overwrite``; a run failing validation writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_transfer.cli import main
from monai_transfer.weights import read_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(folder: Path, images: list[np.ndarray]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, image in enumerate(images):
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(folder / f"img{i}.nii.gz"))
        rows.append({"image": f"./img{i}.nii.gz"})
    (folder / "d.json").write_text(json.dumps({"unlabeled": rows}))
    return str(folder / "d.json")


@pytest.fixture(scope="module")
def binary_uint8(tmp_path_factory) -> str:
    """8 uint8 volumes, mostly 0 with a block of 1s (a mask-like or already-normalised scan): the MR preset's
    percentiles over the non-zero voxels are all 1, so it maps every voxel to 0."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(8):
        v = np.zeros((16, 16, 16), np.uint8)
        c = rng.integers(5, 11, 3)
        v[c[0] - 4 : c[0] + 4, c[1] - 4 : c[1] + 4, c[2] - 4 : c[2] + 4] = 1
        images.append(v)
    return _write(tmp_path_factory.mktemp("uint8"), images)


@pytest.fixture(scope="module")
def images_2d(tmp_path_factory) -> str:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:32, :32]
    images = [(np.sin(xx / (3 + i)) + np.cos(yy / (2 + i)) + rng.normal(0, 0.1, (32, 32))).astype(np.float32)
              for i in range(8)]  # fmt: skip
    return _write(tmp_path_factory.mktemp("img2d"), images)


def _flags(data: str, out: Path, dims: int, *extra: str) -> list[str]:
    return ["pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", str(dims), "--data", data,
            "--out", str(out), "--modality", "mr", "--roi-size", "16", "--batch-size", "4", "--warmup-epochs", "0",
            "--quiet", "--no-tensorboard", "--backbone-arg", "widen_factor=0.25", "--method-arg", "projection_dim=16",
            *extra]  # fmt: skip


def test_collapsed_intensity_stops_before_training_and_names_the_preset(binary_uint8, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_flags(binary_uint8, out, 3, "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "preset(preset=mr)" in err and "collapses the images" in err and "--intensity minmax" in err
    assert not out.exists()  # nothing half-written
    # an existing folder is left as it was
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(_flags(binary_uint8, out, 3, "--epochs", "1")) == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_the_suggested_intensity_trains_and_is_recorded(binary_uint8, tmp_path):
    out = tmp_path / "minmax"
    assert main(_flags(binary_uint8, out, 3, "--epochs", "1", "--intensity", "minmax")) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["intensity"] == {"name": "minmax"} and result["iterations"] == 2
    provenance = read_checkpoint(out / "encoder.pt")["provenance"]
    assert provenance["preprocessing"] == {"intensity": {"name": "minmax"}}
    assert "minmax" in provenance["intensity_normalisation"]
    saved = json.loads((out / "configs" / "pretrain.json").read_text())
    assert saved["intensity"] == {"name": "minmax"}


def test_a_loss_stuck_at_chance_is_flagged(images_2d, tmp_path, caplog):
    out = tmp_path / "stuck"
    # a temperature of 1000 flattens every similarity: NT-Xent then sits at ln(2B - 1) whatever the encoder does
    with caplog.at_level(logging.WARNING, logger="monai_transfer.ssl"):
        assert main(_flags(images_2d, out, 2, "--epochs", "3", "--method-arg", "temperature=1000")) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["chance_loss"] == pytest.approx(np.log(2 * 4 - 1))
    flagged = [w for w in result["warnings"] if "chance value" in w]
    assert len(flagged) == 1 and "log(2 * batch - 1)" in flagged[0]
    assert any("chance value" in r.getMessage() for r in caplog.records)


def test_the_saved_config_runs_again(images_2d, tmp_path):
    first = tmp_path / "first"
    assert main(_flags(images_2d, first, 2, "--epochs", "1")) == 0
    saved = first / "configs" / "pretrain.json"
    # the same config through the command line, to another folder, with --set
    again = tmp_path / "again"
    assert main(["pretrain", "--config", str(saved), "--out", str(again), "--set", "epochs=2", "--set",
                 "train#chance#patience=1"]) == 0  # fmt: skip
    rerun = json.loads((again / "result.json").read_text())
    assert rerun["epochs"] == 2 and json.loads((again / "configs" / "pretrain.json").read_text())["epochs"] == 2
    first_losses = json.loads((first / "result.json").read_text())["epoch_losses"]
    assert rerun["epoch_losses"][0] == pytest.approx(first_losses[0], rel=1e-5)  # same seed, same first epoch
    # and through MONAI's own entry point
    bundle_run = tmp_path / "monai_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(saved), "--bundle_root",
                           str(bundle_run)], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((bundle_run / "result.json").read_text())["epoch_losses"] == pytest.approx(first_losses, rel=1e-5)
    assert (bundle_run / "encoder.pt").is_file()


def test_a_folder_holding_a_run_is_resumed_or_refused(images_2d, tmp_path, capsys):
    out = tmp_path / "run"
    flags = _flags(images_2d, out, 2, "--epochs", "1", "--checkpoint-every", "1")
    assert main(flags) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert "--resume auto" in err and "--overwrite" in err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # the earlier run is intact
    finished = json.loads((out / "result.json").read_text())
    assert main([*flags, "--resume", "auto"]) == 0  # a finished run resumed trains nothing and keeps its timing
    again = json.loads((out / "result.json").read_text())
    assert again["iterations"] == finished["iterations"] and again["seconds"] == finished["seconds"] > 0
    assert main([*flags, "--overwrite"]) == 0
    assert json.loads((out / "result.json").read_text())["resumed_from"] is None


def test_a_run_that_fails_validation_writes_nothing(images_2d, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_flags(images_2d, out, 2, "--epochs", "1", "--batch-size", "32")) == 2
    assert "no full batch of 32" in capsys.readouterr().err and not out.exists()
    assert main(_flags(images_2d, out, 2, "--epochs", "1", "--resume", str(tmp_path / "none.pt"))) == 2
    assert "none.pt" in capsys.readouterr().err and not out.exists()
    # an option the backbone does not take surfaces when the network is built: still one named line, nothing left
    assert main(_flags(images_2d, out, 2, "--epochs", "1", "--backbone-arg", "widen=2")) == 2
    err = capsys.readouterr().err
    assert "backbone_kwargs" in err and "'widen'" in err and "Traceback" not in err and not out.exists()
