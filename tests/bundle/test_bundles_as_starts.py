"""Every bundle and run folder the package writes is a valid ``pretrained`` (issue 21, section 2).

The smallest real instance of each writer is built (tiny 2D data, one epoch): a ``finetune`` run folder and its
inference bundle, a ``pretrain`` output folder and the fine-tuning bundle it writes, a ``bundle create`` bundle, and a
bundle made from a run that itself started from a bundle (what a study's best bundle is when a supervised start wins).
Each is then the starting point of ``finetune`` and of ``bundle_from_run`` / ``create_bundle``, and the load report
must say that the encoder's keys loaded (a fine-tuned network: its ``backbone.`` part; the head dropped and reported).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_transfer.bundle import bundle_from_run, create_bundle
from monai_transfer.networks import create_backbone
from monai_transfer.weights import load_pretrained
from monai_transfer.weights.starting_point import resolve_pretrained, starting_provenance

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NET = {"backbone": "resnet10", "backbone_kwargs": {"widen_factor": 0.25}}
FT = {**NET, "task": "classification", "spatial_dims": 2, "epochs": 1, "batch_size": 4, "tensorboard": False,
      "progress": False, "test_section": None}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """24 images of 16x16 (class 1: a bright square) and an unlabeled pool of the same images."""
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    entries = []
    for i in range(24):
        img = rng.normal(0, 1, (16, 16)).astype(np.float32)
        if i % 2:
            r, c = rng.integers(2, 10, 2)
            img[r : r + 5, c : c + 5] += 4
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / f"img{i:02d}.nii.gz")
        entries.append({"image": f"img{i:02d}.nii.gz", "label": i % 2})
    dl = {"labels": {"0": "empty", "1": "square"}, "training": entries[:14], "validation": entries[14:20],
          "test": entries[20:]}  # fmt: skip
    (root / "squares.json").write_text(json.dumps(dl))
    (root / "pool.json").write_text(json.dumps({"unlabeled": [{"image": e["image"]} for e in entries]}))
    return root


@pytest.fixture(scope="module")
def starts(data, tmp_path_factory) -> dict[str, Path]:
    """One real instance of every folder the package writes that can be a start."""
    from monai_transfer.bundle.templates.pretrain import pretrain_config
    from monai_transfer.engines.specs.pretrain import PretrainSpec
    from monai_transfer.finetune import finetune
    from monai_transfer.ssl.run import resolve_config, run_pretrain_config

    root = tmp_path_factory.mktemp("starts")
    out: dict[str, Path] = {}
    run = root / "finetune_run"
    finetune(datalist=str(data / "squares.json"), out_dir=str(run), **FT)
    out["finetune run folder"] = run
    out["finetune inference bundle"] = bundle_from_run(run)
    pre = root / "pretrain_out"
    # as the command line's pretrain runs it: the SSL config plus the bundle layer's fine-tuning bundle step
    options = resolve_config(PretrainSpec(
        method="simclr", backbone="resnet10", spatial_dims=2, datalist=str(data / "pool.json"), out_dir=str(pre),
        epochs=1, batch_size=8, roi_size=[16, 16], modality="mr", warmup_epochs=0, tensorboard=False, progress=False,
        backbone_kwargs=NET["backbone_kwargs"]))  # fmt: skip
    run_pretrain_config(pretrain_config(options), options.out_dir, options=options)
    out["pretrain output folder"] = pre
    out["pretrain fine-tuning bundle"] = pre / "bundle"
    out["bundle create bundle"] = create_bundle(
        root / "created", **NET, task="classification", spatial_dims=2, num_classes=2, pretrained=pre / "encoder.pt"
    )
    # what a study's best bundle is when a supervised start wins: a run that started from a bundle, made a bundle
    sup = root / "from_bundle_run"
    finetune(datalist=str(data / "squares.json"), out_dir=str(sup), pretrained=str(out["finetune inference bundle"]),
             **FT)  # fmt: skip
    out["best bundle of a run started from a bundle"] = bundle_from_run(sup, root / "best")
    return out


KINDS = [
    "finetune run folder",
    "finetune inference bundle",
    "pretrain output folder",
    "pretrain fine-tuning bundle",
    "bundle create bundle",
    "best bundle of a run started from a bundle",
]
FINE_TUNED = {"finetune run folder", "finetune inference bundle", "best bundle of a run started from a bundle"}


def _encoder_keys() -> list[str]:
    return list(create_backbone("resnet10", spatial_dims=2, in_channels=1, widen_factor=0.25).state_dict())


def _assert_encoder_loaded(report: dict, kind: str) -> None:
    assert not report["missing"] and not report["unexpected"] and not report["mismatched"], report
    assert sorted(report["loaded"]) == sorted(k for k in _encoder_keys() if k not in report["defaulted"])
    if kind in FINE_TUNED:  # a fine-tuned network: its backbone loads, its head is dropped and reported
        assert report["adapter"] == "monai-transfer"
        assert report["dropped"] and all(k.startswith("head.") for k in report["dropped"])
    else:  # an encoder written by pretrain: MONAI's own keys
        assert report["adapter"] == "monai" and not report["dropped"]


@pytest.mark.parametrize("kind", KINDS)
def test_folder_is_a_valid_pretrained_for_load_pretrained(starts, kind):
    net = create_backbone("resnet10", spatial_dims=2, in_channels=1, widen_factor=0.25)
    report = load_pretrained(net, starts[kind])
    _assert_encoder_loaded(report.to_dict(), kind)
    assert str(starts[kind]) in report.checkpoint or report.checkpoint.startswith(str(starts[kind]))
    if kind in FINE_TUNED:  # the values are the fine-tuned backbone's
        state = torch.load(resolve_pretrained(starts[kind]).weights, weights_only=True)
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, state[f"backbone.{k}"])


@pytest.mark.parametrize("kind", KINDS)
def test_folder_is_a_valid_pretrained_for_finetune_and_its_bundle(starts, data, tmp_path, kind):
    """finetune from the folder, then the bundle of that run (the study's last step): both accept it."""
    from monai_transfer.finetune import finetune

    result = finetune(datalist=str(data / "squares.json"), out_dir=str(tmp_path / "run"), pretrained=str(starts[kind]),
                      **FT)  # fmt: skip
    _assert_encoder_loaded(result["load_report"], kind)
    bundle = bundle_from_run(tmp_path / "run")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["monai_transfer"]["kind"] == "file"
    copied = resolve_pretrained(starts[kind]).weights
    start_file = bundle / "models" / "pretrained" / copied.name
    assert start_file.is_file() and start_file.read_bytes() == copied.read_bytes()
    assert "missing: 0, unexpected: 0, shape-mismatched: 0" in meta["monai_transfer"]["load_report"]
    # the bundle's own train.json starts from the copied weights: they load strictly into its network
    _assert_encoder_loaded(_train_network(bundle).backbone.load_report.to_dict(), kind)


def _train_network(bundle: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    return parser.get_parsed_content("network_def")


@pytest.mark.parametrize("kind", KINDS)
def test_folder_is_a_valid_pretrained_for_bundle_create(starts, tmp_path, kind):
    bundle = create_bundle(tmp_path / "b", **NET, task="classification", spatial_dims=2, num_classes=3,
                           pretrained=starts[kind])  # fmt: skip
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    report = meta["monai_transfer"]["load_report"]
    assert "missing: 0, unexpected: 0, shape-mismatched: 0" in report
    assert [line.split()[-1] for line in report.splitlines() if line.startswith("total")] == ["1.00"]
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert "models/pretrained/" in train["pretrained"]
    _assert_encoder_loaded(_train_network(bundle).backbone.load_report.to_dict(), kind)
    if kind in FINE_TUNED:
        assert "adapter=monai-transfer" in report and "dropped on purpose" in report


def test_fine_tuned_provenance_keeps_the_intensity_it_was_trained_with(starts, data, tmp_path):
    """A network fine-tuned from the SSL encoder keeps the encoder's intensity mapping in its provenance (what the
    next run from it reuses), names the fine-tuning and what it was fine-tuned from."""
    from monai_transfer.finetune import finetune

    encoder = starts["pretrain output folder"] / "encoder.pt"
    recorded = starting_provenance(encoder)["preprocessing"]["intensity"]
    run = tmp_path / "run"
    result = finetune(datalist=str(data / "squares.json"), out_dir=str(run), pretrained=str(encoder), **FT)
    assert result["intensity"] == recorded and result["intensity_source"] == "starting point"
    for folder in (run, bundle_from_run(run)):
        prov = starting_provenance(folder, "resnet10")
        assert prov["preprocessing"]["intensity"] == recorded
        assert prov["method"].startswith("supervised classification fine-tuning after simclr"), prov["method"]
        assert prov["extra"]["fine_tuned_from"].endswith("encoder.pt")
        assert (prov["backbone_name"], prov["spatial_dims"], prov["in_channels"]) == ("resnet10", 2, 1)


def test_adapter_names_a_fine_tuned_transfer_net_and_still_names_lightning_checkpoints():
    from monai_transfer.networks import create_transfer_net
    from monai_transfer.weights.adapters import detect_adapter

    net = create_transfer_net("resnet10", task="classification", spatial_dims=2, in_channels=1, num_classes=2,
                              backbone_kwargs={"widen_factor": 0.25})  # fmt: skip
    target = net.backbone.state_dict()
    assert detect_adapter(net.state_dict(), target).name == "monai-transfer"
    ddp = {f"module.{k}": v for k, v in net.state_dict().items()}
    assert detect_adapter(ddp, target).name == "monai-transfer"
    # an SSL module (backbone beside projection heads) is still lightly/solo-learn's layout
    ssl = {**{f"backbone.{k}": v for k, v in target.items()}, "projection_head.0.weight": torch.zeros(4, 4)}
    assert detect_adapter(ssl, target).name == "lightning-ssl"
    seg = create_transfer_net("resnet10", task="segmentation", spatial_dims=2, in_channels=1, num_classes=2,
                              backbone_kwargs={"widen_factor": 0.25})  # fmt: skip
    assert detect_adapter(seg.state_dict(), seg.backbone.state_dict()).name == "monai-transfer"


def test_shipped_bundles_resolve_without_downloading(tmp_path, starts):
    """A shipped bundle of a published source starts from that source (its large file, named by the bundle); a
    pretraining bundle gives the encoder it wrote, and says it has not been run when it has not."""
    from monai_transfer.weights.sources import is_source_name

    for folder in sorted((REPO / "bundles").iterdir()):
        meta = json.loads((folder / "configs" / "metadata.json").read_text())
        if (meta.get("monai_transfer") or {}).get("kind") == "pretraining":
            with pytest.raises(FileNotFoundError, match="has not been run"):
                resolve_pretrained(folder)
            ran = shutil.copytree(folder, tmp_path / folder.name)
            (ran / "pretrain").mkdir()
            shutil.copy(starts["pretrain output folder"] / "encoder.pt", ran / "pretrain" / "encoder.pt")
            start = resolve_pretrained(ran)
            assert start.weights == ran / "pretrain" / "encoder.pt" and start.provenance["method"]
        else:
            start = resolve_pretrained(folder)
            assert start.kind == "source" and is_source_name(start.source), folder
            train = json.loads((folder / "configs" / "train.json").read_text())
            # a bundle made from the shipped bundle names the same published file (large_files.yml), no download
            nd = train["network_def"]
            b = create_bundle(tmp_path / f"from_{folder.name}", backbone=nd["backbone"], task=train["task"],
                              spatial_dims=train["spatial_dims"], num_classes=train["num_classes"],
                              in_channels=train["in_channels"], pretrained=folder)  # fmt: skip
            if (folder / "large_files.yml").is_file():
                assert (b / "large_files.yml").read_text() == (folder / "large_files.yml").read_text()
            else:  # a file its publisher hands out on request: placed by hand, in both bundles at the same path
                by_hand = json.loads((b / "configs" / "metadata.json").read_text())["monai_transfer"]
                assert by_hand["starting_weights_by_hand"] == meta["monai_transfer"]["starting_weights_by_hand"]
                assert not (b / "large_files.yml").exists()


def test_a_folder_without_weights_says_what_it_looked_for(tmp_path):
    random_bundle = create_bundle(tmp_path / "r", **NET, task="classification", spatial_dims=2, num_classes=2)
    with pytest.raises(FileNotFoundError, match="random initialisation"):
        resolve_pretrained(random_bundle)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="encoder.pt"):
        create_bundle(tmp_path / "e", **NET, task="classification", spatial_dims=2, num_classes=2,
                      pretrained=tmp_path / "empty")  # fmt: skip


def test_another_monai_bundle_gives_its_weights_and_no_invented_record(tmp_path):
    bundle = tmp_path / "zoo_bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": "a model-zoo bundle"}))
    torch.save(create_backbone("resnet10", spatial_dims=2, in_channels=1).state_dict(), bundle / "models" / "model.pt")
    start = resolve_pretrained(bundle)
    assert (start.kind, start.weights, start.origin) == ("file", bundle / "models" / "model.pt", "MONAI bundle")
    assert start.provenance == {} and starting_provenance(bundle) == {}


def test_command_line_takes_folders_as_pretrained(starts, data, tmp_path, capsys):
    """``finetune --pretrained <pretrain's own bundle>`` (refused up front before) trains and writes its bundle;
    ``bundle create --pretrained <a finetune run folder>`` writes a bundle whose report names what loaded."""
    from monai_transfer.cli import main

    out = tmp_path / "run"
    code = main(["finetune", "--backbone", "resnet10", "--backbone-arg", "widen_factor=0.25", "--task",
                 "classification", "--data", str(data / "squares.json"), "--out", str(out), "--epochs", "1",
                 "--batch-size", "4", "--test-section", "", "--no-tensorboard", "--quiet",
                 "--pretrained", str(starts["pretrain fine-tuning bundle"])])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and (out / "bundle" / "models" / "model.pt").is_file()
    assert "adapter=monai" in printed and "starting-point bundle" in printed
    code = main(["bundle", "create", "--backbone", "resnet10", "--backbone-arg", "widen_factor=0.25", "--task",
                 "classification", "--num-classes", "2", "--spatial-dims", "2", "--out", str(tmp_path / "b"),
                 "--pretrained", str(starts["finetune run folder"])])  # fmt: skip
    assert code == 0
    readme = (tmp_path / "b" / "docs" / "README.md").read_text()
    assert "adapter=monai-transfer" in readme and "dropped on purpose" in readme
