"""Our bundles in a real MONAI Label 0.8.5 server (issue 10): our app and MONAI Label's stock ``monaibundle`` app.

The server runs in MONAI Label's own environment (``monai_transfer.label.ensure_environment``, cached under
``~/.cache/monai_transfer_tests``; about 40 s the first time, instant afterwards), listens on a free loopback port and
is stopped by its process group whatever happens. The bundles are what ``finetune`` writes on the demo data (one
3D segmentation, one 3D classification; 1 epoch, narrow ResNet-10s).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests

from monai_transfer.cli import main
from monai_transfer.data import load_datalist, make_demo_data
from monai_transfer.label import (
    LOOPBACK,
    build_app,
    ensure_environment,
    free_port,
    served_bundles,
    server_command,
    start_server,
    stop_server,
    wait_until_ready,
)
from monai_transfer.label.environment import MONAILABEL_VERSION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEST_CACHE = Path.home() / ".cache" / "monai_transfer_tests"


@pytest.fixture(scope="module")
def label_python() -> Path:
    return ensure_environment(TEST_CACHE / f"monailabel-{MONAILABEL_VERSION}", progress=print)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """Demo data, a studies folder (the demo images, linked) with the classification CSV, and two fine-tuned bundles."""
    root = tmp_path_factory.mktemp("label")
    demo = make_demo_data(root / "demo", n_subjects=8, size=32, n_unlabeled=0, seed=0)
    common = ["--epochs", "1", "--batch-size", "2", "--backbone-arg", "widen_factor=0.25", "--set", "lr=0.01"]
    runs = {}
    for task, datalist in (("segmentation", demo["tissue_seg_3d"]), ("classification", demo["lesion_cls_3d"])):
        runs[task] = root / f"run_{task}"
        code = main(["finetune", "--backbone", "resnet10", "--task", task, "--data", datalist,
                     "--out", str(runs[task]), *common])  # fmt: skip
        assert code == 0
    studies = root / "studies"
    studies.mkdir()
    classes = {}
    for section in ("training", "validation", "test"):
        for e in load_datalist(demo["lesion_cls_3d"], section):
            os.link(e["image"], studies / os.path.basename(e["image"]))
            classes[os.path.basename(e["image"])] = int(e["label"])
    with open(studies / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        names = ["no_lesion", "lesion"]
        w.writerows([name, names[c]] for name, c in sorted(classes.items()))  # class names, as a user writes them
    seg_labels = {
        os.path.basename(e["image"]): e["label"]
        for s in ("training", "validation", "test")
        for e in load_datalist(demo["tissue_seg_3d"], s)
    }
    return {"root": root, "runs": runs, "studies": studies, "seg_labels": seg_labels}


@contextmanager
def running(cmd: list[str], url: str, log: Path):
    proc = start_server(cmd, log=log)
    try:
        info = wait_until_ready(url, proc, timeout=180, log=str(log))
        yield info
    finally:
        stop_server(proc)
        assert proc.poll() is not None


def _nifti(content: bytes) -> nib.Nifti1Image:
    raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    return nib.Nifti1Image.from_bytes(raw)


def _infer_seg(url: str, model: str, image: str) -> nib.Nifti1Image:
    r = requests.post(f"{url}/infer/{model}", params={"image": image, "output": "image"}, timeout=300)
    assert r.status_code == 200, r.text
    return _nifti(r.content)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_our_app_serves_trains_and_refuses_bad_requests(label_python, served, tmp_path):
    runs, studies = served["runs"], served["studies"]
    # serve copies: training replaces models/model.pt in place, and the stock-app test reuses the run's bundle
    seg_bundle, cls_bundle = tmp_path / "seg", tmp_path / "cls"
    shutil.copytree(runs["segmentation"] / "bundle", seg_bundle)
    shutil.copytree(runs["classification"] / "bundle", cls_bundle)
    bundles = served_bundles([f"tissue={seg_bundle}", f"lesion={cls_bundle}"])
    app = build_app(bundles, tmp_path / "app")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    cmd = server_command(label_python, app, studies, [b.name for b in bundles], port)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"

    with running(cmd, url, tmp_path / "server.log") as info:
        assert info["models"]["tissue"]["type"] == "segmentation"
        assert info["models"]["tissue"]["labels"] == {"csf_other_brain": 1, "gray_matter": 2, "white_matter": 3}
        assert info["models"]["lesion"]["type"] == "classification"
        assert info["models"]["lesion"]["labels"] == {"no_lesion": 0, "lesion": 1}
        assert set(info["trainers"]) == {"tissue", "lesion"}

        # segmentation: a label map with the input's shape and affine
        image_id = "sub-000_T1w"
        source = nib.load(str(studies / f"{image_id}.nii.gz"))
        first = _infer_seg(url, "tissue", image_id)
        assert first.shape == source.shape
        np.testing.assert_allclose(first.affine, source.affine, atol=1e-5)
        assert set(np.unique(np.asarray(first.dataobj)).tolist()) <= {0, 1, 2, 3}

        # classification: class names and scores as JSON
        r = requests.post(f"{url}/infer/lesion", params={"image": image_id, "output": "json"}, timeout=300)
        assert r.status_code == 200, r.text
        before = r.json()
        assert set(before["scores"]) == {"no_lesion", "lesion"}
        assert sum(before["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert before["label"] == max(before["scores"], key=before["scores"].get)

        # bad requests: a 4xx that says why, and the server keeps serving
        r = requests.post(f"{url}/infer/nope", params={"image": image_id}, timeout=60)
        assert r.status_code == 404 and "nope" in r.json()["detail"] and "tissue" in r.json()["detail"]
        r = requests.post(f"{url}/infer/tissue", params={"image": "no_such_image"}, timeout=60)
        assert r.status_code == 404 and "no_such_image" in r.json()["detail"]
        junk = io.BytesIO(os.urandom(4096))
        r = requests.post(f"{url}/infer/tissue", files={"file": ("upload.nii.gz", junk)}, timeout=60)
        assert r.status_code == 422 and "cannot be read" in r.json()["detail"]
        assert "the uploaded file" in r.json()["detail"]
        flat = io.BytesIO()
        nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
        flat.write((tmp_path / "flat.nii.gz").read_bytes())
        flat.seek(0)
        r = requests.post(f"{url}/infer/tissue", files={"file": ("flat.nii.gz", flat)}, timeout=60)
        assert r.status_code == 422 and "2 spatial axes" in r.json()["detail"]
        r = requests.post(f"{url}/train/nope", params={"run_sync": "true"}, json={}, timeout=60)
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        assert requests.get(f"{url}/info/", timeout=30).status_code == 200

        # segmentation labels saved through MONAI Label's datastore, as an annotation client does
        for name in sorted(served["seg_labels"])[:6]:
            with open(served["seg_labels"][name], "rb") as fh:
                r = requests.put(
                    f"{url}/datastore/label",
                    params={"image": name.replace(".nii.gz", ""), "tag": "final"},
                    files={"label": (name, fh)},
                    timeout=60,
                )
            assert r.status_code == 200, r.text

        # classification labels of one class only: refused before any training, with the reason
        csv_file = studies / "labels.csv"
        full = csv_file.read_text()
        try:
            csv_file.write_text("image,label\nsub-000_T1w,lesion\nsub-001_T1w.nii.gz,1\n")
            r = requests.post(f"{url}/train/lesion", params={"run_sync": "true"}, json={"max_epochs": 1}, timeout=120)
            assert r.status_code == 422 and "at least two classes" in r.json()["detail"]
        finally:
            csv_file.write_text(full)

        # a request's training settings are the fine-tuning spec's fields: offered in the client's panel at the
        # bundle's own values, and a bad one refused before anything trains, named as the client sent it
        options = info["trainers"]["lesion"]["config"]
        assert options["lr"] == 1e-3 and options["batch_size"] == 8 and options["max_epochs"] == 10, options
        r = requests.post(f"{url}/train/lesion", params={"run_sync": "true"}, json={"max_epochs": 1, "lr": -1},
                          timeout=120)  # fmt: skip
        assert r.status_code == 422 and "request.lr: must be >= 0.0, got -1" in r.json()["detail"], r.text

        # training replaces the served bundle's weights (atomically: the run's own hard-linked copy is untouched)
        run_weights = runs["segmentation"] / "models" / "model.pt"
        run_stamp = _stamp(run_weights)
        for model, bundle in (("tissue", seg_bundle), ("lesion", cls_bundle)):
            weights = bundle / "models" / "model.pt"
            old = _stamp(weights)
            r = requests.post(
                f"{url}/train/{model}",
                params={"run_sync": "true"},
                json={"max_epochs": 2, "device": "cpu", "lr": "5e-4", "batch_size": 2},  # "5e-4": typed as text
                timeout=600,
            )
            assert r.status_code == 200, r.text
            assert _stamp(weights) != old, f"{model}: models/model.pt was not replaced"
        assert _stamp(run_weights) == run_stamp

        # the next inference uses the new weights
        after_seg = _infer_seg(url, "tissue", image_id)
        assert not np.array_equal(np.asarray(after_seg.dataobj), np.asarray(first.dataobj))
        r = requests.post(f"{url}/infer/lesion", params={"image": image_id, "output": "json"}, timeout=300)
        after = r.json()["scores"]
        assert max(abs(after[k] - before["scores"][k]) for k in after) > 1e-6


def test_stock_monaibundle_app_serves_our_segmentation_bundle(label_python, served, tmp_path):
    """MONAI Label's own app, our bundle copied into its model/ folder unchanged: /info/, /infer and /train."""
    apps = tmp_path / "apps"
    subprocess.run([str(label_python), "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle",
                    "--output", str(apps)], check=True, capture_output=True, timeout=120)  # fmt: skip
    app = apps / "monaibundle"
    shutil.copytree(served["runs"]["segmentation"] / "bundle", app / "model" / "tissue_seg")
    studies = tmp_path / "studies"
    studies.mkdir()
    images = sorted(served["studies"].glob("*.nii.gz"))[:5]
    for image in images:
        os.link(image, studies / image.name)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    cmd = server_command(label_python, app, studies, ["tissue_seg"], port)
    with running(cmd, url, tmp_path / "server.log") as info:
        model = info["models"]["tissue_seg"]
        assert model["type"] == "segmentation" and model["dimension"] == 3
        assert model["labels"] == {"csf_other_brain": 1, "gray_matter": 2, "white_matter": 3}
        image_id = images[0].name.replace(".nii.gz", "")
        out = _infer_seg(url, "tissue_seg", image_id)
        source = nib.load(str(images[0]))
        assert out.shape == source.shape
        np.testing.assert_allclose(out.affine, source.affine, atol=1e-5)
        for image in images:  # MONAI Label's own split: 4 to train, 1 to validate
            with open(served["seg_labels"][image.name], "rb") as fh:
                r = requests.put(f"{url}/datastore/label", params={"image": image.name.replace(".nii.gz", ""),
                                 "tag": "final"}, files={"label": (image.name, fh)}, timeout=60)  # fmt: skip
            assert r.status_code == 200, r.text
        weights = app / "model" / "tissue_seg" / "models" / "model.pt"
        old = _stamp(weights)
        r = requests.post(f"{url}/train/tissue_seg", params={"run_sync": "true"},
                          json={"max_epochs": 1, "device": "cpu"}, timeout=600)  # fmt: skip
        assert r.status_code == 200, r.text
        assert _stamp(weights) != old
        assert json.loads((app / "model" / "tissue_seg" / "configs" / "metadata.json").read_text())["version"]


def test_environment_is_reused_and_serve_stops_its_server(label_python, served, tmp_path):
    """``ensure_environment`` a second time changes nothing; ``monai-transfer label serve`` starts a real server
    that stops with it on SIGTERM (as on Ctrl-C): the server, in its own process group, must not outlive the command."""
    env = label_python.parent.parent
    marker = env / ".monai_transfer_ready.json"
    stamp = marker.stat().st_mtime_ns
    assert ensure_environment(env) == label_python and marker.stat().st_mtime_ns == stamp

    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    bundle = served["runs"]["segmentation"] / "bundle"
    cmd = [sys.executable, "-m", "monai_transfer.cli", "label", "serve", "--bundle", f"tissue={bundle}",
           "--studies", str(served["studies"]), "--port", str(port), "--env", str(env),
           "--app-dir", str(tmp_path / "app")]  # fmt: skip
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        info = wait_until_ready(url, proc, timeout=180, log=str(log))
        assert list(info["models"]) == ["tissue"]
        deadline = time.monotonic() + 30
        while "MONAI Label is serving tissue" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/info/", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
