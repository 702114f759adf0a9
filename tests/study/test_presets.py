"""The study presets: each parses and plans (every cell's data written) on small data in the exact published layouts;
the user's own files are found under ``~`` or ``--data-root``, a missing one is named with how to get it, and
``--target NAME=PATH`` runs a preset on other data. Nothing downloads: planning needs no weights."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from monai_transfer.cli import main
from monai_transfer.study import SpecError, list_presets, load_spec, plan_study, preset_path
from monai_transfer.study.spec import MissingDataError, replace_targets

DEMO_PRESETS = ("demo", "zhao", "taher", "krones")
FILE_PRESETS = ("medmnist", "msd")
PAPERS = {"zhao": "Transfer or Self-Supervised", "taher": "Systematic Benchmarking Analysis",
          "krones": "Modality-matched"}  # fmt: skip


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """Tiny demo data (24 subjects at 16^3, 3 sites, both unlabeled pools): the files every demo preset names."""
    from monai_transfer.data import make_demo_data

    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, n_subjects=24, n_sites=3, size=16, lesion_scale=3.0, n_unlabeled=6, n_other_modality=6)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """MedMNIST files are converted to NIfTI under $MONAI_TRANSFER_CACHE: keep that in the test's folder."""
    from monai_transfer.data.adapters import medmnist as mm

    monkeypatch.setenv("MONAI_TRANSFER_CACHE", str(tmp_path / "cache"))
    mm._CONVERTED.clear()
    yield
    mm._CONVERTED.clear()


def _medmnist(path: Path, n: dict[str, int] | None = None) -> Path:
    """A MedMNIST .npz in the published layout: uint8 (N, 28, 28) images, uint8 (N, 1) labels, train/val/test."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in (n or {"train": 220, "val": 6, "test": 6}).items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _nii(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


def _msd(root: Path, n: int = 40) -> Path:
    """An MSD task folder as extracted from its tar: dataset.json, imagesTr/, labelsTr/, imagesTs/ (Hippocampus)."""
    rng = np.random.default_rng(0)
    training = []
    for i in range(n):
        _nii(root / "imagesTr" / f"hippocampus_{i:03d}.nii.gz", rng.normal(size=(6, 7, 5)).astype(np.float32))
        _nii(root / "labelsTr" / f"hippocampus_{i:03d}.nii.gz", rng.integers(0, 3, (6, 7, 5)).astype(np.uint8))
        training.append({"image": f"./imagesTr/hippocampus_{i:03d}.nii.gz",
                         "label": f"./labelsTr/hippocampus_{i:03d}.nii.gz"})  # fmt: skip
    test = []
    for i in range(n, n + 3):
        _nii(root / "imagesTs" / f"hippocampus_{i:03d}.nii.gz", rng.normal(size=(6, 7, 5)).astype(np.float32))
        test.append(f"./imagesTs/hippocampus_{i:03d}.nii.gz")
    ds = {"name": "Hippocampus", "description": "Left and right hippocampus segmentation",
          "reference": " Vanderbilt University Medical Center", "licence": "CC-BY-SA 4.0",
          "release": "1.0 04/05/2018", "tensorImageSize": "3D", "modality": {"0": "MRI"},
          "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}, "numTraining": n, "numTest": len(test),
          "training": training, "test": test}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(ds, indent=4))
    return root


def test_every_preset_parses_with_a_description():
    assert set(DEMO_PRESETS + FILE_PRESETS) <= set(list_presets())
    for name in DEMO_PRESETS + FILE_PRESETS:
        raw = yaml.safe_load(preset_path(name).read_text())
        assert raw["name"] == name and len(raw["description"]) > 200
        assert len(raw["seeds"]) >= 3  # several runs: paired comparisons over seeds
    for name, words in PAPERS.items():
        assert words in yaml.safe_load(preset_path(name).read_text())["description"]


@pytest.mark.parametrize("name", DEMO_PRESETS)
def test_demo_presets_plan_on_demo_data(name, demo_root, tmp_path):
    spec, raw = load_spec(preset=name, data_root=demo_root)
    assert raw["prepare"]["demo"] == yaml.safe_load(preset_path("demo").read_text())["prepare"]["demo"]  # one data
    cells = plan_study(spec, tmp_path / "out")  # writes every cell's data; needs no weights
    assert len(cells) == len(spec.challenges) * len(spec.starts) * len(spec.seeds) * len(spec.targets)
    assert {c.start for c in cells} == {s.name for s in spec.starts} and len(spec.starts) >= 4
    for path in {c.datalist for c in cells}:
        data = json.loads(Path(path).read_text())
        assert data["study_cell_data"]["n_training"] >= 2 and data["test"]
    kinds = {s.kind for s in spec.starts}
    assert "random" in kinds and ("ssl" in kinds or "continual" in kinds)
    if name == "zhao":
        assert {"supervised", "ssl"} <= kinds and {c.kind for c in spec.challenges} == {
            "full", "label_fraction", "imbalance", "domain"}  # fmt: skip
        assert len({s.ssl["data"] for s in spec.starts if s.kind == "ssl"}) == 2  # same-domain and mismatched pools
    if name == "taher":
        assert {"source", "continual"} <= kinds and spec.start("imagenet_then_in_domain").base == "imagenet_supervised"
    if name == "krones":
        pools = {s.name: Path(s.ssl["data"]).name for s in spec.starts if s.kind == "ssl"}
        assert pools == {"ssl_same_modality": "unlabeled.json", "ssl_other_modality": "other_modality.json"}


def test_published_sources_plan_without_their_weights(demo_root, tmp_path, monkeypatch):
    """An empty weights cache: planning reads data only (weights are fetched when a cell runs)."""
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    spec, _ = load_spec(preset="krones", data_root=demo_root)
    assert spec.start("imagenet").source == "torchvision-imagenet1k-v1"
    assert plan_study(spec, tmp_path / "out")
    assert not (tmp_path / "empty_hub").exists()


def test_medmnist_preset_plans_on_the_published_layout(tmp_path, cache, capsys):
    folder = tmp_path / "mm"
    _medmnist(folder / "pneumoniamnist.npz")
    assert (
        main(["study", "plan", "--preset", "medmnist", "--data-root", str(folder), "--out", str(tmp_path / "o")]) == 0
    )
    out = capsys.readouterr().out
    assert "medmnist: 48 cells" in out
    assert "pneumonia                full                         220 training cases" in out
    assert "fraction 0.01                2 training cases" in out  # one image of each class
    spec, _ = load_spec(preset="medmnist", data_root=folder)
    assert spec.start("ssl_own_images").ssl["data"] == spec.targets[0].data  # SSL on the file's own images


def test_msd_preset_plans_on_an_extracted_task_folder(tmp_path):
    _msd(tmp_path / "msd" / "Task04_Hippocampus")
    spec, _ = load_spec(preset="msd", data_root=tmp_path / "msd")
    cells = plan_study(spec, tmp_path / "out")
    assert len(cells) == 3 * 4 * 3
    full = json.loads(Path(next(c.datalist for c in cells if c.challenge.kind == "full")).read_text())
    assert full["study_cell_data"]["n_training"] == 24  # 60/20/20 of the 40 labelled cases
    assert all("imagesTr" in e["image"] for s in ("training", "validation", "test") for e in full[s])
    from monai_transfer.ssl.images import load_images

    pool = load_images(spec.start("ssl_unlabeled_test_images").ssl["data"], "test")  # the SSL pool: imagesTs only
    assert sorted(Path(p["image"]).name for p in pool.items) == [f"hippocampus_{i:03d}.nii.gz" for i in (40, 41, 42)]


def test_the_default_data_root_expands_home(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _medmnist(tmp_path / "home" / ".medmnist" / "pneumoniamnist.npz")
    spec, raw = load_spec(preset="medmnist")
    assert raw["data_root"] == "~/.medmnist"
    assert spec.targets[0].data == str(tmp_path / "home" / ".medmnist" / "pneumoniamnist.npz")
    raw = replace_targets(raw, {"pneumonia": "~/b.npz"})  # --target PATH too
    assert raw["targets"][0]["data"] == str(tmp_path / "home" / "b.npz")
    with pytest.raises(MissingDataError, match=r"targets\[0\]\.data: file not found: .*/home/msd/Task04_Hippocampus\n"):
        load_spec(preset="msd")


@pytest.mark.parametrize(
    "name, file, how",
    [("medmnist", "pneumoniamnist.npz", r"medmnist\.PneumoniaMNIST\(split='train', download=True\)"),
     ("msd", "Task04_Hippocampus", r"medicaldecathlon\.com")],
)  # fmt: skip
def test_a_missing_file_is_named_with_how_to_get_it(name, file, how, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match=rf"targets\[0\]\.data: file not found: .*/empty/{file}\n(.|\n)*{how}"):
        load_spec(preset=name, data_root=tmp_path / "empty")
    # the command line prints the same and exits 2 (a bad spec), before writing anything
    assert main(["study", "plan", "--preset", name, "--data-root", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"empty/{file}" in err and "--data-root FOLDER" in err
    assert not (tmp_path / "o").exists()


def test_target_override_moves_the_target_and_its_own_pool(tmp_path, cache, capsys, monkeypatch):
    breast = _medmnist(tmp_path / "dl" / "breastmnist.npz", {"train": 40, "val": 4, "test": 4})
    monkeypatch.chdir(tmp_path)
    args = ["study", "plan", "--preset", "medmnist", "--data-root", str(tmp_path / "nowhere"), "--out", "o"]
    assert main([*args, "--target", "pneumonia=dl/breastmnist.npz"]) == 0  # relative to the current folder
    assert "40 training cases" in capsys.readouterr().out
    spec, raw = load_spec(preset="medmnist", targets={"pneumonia": "dl/breastmnist.npz"})
    assert spec.targets[0].data == str(breast)
    assert {spec.start(n).ssl["data"] for n in ("ssl_own_images", "imagenet_then_ssl")} == {str(breast)}
    assert raw["targets"][0]["data"] == str(breast)  # saved beside the results as run
    # an MSD task folder: the SSL pool inside it (dataset.json) moves with the folder
    raw = replace_targets(yaml.safe_load(preset_path("msd").read_text()), {"hippocampus": tmp_path / "Task09_Spleen"})
    assert raw["starts"][2]["ssl"]["data"] == str(tmp_path / "Task09_Spleen" / "dataset.json")
    # a pool that is not the target's file stays
    raw = replace_targets(yaml.safe_load(preset_path("krones").read_text()), {"tissue_2d": "x.json"})
    assert raw["starts"][2]["ssl"]["data"] == "unlabeled.json"
    with pytest.raises(SpecError, match="--target: 'pneumonia' is not a target of this spec; its targets: tissue_2d"):
        replace_targets(raw, {"pneumonia": "x.npz"})
    for bad in ("pneumonia", "=x.npz"):
        assert main([*args, "--target", bad]) == 2
        assert "expected NAME=PATH" in capsys.readouterr().err


def test_presets_command_prints_a_preset(capsys):
    assert main(["study", "presets"]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n{n} " in "\n" + listing for n in DEMO_PRESETS + FILE_PRESETS)
    assert main(["study", "presets", "taher"]) == 0
    assert capsys.readouterr().out == preset_path("taher").read_text()
    with pytest.raises(SystemExit):
        main(["study", "run", "--help"])
    assert "--target NAME=PATH" in capsys.readouterr().out
