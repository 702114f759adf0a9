"""Linear-probe cells on cached encoder features (issue 11, speed): features once per (target, start, backbone), the
same model as a pipeline probe, deterministic, resumable, and the spec option that switches it."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_transfer.study import parse_spec, probes
from monai_transfer.study.runner import _best_bundles, cell_payload, plan_study, run_cell, run_study
from monai_transfer.study.spec import SpecError

SPEC = {
    "name": "probe",
    "targets": [{"name": "squares", "data": "squares.json", "task": "classification", "spatial_dims": 2}],
    "starts": ["random", {"name": "mine", "path": "encoder.pt"}],
    "backbones": ["resnet10"],
    "strategies": ["linear-probe"],
    "seeds": [0, 1],
    "challenges": {"label_fractions": [0.5]},
    # no flips: a pipeline probe then sees exactly the cached features, so the two must agree to the last digit
    "finetune": {"epochs": 6, "batch_size": 4, "lr": 0.1, "augment": False, "backbone_kwargs": {"widen_factor": 0.25}},
    "transferability": False,
    "best_bundle": False,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """36 images of 16x16 (class 1: a bright 8x8 square) and an encoder checkpoint for a 'path' start."""
    from monai_transfer.networks import create_backbone

    root = tmp_path_factory.mktemp("probe_data")
    rng = np.random.default_rng(0)
    entries = []
    for i in range(36):
        img = rng.normal(0, 1, (16, 16)).astype(np.float32)
        if i % 2:
            r, c = rng.integers(1, 8, 2)
            img[r : r + 8, c : c + 8] += 4
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / f"img{i:02d}.nii.gz")
        entries.append({"image": f"img{i:02d}.nii.gz", "label": i % 2, "patient_id": f"p{i // 2}"})
    dl = {"labels": {"0": "empty", "1": "square"}, "training": entries[:20], "validation": entries[20:28],
          "test": entries[28:]}  # fmt: skip
    (root / "squares.json").write_text(json.dumps(dl))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        torch.save(create_backbone("resnet10", 2, 1, widen_factor=0.25).state_dict(), root / "encoder.pt")
    return root


def _spec(root: Path, **changes):
    raw = copy.deepcopy(SPEC)
    raw.update(changes)
    return parse_spec(raw, root)


@pytest.fixture(scope="module")
def cached(data, tmp_path_factory):
    """The study with cached probes, and how many encoder passes it made."""
    out = tmp_path_factory.mktemp("cached")
    with mock.patch.object(probes, "_encode", wraps=probes._encode) as encode:
        result = run_study(_spec(data), out, progress=False, report=False, threads=1)
    return {"out": out, "result": result, "encodes": encode.call_count}


def _by_key(rows):
    return {(r["challenge"], r["start"], r["seed"]): r for r in rows}


def test_the_spec_option_is_checked(data):
    assert _spec(data).linear_probe == "cached"
    assert _spec(data, linear_probe="pipeline").linear_probe == "pipeline"
    with pytest.raises(SpecError, match=r"linear_probe: 'cached' .* or 'pipeline' .*got 'fast'"):
        _spec(data, linear_probe="fast")


def test_features_are_computed_once_per_target_start_and_backbone(cached):
    rows, out = cached["result"]["rows"], cached["out"]
    assert len(rows) == 8 and all(r["status"] == "ok" and r["probe"] == "cached" for r in rows), rows
    files = sorted(p.name for p in (out / "features" / "squares").iterdir())
    # the path start's encoder is one file for both seeds and challenges; a random start's encoder is drawn per seed
    assert files == ["mine__resnet10.npz", "random__resnet10__seed0.npz", "random__resnet10__seed1.npz"]
    assert cached["encodes"] == 3
    assert not (out / "cells").exists()  # no fine-tuning run was made
    for r in rows:
        assert r["n_test"] == 8 and r["n_train"] == (20 if r["challenge"] == "full" else 10)
        assert {"auroc", "accuracy", "accuracy_at_0.5", "sensitivity", "specificity", "brier"} <= set(r["metrics"])
        assert r["score"] == r["metrics"]["auroc"]
        # decided as a fine-tuning cell decides: the threshold chosen on validation, intervals over test cases
        assert r["decision"]["rule"] == "youden" and 0 < r["decision"]["threshold"] < 1
        low, high = r["score_ci"]
        assert low <= r["score"] <= high
        assert r["run_dir"] is None and r["duration_s"] > 0


def test_a_cached_probe_is_the_pipeline_probe_without_its_cost(cached, data, tmp_path):
    """The same cells (seed 0) as whole finetune runs: without flips the head sees the same features, starts from
    the same weights, takes the same batches and is selected and scored the same way, so the results agree."""
    out = tmp_path / "pipeline"
    result = run_study(_spec(data, linear_probe="pipeline", seeds=[0]), out, progress=False, report=False, threads=1)
    pipe = _by_key(result["rows"])
    fast = _by_key(cached["result"]["rows"])
    assert len(pipe) == 4
    for key, p in pipe.items():
        assert p["status"] == "ok" and "probe" not in p and p["run_dir"], p.get("error")
        c = fast[key]
        assert c["best_epoch"] == p["best_epoch"], key
        for name in ("auroc", "accuracy"):
            assert c["metrics"][name] == pytest.approx(p["metrics"][name], abs=1e-6), (key, c["metrics"], p["metrics"])
    # the cached features are the pipeline network's pooled features of the same case (its evaluation transforms)
    from monai.transforms import Compose

    from monai_transfer.finetune.evaluate import load_run

    for start, name in (("mine", "mine__resnet10.npz"), ("random", "random__resnet10__seed0.npz")):
        net, parser, _ = load_run(pipe[("full", start, 0)]["run_dir"], "cpu")
        tf = Compose(list(parser.get_parsed_content("validate#preprocessing#transforms")))
        with np.load(cached["out"] / "features" / "squares" / name) as z:
            feats, images = z["features"], [str(x) for x in z["images"]]
        entry = {"image": str(data / "img30.nii.gz"), "label": 0}
        with torch.no_grad():
            want = net.backbone.eval().forward_features(tf(entry)["image"][None]).numpy()[0]
        np.testing.assert_allclose(feats[images.index(entry["image"])], want, atol=1e-5)
    # a best bundle comes from a fine-tuning run even where a cached probe scored higher; STUDY.md says so
    rows = [dict(r, score=0.5) for r in result["rows"]] + [dict(r, score=0.9) for r in cached["result"]["rows"]]
    best = _best_bundles(_spec(data), rows, tmp_path)
    assert (Path(best["squares"]) / "models" / "model.pt").is_file()
    assert "cached linear probe scored higher" in (Path(best["squares"]) / "STUDY.md").read_text()


def test_a_cached_probe_is_deterministic_and_its_payload_plain_data(cached, data):
    spec = _spec(data)
    cell = next(c for c in plan_study(spec, cached["out"]) if c.start == "mine" and c.seed == 1)
    stored = json.loads((cached["out"] / "results" / f"{cell.id}.json").read_text())
    payload = cell_payload(cell, spec, str(data / "encoder.pt"), cached["out"])
    payload.update(threads=1, probe={"features": stored["features"]})
    again = run_cell(json.loads(json.dumps(payload)))  # what a process or Ray worker receives
    assert again["status"] == "ok" and again["probe"] == "cached"
    assert (again["score"], again["metrics"], again["best_epoch"]) == (
        stored["score"], stored["metrics"], stored["best_epoch"])  # fmt: skip
    missing = run_cell({**payload, "probe": {"features": str(cached["out"] / "nothing.npz")}})
    assert missing["status"] == "failed" and "nothing.npz" in missing["error"]


def test_resume_reruns_only_the_lost_cell_and_never_reads_a_broken_feature_file(cached, data):
    out = cached["out"]
    spec = _spec(data)
    results = out / "results"
    mtimes = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    lost = next(c for c in plan_study(spec, out) if c.start == "random" and c.seed == 1 and c.challenge.kind == "full")
    before = json.loads((results / f"{lost.id}.json").read_text())
    (results / f"{lost.id}.json").unlink()  # killed before its row was written
    features = out / "features" / "squares"
    # a write killed half-way leaves a temporary file beside the cache; a damaged cache file is not trusted either
    (features / ".mine__resnet10.npz.tmp-x.npz").write_bytes(b"PK\x03\x04 half")
    broken = features / "random__resnet10__seed1.npz"
    broken.write_bytes(broken.read_bytes()[:100])
    kept = (features / "mine__resnet10.npz").stat().st_mtime_ns
    with mock.patch.object(probes, "_encode", wraps=probes._encode) as encode:
        result = run_study(spec, out, progress=False, report=False, threads=1)
    assert result["ran"] == 1 and encode.call_count == 1  # only the damaged file is computed again
    assert (features / "mine__resnet10.npz").stat().st_mtime_ns == kept
    row = json.loads((results / f"{lost.id}.json").read_text())
    assert (row["score"], row["metrics"]) == (before["score"], before["metrics"])
    for name, mtime in mtimes.items():
        if name != f"{lost.id}.json":
            assert (results / name).stat().st_mtime_ns == mtime
    with np.load(broken) as z:  # whole again
        assert z["features"].shape[0] == 36
    os.remove(features / ".mine__resnet10.npz.tmp-x.npz")


def test_segmentation_probes_keep_the_pipeline(data):
    spec = _spec(data)
    cell = plan_study(spec, data / "plan")[0]
    assert probes.uses_cached_probe(spec, cell)
    seg = dataclasses.replace(cell, target=dataclasses.replace(cell.target, task="segmentation"))
    assert not probes.uses_cached_probe(spec, seg)
    assert not probes.uses_cached_probe(_spec(data, linear_probe="pipeline"), cell)
