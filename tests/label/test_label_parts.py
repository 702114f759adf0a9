"""The MONAI Label parts that run without MONAI Label: reading bundles, class labels, the app folder, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_transfer.cli import main
from monai_transfer.label import BundleServeError, build_app, read_served_bundle, served_bundles, server_command
from monai_transfer.label.class_labels import class_index, image_id, read_class_csv

REPO = Path(__file__).resolve().parents[2]


def _bundle(root: Path, task: str = "segmentation", labels=("background", "liver"), weights: bool = True) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "metadata.json").write_text(json.dumps({"network_data_format": {"inputs": {}, "outputs": {}}}))
    (root / "configs" / "inference.json").write_text(
        json.dumps({"task": task, "labels": list(labels), "spatial_dims": 3})
    )
    (root / "configs" / "train.json").write_text("{}")
    if weights:
        (root / "models").mkdir()
        (root / "models" / "model.pt").write_bytes(b"")
    return root


def test_shipped_bundles_are_servable():
    seg = read_served_bundle(REPO / "bundles" / "swin_unetr_ssl_seg3d")
    assert seg.task == "segmentation" and seg.spatial_dims == 3 and seg.labels[0] == "background"
    assert seg.trainable and not seg.has_weights  # a starting point: trains in MONAI Label, infers after that
    cls = read_served_bundle(REPO / "bundles" / "resnet50_imagenet_cls2d")
    assert cls.task == "classification" and cls.spatial_dims == 2 and cls.name == "resnet50_imagenet_cls2d"


def test_task_and_labels_fall_back_to_metadata(tmp_path):
    root = tmp_path / "b"
    (root / "configs").mkdir(parents=True)
    outputs = {"pred": {"format": "classification", "channel_def": {"1": "yes", "0": "no"}}}
    inputs = {"image": {"spatial_shape": [64, 64]}}
    meta = {"network_data_format": {"inputs": inputs, "outputs": outputs}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    (root / "configs" / "inference.json").write_text("{}")
    b = read_served_bundle(root)
    assert (b.task, b.labels, b.spatial_dims, b.trainable, b.has_weights) == (
        "classification",
        ("no", "yes"),
        2,
        False,
        False,
    )


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: (r / "configs" / "inference.json").unlink(), "inference.json is missing"),
        (lambda r: (r / "configs" / "metadata.json").write_text("{"), "not valid JSON"),
        (
            lambda r: (r / "configs" / "inference.json").write_text('{"task": "detection", "labels": ["a"]}'),
            "detection",
        ),
        (lambda r: (r / "configs" / "inference.json").write_text('{"task": "segmentation"}'), "no class names"),
    ],
)
def test_unservable_bundles_are_named(tmp_path, break_it, message):
    root = _bundle(tmp_path / "b")
    break_it(root)
    with pytest.raises(BundleServeError, match=message):
        read_served_bundle(root)


def test_model_names_unique_and_chosen(tmp_path):
    a = _bundle(tmp_path / "x" / "my bundle")
    b = _bundle(tmp_path / "y" / "my bundle")
    assert [s.name for s in served_bundles([a, b])] == ["my_bundle", "my_bundle_2"]
    assert [s.name for s in served_bundles([f"liver={a}"])] == ["liver"]
    with pytest.raises(BundleServeError, match="two bundles are named"):
        served_bundles([f"liver={a}", f"liver={b}"])
    with pytest.raises(BundleServeError, match="no such directory"):
        served_bundles([tmp_path / "nothing"])


def test_app_folder_links_bundles_and_never_replaces_a_real_folder(tmp_path):
    bundles = served_bundles([f"liver={_bundle(tmp_path / 'b')}"])
    app = build_app(bundles, tmp_path / "app")
    assert (app / "model" / "liver").resolve() == (tmp_path / "b").resolve()
    assert "TransferLabelApp" in (app / "main.py").read_text()
    build_app(bundles, app)  # again: the link is replaced
    (app / "model" / "liver").unlink()
    (app / "model" / "liver").mkdir()
    with pytest.raises(FileExistsError, match="not a link"):
        build_app(bundles, app)
    assert (app / "model" / "liver").is_dir()


def test_server_command_is_loopback_and_offline_by_default(tmp_path):
    cmd = server_command("/env/bin/python", tmp_path / "app", tmp_path / "studies", ["a", "b"], 8123)
    assert cmd[:4] == ["/env/bin/python", "-m", "monailabel.main", "start_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    conf = {cmd[i + 1]: cmd[i + 2] for i, x in enumerate(cmd) if x == "--conf"}
    assert conf == {"zoo_source": "local", "sam2": "false", "models": "a,b"}


def test_class_labels_from_csv(tmp_path):
    labels = ("no_lesion", "lesion")
    csv = tmp_path / "labels.csv"
    csv.write_text("Image,Class\nsub-0_T1w.nii.gz,lesion\nsub-1_T1w,0\n/data/sub-2_T1w.nii,LESION\n\n")
    assert read_class_csv(csv, labels) == {"sub-0_T1w": 1, "sub-1_T1w": 0, "sub-2_T1w": 1}
    assert read_class_csv(tmp_path / "absent.csv", labels) == {}
    csv.write_text("image,label\nsub-0,tumour\n")
    with pytest.raises(ValueError, match=r"row 2: class 'tumour' is not one of"):
        read_class_csv(csv, labels)
    csv.write_text("image,label\nsub-0,0\nsub-0.nii.gz,1\n")
    with pytest.raises(ValueError, match="has two classes"):
        read_class_csv(csv, labels)
    csv.write_text("file,diagnosis\nsub-0,0\n")
    with pytest.raises(ValueError, match="no label/class column"):
        read_class_csv(csv, labels)
    assert image_id("a/b/sub-0.nii.gz") == "sub-0" and class_index(" 1 ", labels, "x") == 1
    with pytest.raises(ValueError):
        class_index("2", labels, "x")


def test_serve_names_a_bad_bundle_before_starting_anything(tmp_path, capsys):
    (tmp_path / "studies").mkdir()
    code = main(["label", "serve", "--bundle", str(tmp_path / "nope"), "--studies", str(tmp_path / "studies"),
                 "--python", "/nonexistent/python"])  # fmt: skip
    assert code == 2
    assert "no such directory" in capsys.readouterr().err
    code = main(["label", "serve", "--bundle", str(_bundle(tmp_path / "b")), "--studies", str(tmp_path / "none")])
    assert code == 2
    assert "--studies" in capsys.readouterr().err


def test_training_request_settings_are_fine_tuning_spec_fields():
    from monai_transfer.engines.specs import SpecFieldError
    from monai_transfer.label.train_request import request_overrides, train_options

    train = json.loads((REPO / "bundles" / "resnet50_imagenet_cls2d" / "configs" / "train.json").read_text())
    options = train_options(train)
    assert options["max_epochs"] == train["train"]["trainer"]["max_epochs"] and options["lr"] == train["lr"]
    assert options["batch_size"] == train["batch_size"]
    # MONAI Label retrains in the bundle's folder on all the labels it has; patience (off) is not offered
    assert not {"resume", "label_fraction", "patience", "epochs"} & set(options)
    request = {"max_epochs": 3, "lr": "1e-4", "patience": 2, "device": "cpu", "val_split": 0.2, "model": "x"}
    assert request_overrides(request) == {"train#trainer#max_epochs": 3, "lr": 1e-4, "patience": 2}
    for bad, message in (({"max_epochs": 0}, "request.max_epochs: must be >= 1, got 0"),
                         ({"batch_size": "many"}, "request.batch_size: expected an integer, got 'many'"),
                         ({"lr": -1}, "request.lr: must be >= 0.0, got -1")):  # fmt: skip
        with pytest.raises(SpecFieldError) as err:
            request_overrides(bad)
        assert str(err.value).startswith(message), str(err.value)
