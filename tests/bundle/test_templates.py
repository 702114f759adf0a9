"""Configs rendered from JSON templates: every rendered config (train, evaluate, inference, multi-GPU, pretrain) has
the properties MONAI's ``ConfigWorkflow`` requires (``monai.bundle.properties``), components are referenced by id and
never by list position, and a template and its renderer cannot drift apart silently."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from monai_transfer.bundle.templates import evaluate_config, finetune_config, inference_config
from monai_transfer.bundle.templates.multi_gpu import multi_gpu_overrides
from monai_transfer.bundle.writer import metadata_head
from monai_transfer.engines.specs import FinetuneSpec
from monai_transfer.engines.templates import load_template, render
from monai_transfer.engines.workflow import OverrideError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "monai_transfer"
#: a reference into a list by position (``@validate#handlers#1``, ``train::handlers::0``)
BY_POSITION = re.compile(r"(#|::)handlers(#|::)\d")

CASES = {
    "cls2d": dict(backbone="resnet18", task="classification", spatial_dims=2, num_classes=2, spatial_size=64),
    "seg3d": dict(backbone="resnet18", task="segmentation", spatial_dims=3, num_classes=3, patch_size=32),
    "tracked": dict(
        backbone="resnet18",
        task="classification",
        spatial_dims=2,
        num_classes=3,
        tensorboard=True,
        progress=True,
        mlflow_uri="sqlite:///mlruns.db",
    ),
}
INFER_KEYS = ("backbone", "task", "spatial_dims", "num_classes", "spatial_size", "patch_size")


def _options(**values: Any) -> Any:
    from monai_transfer.engines.specs.pretrain import PretrainSpec

    return PretrainSpec.from_mapping({"data": "d.json", "out": "runs/x", "spatial_dims": 2, **values})


def _pretrain(**values: Any) -> dict[str, Any]:
    from monai_transfer.ssl.bundle_config import pretrain_config

    return pretrain_config(_options(**values))


def _missing_properties(
    tmp_path: Path, configs: list[dict[str, Any]], workflow_type: str, required_only: bool = False
) -> list[str]:
    """The properties MONAI's ``ConfigWorkflow(workflow_type=...)`` finds missing in ``configs`` (merged in order, as
    ``--config_file "['train.json', 'evaluate.json']"`` merges them), metadata included (``MetaProperties``).

    A property is looked up by its id, not built: building the trainer needs data, and the check is about ids.
    ``required_only``: the required properties only (``BundleWorkflow.check_properties``), without MONAI's check of
    optional ids, which reads every entry of ``train#handlers`` as an inline component (``h["_target_"]``).
    """
    from monai.bundle import BundleWorkflow, ConfigWorkflow

    from monai_transfer.bundle.check import _normalize_refs

    class StaticWorkflow(ConfigWorkflow):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _normalize_refs(self.parser.get())  # "@train#handlers" as MONAI 1.6 spells it, as its resolver does

        def _get_property(self, name: str, property: dict) -> Any:
            try:
                prop_id = self._get_prop_id(name, property)
            except KeyError as err:  # hasattr() in check_properties only swallows AttributeError
                raise AttributeError(str(err)) from err
            return None if prop_id is None else self.parser[prop_id]

    files = []
    for i, config in enumerate(configs):
        files.append(tmp_path / f"config_{i}.json")
        files[-1].write_text(json.dumps(config))
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps(metadata_head("0.1.0", "initial version")))
    wf = StaticWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(meta),
        logging_file=False,
        workflow_type=workflow_type,
        bundle_root=str(tmp_path),
    )
    assert wf.properties, "MONAI's property tables were not loaded"
    return (BundleWorkflow.check_properties(wf) if required_only else wf.check_properties()) or []


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_evaluate_and_multi_gpu_configs_have_monais_train_properties(case, tmp_path):
    train = finetune_config(FinetuneSpec(**CASES[case]))
    assert _missing_properties(tmp_path, [train], "train") == []
    # evaluate.json and multi_gpu_train.json are merged over train.json, and run as a train workflow
    assert _missing_properties(tmp_path, [train, evaluate_config()], "train") == []
    assert _missing_properties(tmp_path, [train, multi_gpu_overrides(train)], "train") == []


@pytest.mark.parametrize("case", ["cls2d", "seg3d"])
def test_inference_configs_have_monais_infer_properties(case, tmp_path):
    infer = inference_config(FinetuneSpec(**{k: v for k, v in CASES[case].items() if k in INFER_KEYS}))
    assert _missing_properties(tmp_path, [infer], "infer") == []


@pytest.mark.parametrize("method, backbone", [("simclr", "resnet10"), ("dino", "resnet10")])
def test_pretraining_configs_have_monais_required_train_properties(method, backbone, tmp_path):
    from monai_transfer.bundle.pretraining import create_pretraining_bundle

    bundle = create_pretraining_bundle(tmp_path / "bundle", method=method, backbone=backbone, spatial_dims=2)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    # the pretraining config lists its named handlers (schedule, epoch losses, chance, kNN monitor) by reference,
    # which MONAI's check of optional ids cannot read; every required property is there
    assert _missing_properties(tmp_path, [train], "train", required_only=True) == []
    run = _pretrain(method=method, backbone=backbone, monitor_data="m.json")
    # a run of the command line reads its datalist where it is; a bundle adds its dataset_dir
    assert _missing_properties(tmp_path, [run], "train", required_only=True) == ["dataset_dir"]


def test_the_ssl_layer_names_no_bundle_step_and_the_bundle_layer_adds_it():
    from monai_transfer.bundle.templates.pretrain import pretrain_config

    run = _pretrain(method="simclr", backbone="resnet10")
    assert "monai_transfer.bundle" not in json.dumps(run)
    with_bundle = pretrain_config(_options(method="simclr", backbone="resnet10"))
    assert with_bundle["run"][:-1] == run["run"] and "finetune_bundle(" in with_bundle["run"][-1]
    assert {k: v for k, v in with_bundle.items() if k not in ("imports", "run")} == {
        k: v for k, v in run.items() if k not in ("imports", "run")
    }


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return [node] if isinstance(node, str) and "@" in node else []


@pytest.mark.parametrize("case", sorted(CASES))
def test_components_are_referenced_by_id_not_by_list_position(case):
    train = finetune_config(FinetuneSpec(**CASES[case]))
    configs = [train, evaluate_config(), multi_gpu_overrides(train), _pretrain(method="simclr", backbone="resnet10")]
    bad = [r for config in configs for r in _references(config) if BY_POSITION.search(r)]
    assert bad == []
    # the run checkpoint names what it saves by id: reordering validate#handlers cannot hand it another object
    (run_checkpoint,) = [h for h in train["train"]["handlers"] if h["_target_"].endswith("RunCheckpoint")]
    assert run_checkpoint["objects"] == {
        "best": "@validate#best_checkpoint",
        "early_stop": "@validate#early_stop",
        "evaluator": "@validate#evaluator",
    }
    assert {"@validate#best_checkpoint", "@validate#early_stop"} <= {
        h for h in train["validate"]["handlers"] if isinstance(h, str)
    }
    # MONAI Label inserts its loader into train#handlers and reads each one's _target_: components, not references
    assert all(isinstance(h, dict) and "_target_" in h for h in train["train"]["handlers"])


def test_no_template_or_shipped_bundle_refers_to_a_list_position():
    files = [*PACKAGE.rglob("templates/*.json"), *(ROOT / "bundles").rglob("configs/*.json")]
    assert any("templates" in f.parts for f in files)
    assert [str(f) for f in files if BY_POSITION.search(f.read_text())] == []


def test_every_template_is_package_data():
    listed = next(line for line in (ROOT / "setup.cfg").read_text().splitlines() if line.startswith("monai_transfer ="))
    for path in PACKAGE.rglob("templates/*.json"):
        pattern = f"{path.parent.relative_to(PACKAGE).as_posix()}/*.json"
        assert pattern in listed, f"{pattern} is not in setup.cfg's [options.package_data]"


def test_render_sets_values_by_id_and_refuses_an_id_the_template_lacks():
    config = render("monai_transfer.finetune.templates", "train.json", {"train#trainer#max_epochs": 3}, ["threshold"])
    assert config["train"]["trainer"]["max_epochs"] == 3 and "threshold" not in config
    assert "threshold" in load_template("monai_transfer.finetune.templates", "train.json")  # a fresh copy each time
    with pytest.raises(OverrideError, match="max_epoch"):
        render("monai_transfer.finetune.templates", "train.json", {"train#trainer#max_epoch": 3})
    with pytest.raises(OverrideError, match="no such id"):
        render("monai_transfer.finetune.templates", "train.json", drop=["validate#best"])
