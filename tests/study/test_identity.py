"""A study re-run with a changed spec, changed data or another package version never serves the old results (issue 21):
the changed cells run again, the difference is named, and an unchanged re-run runs nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_transfer.study import load_spec, run_study

from .conftest import write_squares as squares

pytestmark = pytest.mark.slow

SPEC = """
name: identity
targets:
  - {name: squares, data: squares.json, task: classification, spatial_dims: 2}
starts: [random]
backbones: [resnet10]
seeds: [0]
challenges: {full: true}
finetune: {epochs: 1, batch_size: 4, lr: 0.003, backbone_kwargs: {widen_factor: 0.25}}
transferability: []
best_bundle: false
"""


def _run(root: Path, spec_text: str, out: Path) -> dict:
    (root / "spec.yaml").write_text(spec_text)
    spec, raw = load_spec(root / "spec.yaml")
    return run_study(spec, out, raw=raw, progress=False, report=False, threads=1)


def _epochs_ran(out: Path, row: dict) -> int:
    return json.loads((out / "cells" / row["cell"] / "configs" / "train.json").read_text())["train"]["trainer"][
        "max_epochs"
    ]


def test_a_changed_spec_data_or_version_reruns_the_cells_and_names_the_change(tmp_path, caplog, monkeypatch):
    squares(tmp_path)
    out = tmp_path / "out"
    first = _run(tmp_path, SPEC, out)
    assert first["ran"] == 1 and first["rows"][0]["status"] == "ok", first["rows"][0].get("error")
    row0 = first["rows"][0]

    assert _run(tmp_path, SPEC, out)["ran"] == 0  # nothing changed: nothing runs

    caplog.set_level(logging.WARNING, logger="monai_transfer.study.runner")
    second = _run(tmp_path, SPEC.replace("epochs: 1,", "epochs: 2,"), out)
    assert second["ran"] == 1
    assert "finetune.epochs: 1 -> 2" in caplog.text
    row = second["rows"][0]
    assert row["identity"]["finetune"]["epochs"] == 2 and _epochs_ran(out, row) == 2
    assert row["cell"] == row0["cell"]  # the same cell, run again: its folder holds the new run only

    caplog.clear()
    squares(tmp_path, flip=True)  # every label flipped in the user's datalist, same file name
    third = _run(tmp_path, SPEC.replace("epochs: 1,", "epochs: 2,"), out)
    assert third["ran"] == 1 and "data content" in caplog.text
    # the flipped labels were trained on: the test cases recorded by the new run carry them
    cases = json.loads((out / "cells" / row0["cell"] / "test_cases.json").read_text())["cases"]
    assert [c["label"] for c in cases] == [1 - (i % 2) for i in range(12, 16)]

    caplog.clear()
    monkeypatch.setattr("monai_transfer.__version__", "99.0.0")
    fourth = _run(tmp_path, SPEC.replace("epochs: 1,", "epochs: 2,"), out)
    assert fourth["ran"] == 1 and "version" in caplog.text


def test_a_half_run_cell_of_another_spec_is_not_resumed(tmp_path):
    squares(tmp_path)
    out = tmp_path / "out"
    first = _run(tmp_path, SPEC, out)
    cell = first["rows"][0]["cell"]
    (out / "results" / f"{cell}.json").unlink()  # as if killed before its row: the folder holds a run of epochs 1
    (out / "cells" / cell / "marker.txt").write_text("left by the old run")
    second = _run(tmp_path, SPEC.replace("epochs: 1,", "epochs: 3,"), out)
    assert second["ran"] == 1 and second["rows"][0]["status"] == "ok", second["rows"][0].get("error")
    assert not (out / "cells" / cell / "marker.txt").exists()
    assert _epochs_ran(out, second["rows"][0]) == 3


def test_a_changed_pretraining_section_pretrains_again(tmp_path, caplog):
    from monai_transfer.study.identity import start_identity
    from monai_transfer.study.starts import _fresh_folder

    squares(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec, _ = load_spec(tmp_path / "spec.yaml")
    from dataclasses import replace

    from monai_transfer.study.spec import Start

    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"unlabeled": [{"image": f"img{i:02d}.nii.gz"} for i in range(16)]}))
    start = Start(name="ssl", kind="ssl", ssl={"method": "simclr", "data": str(pool), "epochs": 1})
    spec = replace(spec, starts=(*spec.starts, start))
    folder = tmp_path / "pretrain" / "ssl" / "resnet10_2d"
    _fresh_folder(folder, start_identity(spec, start, "resnet10", 2), "ssl")
    folder.mkdir(parents=True)
    (folder / "encoder.pt").write_bytes(b"old")
    _fresh_folder(folder, start_identity(spec, start, "resnet10", 2), "ssl")  # unchanged: kept
    assert (folder / "encoder.pt").is_file()
    caplog.set_level(logging.WARNING, logger="monai_transfer.study.starts")
    longer = replace(start, ssl={**start.ssl, "epochs": 5})
    _fresh_folder(folder, start_identity(spec, longer, "resnet10", 2), "ssl")
    assert not folder.exists() and "options.epochs: 1 -> 5" in caplog.text
    folder.mkdir(parents=True)
    (folder / "encoder.pt").write_bytes(b"old")
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), tmp_path / "img03.nii.gz")  # pool changed
    _fresh_folder(folder, start_identity(spec, longer, "resnet10", 2), "ssl")
    assert not folder.exists()
