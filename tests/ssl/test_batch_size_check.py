"""Pretraining refuses a batch size its method cannot learn from, before anything runs (issue 21: SimCLR with
``--batch-size 1`` "succeeded" with a loss of 0.0 at every step and published an encoder).

The minimum is data of each method (``MethodSpec.min_batch``, counted over the gathered batch under DDP where the
loss gathers), and 2 per rank for heads with batch norm. ``pretrain --resume auto`` refuses a run of other settings
in the folder (``identity.json``), as fine-tuning does.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.cli import main
from monai_transfer.ssl.checks import check_batch_size
from monai_transfer.ssl.registry import get_method_spec, list_methods

#: the smallest batch (single process) each built-in method learns from with its default options
MINIMUM = {"simclr": 2, "moco_v2": 1, "moco_v3": 2, "byol": 2, "simsiam": 2, "barlow_twins": 2, "vicreg": 2,
           "dino": 1, "mae": 1, "simmim": 1, "models_genesis": 1, "swin_unetr_ssl": 2}  # fmt: skip


def test_every_method_names_its_minimum():
    assert set(list_methods()) == set(MINIMUM)  # a new method must say what batch it needs
    for name, least in MINIMUM.items():
        check_batch_size(name, least, world=1)
        if least > 1:
            with pytest.raises(ValueError, match=rf"^{name} cannot learn from a batch of 1: .*--batch-size 2 or more"):
                check_batch_size(name, 1, world=1)


def test_ddp_counts_the_gathered_batch_where_the_loss_gathers():
    assert get_method_spec("simclr").min_batch_scope == "global"
    # SimCLR with per-sample heads: 1 per rank x 2 ranks gives each sample a negative; alone it has none
    check_batch_size("simclr", 1, {"head_norm": "layer"}, world=2)
    with pytest.raises(ValueError, match="simclr cannot learn from a batch of 1: NT-Xent"):
        check_batch_size("simclr", 1, {"head_norm": "layer"}, world=1)
    check_batch_size("moco_v3", 1, {"head_norm": "layer"}, world=2)
    with pytest.raises(ValueError, match="moco_v3 cannot learn from a batch of 1 per rank: InfoNCE"):
        check_batch_size("moco_v3", 1, {"head_norm": "layer", "gather_distributed": False}, world=2)
    # Barlow Twins standardises each rank's own batch: ranks do not help
    with pytest.raises(ValueError, match="barlow_twins cannot learn from a batch of 1 per rank"):
        check_batch_size("barlow_twins", 1, {"head_norm": "layer"}, world=4)
    # batch-norm heads need 2 samples on every rank
    with pytest.raises(ValueError, match="head_norm=layer"):
        check_batch_size("byol", 1, world=8)


def _data(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:32, :32]
    rows = []
    for i in range(6):
        image = (np.sin(xx / (3 + i)) + np.cos(yy / (2 + i))).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(folder / f"img{i}.nii.gz"))
        rows.append({"image": f"./img{i}.nii.gz"})
    (folder / "d.json").write_text(json.dumps({"unlabeled": rows}))
    return str(folder / "d.json")


def _flags(data: str, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", "2", "--data", data,
            "--out", str(out), "--modality", "mr", "--roi-size", "16", "--warmup-epochs", "0", "--quiet",
            "--no-tensorboard", "--backbone-arg", "widen_factor=0.25", "--method-arg", "projection_dim=16",
            "--amp", "off", *extra]  # fmt: skip


def test_simclr_with_batch_size_1_is_refused_before_anything_is_written(tmp_path, capsys):
    data = _data(tmp_path / "data")
    out = tmp_path / "run"
    assert main(_flags(data, out, "--batch-size", "1", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "simclr cannot learn from a batch of 1" in err and "--batch-size 2 or more" in err
    assert not out.exists()
    # a bundle config set to batch 1 (--set) is refused the same way
    from monai_transfer.engines.specs.pretrain import PretrainSpec
    from monai_transfer.ssl.bundle_config import pretrain_config
    from monai_transfer.ssl.run import run_pretrain_config

    config = PretrainSpec(method="simclr", backbone="resnet10", spatial_dims=2, datalist=data, out_dir=str(out),
                            roi_size=[16, 16], batch_size=2, epochs=1, modality="mr")  # fmt: skip
    with pytest.raises(ValueError, match="simclr cannot learn from a batch of 1"):
        run_pretrain_config(pretrain_config(config), overrides=["batch_size=1"])
    assert not out.exists()


@pytest.mark.slow
def test_pretrain_resume_with_other_settings_is_refused_and_more_epochs_continue(tmp_path, capsys):
    data = _data(tmp_path / "data")
    out = tmp_path / "run"
    flags = _flags(data, out, "--batch-size", "2")
    assert main([*flags, "--epochs", "1"]) == 0
    identity = json.loads((out / "identity.json").read_text())
    assert identity["settings"]["lr"] == 0.001 and "resume" not in identity["settings"]
    before = (out / "configs" / "pretrain.json").read_bytes()
    assert main([*flags, "--epochs", "1", "--lr", "0.05", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert (
        len(err.strip().splitlines()) == 1 and "holds a pretraining run with other settings: lr: 0.001 -> 0.05" in err
    )
    assert (out / "configs" / "pretrain.json").read_bytes() == before
    # more epochs extend the run: said and recorded
    assert main([*flags, "--epochs", "2", "--resume", "auto"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_with_changes"] == {"epochs": [1, 2]} and result["epochs"] == 2
    # the checkpoint gone (a study drops finished runs' resume state), the encoder kept: never retrained silently;
    # kept as it is when nothing changed, refused otherwise
    import shutil

    shutil.rmtree(out / "checkpoints")
    saved = (out / "result.json").read_bytes()
    assert main([*flags, "--epochs", "2", "--resume", "auto"]) == 0
    assert (out / "result.json").read_bytes() == saved and not (out / "checkpoints").exists()
    assert main([*flags, "--epochs", "3", "--resume", "auto"]) == 2
    assert "holds a finished pretraining run with other settings: epochs: 2 -> 3" in capsys.readouterr().err
    (out / "result.json").unlink()
    assert main([*flags, "--epochs", "2", "--resume", "auto"]) == 2
    assert "without its checkpoint" in capsys.readouterr().err
    # --overwrite with unreadable data keeps the old run
    assert main([*_flags(str(tmp_path / "none.json"), out, "--batch-size", "2"), "--epochs", "1", "--overwrite"]) == 2
    assert (out / "encoder.pt").is_file() and (out / "identity.json").is_file()
