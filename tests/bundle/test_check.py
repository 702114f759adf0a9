"""``check_bundle``: a valid bundle passes; each kind of breakage yields its own problem, naming the file and key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from monai_transfer.bundle.check import SCHEMA_FILE, SCHEMA_MD5, BundleProblem, check_bundle

from .conftest import build_network, read_json, tree_digest, write_json

META = "configs/metadata.json"
TRAIN = "configs/train.json"
INFER = "configs/inference.json"


def edit_json(root: Path, rel: str, fn: Callable[[dict], None]) -> None:
    data = read_json(root / rel)
    fn(data)
    write_json(root / rel, data)


def _pop(*keys: str) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return fn


def _set(value, *keys: str) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return fn


# --- mutations: (name, mutate(root), file, key, message prefix) ------------------------------------------------------


def m_metadata_missing_key(root):
    edit_json(root, META, _pop("task"))


def m_metadata_schema_type(root):
    edit_json(root, META, _set(["a", "b"], "authors"))


def m_absolute_path(root):
    edit_json(root, INFER, _set("/tmp/eval", "output_dir"))


def m_absolute_path_in_expression(root):
    edit_json(root, TRAIN, _set("$os.path.join('/workspace/data', 'spleen')", "dataset_dir"))


def m_windows_path(root):
    edit_json(root, TRAIN, _set("C:\\data\\ckpt", "ckpt_dir"))


def m_weights_do_not_fit(root):
    torch.save(build_network(num_classes=3).state_dict(), root / "models" / "model.pt")


def m_truncated_model(root):
    data = (root / "models" / "model.pt").read_bytes()
    (root / "models" / "model.pt").write_bytes(data[: len(data) // 2])


def m_missing_license(root):
    (root / "LICENSE").unlink()


def m_version_without_changelog(root):
    edit_json(root, META, _set({"0.0.9": "older"}, "changelog"))


def m_two_space_json(root):
    write_json(root / INFER, read_json(root / INFER), indent=2)


def m_missing_train_dataset_data(root):
    edit_json(root, TRAIN, _pop("train", "dataset", "data"))


def m_missing_inference_property(root):
    edit_json(root, INFER, _pop("dataset"))
    edit_json(root, INFER, _set("$[]", "dataloader", "dataset"))


def m_big_file(root):
    with open(root / "models" / "model.ts", "wb") as f:
        f.truncate(26 * 2**20)


def m_large_files_malformed(root):
    (root / "large_files.yml").write_text(
        "large_files:\n  - path: models/model.pt\n    hash_val: abc\n    hash_type: md5\n"
    )


def m_large_files_outside(root):
    (root / "large_files.yml").write_text(
        "large_files:\n"
        "  - path: ../outside.pt\n"
        "    url: https://example.org/m.pt\n"
        "    hash_val: ''\n"
        "    hash_type: md5\n"
    )


def m_channel_def_missing(root):
    edit_json(root, META, _pop("network_data_format", "outputs", "pred", "channel_def"))


def m_output_channels_disagree(root):
    edit_json(root, META, _set(3, "network_data_format", "outputs", "pred", "num_channels"))


def m_input_image_missing(root):
    other = {
        "type": "image",
        "format": "magnitude",
        "num_channels": 1,
        "spatial_shape": [32, 32],
        "dtype": "float32",
        "value_range": [0, 1],
    }
    edit_json(root, META, _set({"x": other}, "network_data_format", "inputs"))


def m_required_packages(root):
    edit_json(root, META, _set({"monai": "1.6.1"}, "required_packages_version"))


def m_invalid_json(root):
    (root / TRAIN).write_text((root / TRAIN).read_text()[:-20])


def m_duplicate_key(root):
    text = (root / INFER).read_text().replace('"bundle_root": ".",', '"bundle_root": ".",\n    "device": "cpu",', 1)
    (root / INFER).write_text(text)


def m_unknown_reference(root):
    edit_json(root, INFER, _set("@netwrk", "evaluator", "network"))


def m_unknown_meta_reference(root):
    edit_json(root, INFER, _set("@_meta_#network_data_format#outputs#pred#num_chanels", "num_classes"))


def m_missing_train_trainer(root):
    edit_json(root, TRAIN, _pop("train", "trainer"))


def m_network_def_broken(root):
    edit_json(root, INFER, _set("monai_transfer.networks.no_such_factory", "network_def", "_target_"))


def m_train_network_differs(root):
    edit_json(root, TRAIN, _set(4, "network_def", "num_classes"))


def m_model_missing(root):
    (root / "models" / "model.pt").unlink()


def m_not_a_state_dict(root):
    torch.save({"model": build_network().state_dict(), "epoch": 3}, root / "models" / "model.pt")


def m_unsafe_logging(root):
    conf = (root / "configs" / "logging.conf").read_text().replace("class=StreamHandler", "class=os.system")
    (root / "configs" / "logging.conf").write_text(conf)


def m_wrong_optional_id(root):
    edit_json(root, INFER, _set("@preprocessing_other", "dataset", "transform"))
    edit_json(root, INFER, _set({"_target_": "Compose", "transforms": []}, "preprocessing_other"))


MUTATIONS = [
    (m_metadata_missing_key, META, "task", "does not match the metadata schema: 'task' is a required property"),
    (m_metadata_schema_type, META, "authors", "does not match the metadata schema"),
    (m_absolute_path, INFER, "output_dir", "absolute path '/tmp/eval'"),
    (m_absolute_path_in_expression, TRAIN, "dataset_dir", "absolute path '/workspace/data'"),
    (m_windows_path, TRAIN, "ckpt_dir", "absolute path"),
    (m_weights_do_not_fit, "models/model.pt", "network_def", "weights do not fit the network: 2 shape-mismatched"),
    (m_truncated_model, "models/model.pt", "", "not a readable torch checkpoint"),
    (m_not_a_state_dict, "models/model.pt", "", "not a plain state_dict"),
    (m_model_missing, "models/model.pt", "", "required file is missing (and large_files.yml does not list it)"),
    (m_missing_license, "LICENSE", "", "required file is missing"),
    (m_version_without_changelog, META, "version", "no changelog entry for version 0.1.0"),
    (m_required_packages, META, "required_packages_version", "required_packages_version does not name monai_transfer"),
    (m_two_space_json, INFER, "", "not written with a 4-space indent"),
    (m_invalid_json, TRAIN, "", "not valid JSON: line"),
    (m_duplicate_key, INFER, "device", "duplicate JSON key"),
    (m_missing_train_dataset_data, TRAIN, "train#dataset#data", "MONAI Label needs id train#dataset#data"),
    (
        m_unknown_meta_reference,
        INFER,
        "num_classes",
        "unknown reference @_meta_#network_data_format#outputs#pred#num_chanels: no such key in configs/metadata.json",
    ),
    (m_missing_train_trainer, TRAIN, "train#trainer", "missing property 'trainer' required by MONAI's ConfigWorkflow"),
    (m_missing_inference_property, INFER, "dataset", "missing property 'dataset' required by MONAI's ConfigWorkflow"),
    (
        m_wrong_optional_id,
        INFER,
        "preprocessing",
        "optional property 'preprocessing' is referenced from dataset#transform",
    ),
    (m_unknown_reference, INFER, "evaluator#network", "unknown reference @netwrk"),
    (m_big_file, "models/model.ts", "", "file over 25 MB (26.0 MB) not listed in large_files.yml"),
    (m_large_files_malformed, "large_files.yml", "large_files#0#url", "large-file entry malformed: url missing"),
    (m_large_files_outside, "large_files.yml", "large_files#0#path", "large-file path outside the bundle"),
    (m_channel_def_missing, META, "network_data_format#outputs#pred#channel_def", "channel_def missing"),
    (m_input_image_missing, META, "network_data_format#inputs#image", "input description missing"),
    (
        m_output_channels_disagree,
        META,
        "network_data_format#outputs#pred#num_channels",
        "network output disagrees with the metadata: output channel number `2` doesn't match: `3`",
    ),
    (m_network_def_broken, INFER, "network_def", "network_def does not instantiate"),
    (m_train_network_differs, TRAIN, "network_def", "network_def differs from inference.json's"),
    (m_unsafe_logging, "configs/logging.conf", "", "not a logging config MONAI applies"),
]


def test_valid_bundle_has_no_problems(valid_bundle):
    before = tree_digest(valid_bundle)
    assert check_bundle(valid_bundle, export=False) == []
    assert tree_digest(valid_bundle) == before


@pytest.mark.slow
def test_valid_bundle_exports(valid_bundle):
    """The export check (``ckpt_export`` to TorchScript, compared with eager) runs once, on the valid bundle."""
    before = tree_digest(valid_bundle)
    assert check_bundle(valid_bundle, export=True) == []
    assert tree_digest(valid_bundle) == before
    assert not (valid_bundle / "models" / "model.ts").exists()


@pytest.mark.parametrize("mutate, file, key, prefix", MUTATIONS, ids=[m[0].__name__[2:] for m in MUTATIONS])
def test_mutation_is_reported(valid_bundle, mutate, file, key, prefix):
    mutate(valid_bundle)
    before = tree_digest(valid_bundle)
    problems = check_bundle(valid_bundle, export=False)
    assert tree_digest(valid_bundle) == before, "check_bundle modified the bundle"
    assert all(isinstance(p, BundleProblem) for p in problems)
    matching = [p for p in problems if p.file == file and p.key == key and p.message.startswith(prefix)]
    assert matching, "\n".join(map(str, problems)) or "no problems"


def test_model_listed_in_large_files_may_be_absent(valid_bundle):
    digest = hashlib.md5((valid_bundle / "models" / "model.pt").read_bytes()).hexdigest()
    (valid_bundle / "models" / "model.pt").unlink()
    (valid_bundle / "large_files.yml").write_text(
        "large_files:\n"
        "  - path: models/model.pt\n"
        "    url: https://example.org/releases/model.pt\n"
        f"    hash_val: {digest}\n"
        "    hash_type: md5\n"
    )
    assert check_bundle(valid_bundle, export=False) == []


def test_large_file_listed_is_accepted_and_hash_checked(valid_bundle):
    with open(valid_bundle / "models" / "model.ts", "wb") as f:
        f.truncate(26 * 2**20)
    (valid_bundle / "large_files.yml").write_text(
        "large_files:\n"
        "  - path: models/model.ts\n"
        "    url: https://example.org/releases/model.ts\n"
        "    hash_val: '0123'\n"
        "    hash_type: md5\n"
    )
    problems = check_bundle(valid_bundle, export=False)
    found = [(p.file, p.key, p.message.split(":")[0]) for p in problems]
    assert found == [("models/model.ts", "", "large-file hash mismatch")]


def test_problem_str():
    p = BundleProblem(META, "version", "no changelog entry for version 0.1.0")
    assert str(p) == "configs/metadata.json: version: no changelog entry for version 0.1.0"
    assert str(BundleProblem("LICENSE", "", "required file is missing")) == "LICENSE: required file is missing"


def test_shipped_schema_md5():
    assert hashlib.md5(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_MD5


def test_missing_directory_and_empty_directory(tmp_path):
    assert [p.message for p in check_bundle(tmp_path / "nope")] == ["bundle directory does not exist"]
    problems = check_bundle(tmp_path, export=False)
    assert {p.file for p in problems} >= {"LICENSE", META, TRAIN, INFER, "docs/README.md", "configs/logging.conf"}


def test_garbage_everywhere_never_raises(valid_bundle):
    for rel in (META, TRAIN, INFER, "configs/evaluate.json"):
        (valid_bundle / rel).write_text(json.dumps(["not", "a", "config"], indent=4))
    (valid_bundle / "large_files.yml").write_text(":\n- [")
    problems = check_bundle(valid_bundle, export=True)
    assert problems and all(isinstance(p, BundleProblem) for p in problems)


def test_explicit_schema(valid_bundle, tmp_path):
    schema = {"type": "object", "required": ["extra_field"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    problems = check_bundle(valid_bundle, export=False, schema=str(tmp_path / "schema.json"))
    assert [(p.file, p.key) for p in problems] == [(META, "extra_field")]


@pytest.mark.slow
def test_export_falls_back_to_onnx(valid_bundle, monkeypatch):
    """A network that does not script is exported to ONNX (onnxruntime compares it with eager).

    Both failing is one problem."""
    import monai.bundle

    def no_script(*args, **kwargs):
        raise RuntimeError("Could not script: unsupported construct")

    monkeypatch.setattr(monai.bundle, "ckpt_export", no_script)
    before = tree_digest(valid_bundle)
    assert check_bundle(valid_bundle, export=True) == []
    assert tree_digest(valid_bundle) == before

    import monai_transfer.networks.export as export

    def no_onnx(*args, **kwargs):
        raise export.ExportError("ONNX export of TransferNet failed: unsupported op")

    monkeypatch.setattr(export, "export_onnx", no_onnx)
    problems = check_bundle(valid_bundle, export=True)
    assert [(p.file, p.key) for p in problems] == [("models/model.pt", "network_def")]
    assert problems[0].message.startswith("export failed: ckpt_export to TorchScript (RuntimeError: Could not script")
    assert "ONNX (ExportError" in problems[0].message


def test_export_detects_a_diverging_torchscript(valid_bundle, monkeypatch):
    """The TorchScript model's output is compared with eager's (atol 1e-4)."""
    real_load = torch.jit.load

    def load_and_perturb(*args, **kwargs):
        module = real_load(*args, **kwargs)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.1)
        return module

    monkeypatch.setattr(torch.jit, "load", load_and_perturb)
    problems = check_bundle(valid_bundle, export=True)
    assert [(p.file, p.key) for p in problems] == [("models/model.pt", "network_def")]
    assert problems[0].message.startswith("TorchScript export differs from eager: max abs difference")
