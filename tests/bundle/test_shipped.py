"""The shipped bundles (``bundles/``) run as a user runs them, on CPU, on the demo data, without a download.

For every bundle, in a temporary copy:

1. its ``large_files.yml`` entry is pointed at a ``file://`` stand-in built in the publisher's key layout
   (``tests/bundle/published.py``) with its SHA-256, and MONAI's ``download_large_files`` fetches and verifies it; the
   shipped list (the publisher's URL) is put back once the file is in place;
2. ``python -m monai.bundle run`` runs ``train.json`` (one epoch), ``train.json`` + ``evaluate.json`` and
   ``inference.json`` (in one process: ``monai_bundle_commands.py``), and the outputs are checked: the best checkpoint,
   the metrics, class probabilities per image, label maps with the input's shape and affine;
3. the trained bundle is made ready to share as docs/bundles.md says (run outputs removed, ``models/model.pt`` listed
   in ``large_files.yml`` with its hash) and ``bundle check`` passes: metadata schema, ``verify_net_in_out`` and
   ``ckpt_export`` of the trained weights included.

Demo data: 5 simulated subjects of 32 voxels a side; 2D classification takes 2D slices with alternating labels
(4 training, 2 validation, 2 test), 3D segmentation the tissue maps of 1 training, 1 validation and 1 test volume
with 64^3 patches (the smallest input these networks take: two voxels in the deepest map).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from monai_transfer.bundle import check_bundle

from .published import build_published, point_large_files_at, sha256

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "bundles"


def _kind(p: Path) -> str | None:
    return (json.loads((p / "configs" / "metadata.json").read_text()).get("monai_transfer") or {}).get("kind")


# starting-point bundles (fine-tuning + inference); the pretraining bundles are tested in test_pretraining_bundles.py
SHIPPED = sorted(
    p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file() and _kind(p) != "pretraining"
)
COMMANDS = Path(__file__).with_name("monai_bundle_commands.py")
EXPECTED = {
    "resnet50_imagenet_cls2d",
    "densenet121_xrv_cls2d",
    "vit_small_timm_cls2d",
    "resnet50_imagenet_seg3d",
    "resnet50_medicalnet_seg3d",
    "swin_unetr_ssl_seg3d",
    "segresnet_ds_ctfm_seg3d",
    "vit_small_dinov2_cls2d",
    "resnet50_radimagenet_cls2d",
}


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bundles", ROOT / "scripts" / "make_bundles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    """The demo data with a 2D classification and a 3D segmentation datalist, and folders of images to infer on."""
    from monai_transfer.data import make_demo_data

    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, n_subjects=5, size=32, n_unlabeled=1, seed=0)
    slices = json.loads((root / "tissue_seg_2d.json").read_text())
    volumes = json.loads((root / "tissue_seg_3d.json").read_text())
    n2, n3 = {"training": 4, "validation": 2, "test": 2}, {"training": 1, "validation": 1, "test": 1}
    cls = {s: [{"image": r["image"], "label": i % 2, "patient_id": r["patient_id"]} for i, r in enumerate(slices[s])][:n]
           for s, n in n2.items()}  # fmt: skip
    seg = {s: volumes[s][:n] for s, n in n3.items()}
    (root / "cls_2d.json").write_text(json.dumps({"labels": {"0": "normal", "1": "pneumonia"}, **cls}))
    (root / "seg_3d.json").write_text(json.dumps({"labels": volumes["labels"], **seg}))
    out = {"root": root, "cls": root / "cls_2d.json", "seg": root / "seg_3d.json"}
    for key, rows in (("cls_images", cls["test"]), ("seg_images", seg["test"])):
        folder = root / key
        folder.mkdir()
        for r in rows:
            shutil.copy(root / r["image"], folder)
        out[key] = folder
    return out


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("published")


def test_shipped_bundles_are_the_script_output(tmp_path):
    """``bundles/`` holds exactly what ``scripts/make_bundles.py`` writes (run it after changing a template)."""
    script = _load_script()
    assert set(script.BUNDLES) == EXPECTED == set(SHIPPED)
    stale = []
    for name in SHIPPED:
        script.make(name, tmp_path)
        fresh, shipped = tmp_path / name, BUNDLES / name
        files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*") if p.is_file()), name
        for rel in files:
            a, b = (fresh / rel).read_text(), (shipped / rel).read_text()
            if rel == "configs/metadata.json":  # the versions of the machine that wrote it may differ
                a, b = (_without_versions(json.loads(x)) for x in (a, b))
            if a != b:
                stale.append(f"{name}/{rel}")
    assert (
        not stale
    ), f"bundles/ differs from scripts/make_bundles.py output: {stale}; run python scripts/make_bundles.py"


def _without_versions(meta: dict) -> dict:
    for key in ("monai_version", "pytorch_version", "numpy_version", "required_packages_version"):
        meta.pop(key, None)
    return meta


def _by_hand(root: Path) -> dict | None:
    """Where a starting file the publisher hands out only on request goes (the user places it), if the bundle has one."""
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    return meta["monai_transfer"].get("starting_weights_by_hand")


def test_shipped_bundles_keep_weights_out_of_git():
    """Published weights come through large_files.yml (the publisher's URL), never as a file in the bundle; a file
    handed out only on request is named in the metadata and README, never listed for download_large_files (which would
    save the request page as the weights)."""
    for name in SHIPPED:
        root = BUNDLES / name
        assert not [p for p in root.glob("models/**/*") if p.is_file()], name
        by_hand = _by_hand(root)
        if by_hand is not None:
            assert not (root / "large_files.yml").exists(), name
            assert f"put it at `{by_hand['path']}`" in (root / "docs" / "README.md").read_text(), name
            entries = [{"path": by_hand["path"]}]
        else:
            entries = yaml.safe_load((root / "large_files.yml").read_text())["large_files"]
            assert all(e["url"].startswith("https://") for e in entries), name
        assert [e["path"].split("/")[:2] for e in entries] == [["models", "pretrained"]], name
        train = json.loads((root / "configs" / "train.json").read_text())
        assert train["pretrained"] == f"$@bundle_root + '/{entries[0]['path']}'", name
        assert train["network_def"]["pretrained_source"], name
        assert all(p.stat().st_size < 25 * 2**20 for p in root.rglob("*") if p.is_file()), name


def _fetch_starting_weights(bundle: Path, published: Path) -> Path:
    """Serve the stand-in of the bundle's published file and let MONAI's download_large_files fetch and verify it."""
    from monai.bundle import download_large_files

    source = json.loads((bundle / "configs" / "train.json").read_text())["network_def"]["pretrained_source"]
    by_hand = _by_hand(bundle)
    if by_hand is not None:  # the user places the file the publisher handed out
        target = bundle / by_hand["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_published(source, published), target)
        return target
    shipped = (bundle / "large_files.yml").read_text()
    (entry,) = yaml.safe_load(shipped)["large_files"]
    stand_in = build_published(source, published)
    point_large_files_at(bundle, {Path(entry["path"]).name: stand_in})
    download_large_files(bundle_path=str(bundle))
    target = bundle / entry["path"]
    assert target.is_file() and sha256(target) == sha256(stand_in)
    (bundle / "large_files.yml").write_text(shipped)  # the publisher's URL again, the file in place
    return target


def _run_bundle(bundle: Path, demo: dict[str, Path], seg: bool) -> None:
    data = ["--dataset_dir", str(demo["root"]), "--datalist", str(demo["seg" if seg else "cls"])]
    sizes = ["--patch_size", "[64,64,64]", "--batch_size", "1"] if seg else ["--batch_size", "2"]
    root = ["--bundle_root", str(bundle)]
    configs = bundle / "configs"
    commands = [
        ["run", "--config_file", str(configs / "train.json"), *root, *data, *sizes, "--train#trainer#max_epochs", "1"],
        ["run", "--config_file", f"['{configs / 'train.json'}','{configs / 'evaluate.json'}']", *root, *data, *sizes],
        ["run", "--config_file", str(configs / "inference.json"), *root,
         "--dataset_dir", str(demo["seg_images" if seg else "cls_images"]), *(sizes[:2] if seg else [])],
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(COMMANDS), json.dumps(commands)], capture_output=True, text=True,
                          env=env, cwd=str(bundle), timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def _check_outputs(bundle: Path, demo: dict[str, Path], seg: bool) -> None:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    labels = list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values())
    state = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    metrics = (bundle / "eval" / "metrics.csv").read_text()
    assert ("mean_dice" if seg else "auroc") in metrics, metrics
    # the inference run's precision decision and its reason, beside its predictions (fp32 here: the suite says so)
    precision = json.loads((bundle / "eval" / "precision.json").read_text())
    assert precision["device"] == "cpu" and precision["amp"] is False and "MONAI_TRANSFER_BF16=0" in precision["reason"]
    if seg:
        for image in sorted(demo["seg_images"].iterdir()):
            stem = image.name.split(".")[0]
            pred, ref = nib.load(bundle / "eval" / f"{stem}_seg.nii.gz"), nib.load(image)
            assert pred.shape == ref.shape, (pred.shape, ref.shape)
            np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-5)
            values = np.unique(np.asarray(pred.dataobj))
            assert set(values.tolist()) <= set(range(len(labels))), values
    else:
        rows = [json.loads(line) for line in (bundle / "eval" / "predictions.jsonl").read_text().splitlines()]
        assert sorted(r["image"] for r in rows) == sorted(p.name for p in demo["cls_images"].iterdir())
        # the bundle's own train.json chose the threshold on validation with its best checkpoint; inference applied it
        decision = json.loads((bundle / "models" / "decision.json").read_text())
        assert decision["rule"] == "youden" and 0 < decision["threshold"] < 1 and decision["n_validation"] > 0
        for r in rows:
            assert list(r["probabilities"]) == labels
            assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-4
            assert r["pred"] == (labels[1] if r["probabilities"][labels[1]] >= decision["threshold"] else labels[0])
            assert "on validation" in r["decision"]


def _ready_to_share(bundle: Path) -> None:
    """What docs/bundles.md says to do before sharing a trained bundle: drop the run outputs (and a starting file
    placed by hand) and list the trained
    weights (over 25 MB for these networks) in large_files.yml with the URL where they are hosted and their hash."""
    for folder in ("checkpoints", "eval", "tensorboard"):
        shutil.rmtree(bundle / folder, ignore_errors=True)
    by_hand = _by_hand(bundle)
    if by_hand is not None:  # the publisher's file, handed out on request: recipients get their own
        (bundle / by_hand["path"]).unlink()
    listed = bundle / "large_files.yml"
    data = yaml.safe_load(listed.read_text()) if listed.is_file() else {"large_files": []}
    data["large_files"].append({"path": "models/model.pt", "url": "https://example.org/bundles/model.pt",
                                "hash_val": sha256(bundle / "models" / "model.pt"), "hash_type": "sha256"})  # fmt: skip
    (bundle / "large_files.yml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_trains_evaluates_infers_and_checks(name, demo, published, tmp_path):
    bundle = tmp_path / name
    shutil.copytree(BUNDLES / name, bundle)
    for folder in sorted(bundle.rglob("*"), reverse=True):  # as a git clone has it: no empty folders
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    seg = json.loads((bundle / "configs" / "train.json").read_text())["task"] == "segmentation"
    try:
        _fetch_starting_weights(bundle, published)
        _run_bundle(bundle, demo, seg)
        _check_outputs(bundle, demo, seg)
        _ready_to_share(bundle)
        problems = check_bundle(bundle)
        assert problems == [], "\n".join(map(str, problems))
    finally:  # the trained copies and run checkpoints take hundreds of MB: do not keep them in pytest's tmp
        shutil.rmtree(bundle, ignore_errors=True)
