"""A study end to end on a tiny learnable 2D task (issue 11): run, kill -9, resume without losing or repeating a cell,
report and best bundle; the Ray executor on a real local cluster gives the local executor's results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = """
name: tiny
targets:
  - {name: squares, data: squares.json, task: classification, spatial_dims: 2}
starts:
  - random
  - name: ssl_pool
    ssl: {method: simclr, data: pool.json, epochs: 1, batch_size: 8, roi_size: 16, modality: mr}
backbones: [resnet10]
seeds: [0, 1]
challenges: {label_fractions: [0.5]}
finetune: {epochs: 8, batch_size: 4, lr: 0.003, backbone_kwargs: {widen_factor: 0.25}}
transferability: [knn, linear_probe]
"""


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """30 images of 16x16: class 1 holds a bright square (a task a small network learns in a few epochs)."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    entries = []
    for i in range(30):
        label = i % 2
        img = rng.normal(0, 1, (16, 16)).astype(np.float32)
        if label:
            r, c = rng.integers(2, 10, 2)
            img[r : r + 5, c : c + 5] += 4
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / f"img{i:02d}.nii.gz")
        entries.append(
            {"image": f"img{i:02d}.nii.gz", "label": label, "patient_id": f"p{i // 2}", "site": "AB"[i % 3 > 0]}
        )
    dl = {"labels": {"0": "empty", "1": "square"}, "training": entries[:18], "validation": entries[18:24],
          "test": entries[24:]}  # fmt: skip
    (root / "squares.json").write_text(json.dumps(dl))
    (root / "pool.json").write_text(json.dumps({"unlabeled": [{"image": e["image"]} for e in entries]}))
    (root / "spec.yaml").write_text(SPEC)
    return root


def _cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "monai_transfer.cli", "study", "run", str(spec), "--out", str(out), "--no-progress",
            *extra]  # fmt: skip


def test_study_resumes_after_kill_without_losing_or_repeating_a_cell(study_dir):
    out = study_dir / "out"
    results = out / "results"
    proc = subprocess.Popen(_cmd(study_dir / "spec.yaml", out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and len(list(results.glob("*.json"))) < 3:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 3 <= len(before) < 8
    assert not list(results.glob("*.tmp*"))  # atomic rows: nothing half-written

    done = subprocess.run(_cmd(study_dir / "spec.yaml", out), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    for name, mtime in before.items():  # finished cells were not run again
        assert (results / name).stat().st_mtime_ns == mtime
    # paired: both starts trained on the same subset for each (challenge, seed)
    n_train = {}
    for r in rows:
        n_train.setdefault((r["challenge"], r["seed"]), set()).add(r["n_train"])
    assert all(len(v) == 1 for v in n_train.values())
    assert all(r["transferability"].keys() == {"knn", "linear_probe"} for r in rows)
    # the square is learnable: random initialisation beats chance on the full data (mean over 2 seeds)
    full = [r["score"] for r in rows if r["start"] == "random" and r["challenge"] == "full"]
    assert np.mean(full) > 0.6, full
    report = out / "report"
    for name in ("report.html", "report.md", "results.csv", "summary.json"):
        assert (report / name).is_file()
    assert (out / "best" / "squares" / "configs" / "inference.json").is_file()
    assert "Best starting point" in (out / "best" / "squares" / "STUDY.md").read_text()
    # a third run has nothing left to do
    again = subprocess.run(_cmd(study_dir / "spec.yaml", out), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "(0 run now" in again.stdout


def test_ray_executor_on_a_local_cluster_matches_the_local_executor(study_dir, tmp_path):
    pytest.importorskip("ray", reason="the Ray executor is an extra: pip install 'monai_transfer[ray]'")
    from monai_transfer.label import free_port

    local_out = study_dir / "out"
    if not (local_out / "results").is_dir():
        pytest.skip("runs after the local study")
    ray_out = tmp_path / "ray_out"
    shutil.copytree(local_out / "pretrain", ray_out / "pretrain")  # the same starting weights; cells run again
    spec = study_dir / "spec_seed0.yaml"  # seed 0 only: its cells have the same ids as the local study's seed-0 cells
    spec.write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0]"))
    port = free_port()
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    start = subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180)  # fmt: skip
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        threads = str(json.loads(next((local_out / "results").glob("*.json")).read_text())["threads"])
        done = subprocess.run(_cmd(spec, ray_out, "--executor", "ray", "--address", f"127.0.0.1:{port}",
                                   "--threads", threads), capture_output=True, text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
    remote = {p.name: json.loads(p.read_text()) for p in (ray_out / "results").glob("*.json")}
    local = {n: json.loads((local_out / "results" / n).read_text()) for n in remote}
    assert len(remote) == 4 and all(r["seed"] == 0 for r in local.values())
    for name, row in local.items():
        assert remote[name]["status"] == "ok"
        assert remote[name]["n_train"] == row["n_train"]
        assert remote[name]["score"] == pytest.approx(row["score"], abs=1e-3), name


def test_process_executor_matches_the_local_executor(study_dir, tmp_path):
    """``--workers 2``: cells in 2 spawned processes give the in-process executor's scores at the same thread count."""
    local_out = study_dir / "out"
    if not (local_out / "results").is_dir():
        pytest.skip("runs after the local study")
    out = tmp_path / "proc_out"
    shutil.copytree(local_out / "pretrain", out / "pretrain")  # the same starting weights; cells run again
    spec = study_dir / "spec_seed0.yaml"
    spec.write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0]"))
    threads = str(json.loads(next((local_out / "results").glob("*.json")).read_text())["threads"])
    done = subprocess.run(_cmd(spec, out, "--workers", "2", "--threads", threads), capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {p.name: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert len(rows) == 4
    assert len({r["run_dir"] for r in rows.values()}) == 4 and all(r["threads"] == int(threads) for r in rows.values())
    for name, row in rows.items():
        local = json.loads((local_out / "results" / name).read_text())
        assert row["status"] == "ok", row.get("error")
        assert row["n_train"] == local["n_train"]
        assert row["score"] == pytest.approx(local["score"], abs=1e-3), name
