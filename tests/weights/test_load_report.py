"""Strict loading, the load report, safe reading (weights_only) and provenance round trips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from monai_transfer.networks import create_backbone
from monai_transfer.weights import (
    LoadReport,
    PretrainedLoadError,
    Provenance,
    UnsafeCheckpointError,
    load_pretrained,
    save_pretrained,
    unwrap_state_dict,
)


@pytest.fixture(scope="module")
def resnet10_state():
    torch.manual_seed(0)
    return create_backbone("resnet10", spatial_dims=2, in_channels=1).state_dict()


def _fresh() -> nn.Module:
    return create_backbone("resnet10", spatial_dims=2, in_channels=1)


def test_shape_mismatch_raises_with_keys_and_shapes(resnet10_state):
    bad = dict(resnet10_state)
    bad["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    net = _fresh()
    before = net.state_dict()["layer2.0.conv1.weight"].clone()
    with pytest.raises(PretrainedLoadError) as info:
        load_pretrained(net, bad)
    message = str(info.value)
    assert "layer1.0.conv1.weight: checkpoint (32, 64, 3, 3) vs module (64, 64, 3, 3)" in message
    assert info.value.report.mismatched == [("layer1.0.conv1.weight", (32, 64, 3, 3), (64, 64, 3, 3))]
    assert torch.equal(net.state_dict()["layer2.0.conv1.weight"], before)  # nothing loaded


def test_missing_and_unexpected_keys_raise(resnet10_state):
    bad = {k: v for k, v in resnet10_state.items() if not k.startswith("layer4.")}
    bad["extra_block.weight"] = torch.zeros(3)
    with pytest.raises(PretrainedLoadError, match=r"(?s)missing key.*layer4\.0\.conv1\.weight.*extra_block\.weight"):
        load_pretrained(_fresh(), bad, source="monai")


def test_heads_are_dropped_not_errors(resnet10_state, all_loaded):
    ckpt = {**resnet10_state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    report = load_pretrained(_fresh(), {"state_dict": ckpt})
    all_loaded(report)
    assert sorted(report.dropped) == ["fc.bias", "fc.weight"]


def test_non_strict_loads_what_fits_and_warns(resnet10_state, caplog):
    partial = {k: v for k, v in resnet10_state.items() if not k.startswith("layer4.")}
    partial["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    net = _fresh()
    init_layer4 = net.state_dict()["layer4.0.conv1.weight"].clone()
    with caplog.at_level(logging.WARNING, logger="monai_transfer.weights.load"):
        report = load_pretrained(net, partial, strict=False)
    assert not report.ok
    assert any("Non-strict" in r.message and "layer4" in r.message for r in caplog.records)
    fractions = report.stage_fractions()
    assert fractions["stem"] == 1.0 and fractions["layer4"] == 0.0 and 0 < fractions["layer1"] < 1
    assert torch.equal(net.state_dict()["layer2.0.conv1.weight"], resnet10_state["layer2.0.conv1.weight"])
    assert torch.equal(net.state_dict()["layer4.0.conv1.weight"], init_layer4)


def test_report_table_and_dict(resnet10_state):
    partial = {k: v for k, v in resnet10_state.items() if not k.startswith("layer3.")}
    report = load_pretrained(_fresh(), partial, strict=False)
    table = str(report)
    assert table == report.to_table()
    lines = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:] if line.split()}
    assert lines["stem"] == ["6", "6", "1.00"]  # conv1.weight + 5 bn1 tensors (num_batches_tracked included)
    assert lines["layer3"][2] == "0.00" and lines["layer2"][2] == "1.00"
    data = report.to_dict()
    json.dumps(data)
    assert data["stages"]["layer3"]["fraction"] == 0.0 and data["ok"] is False
    assert "layer3.0.conv1.weight" in data["missing"]


def test_torch_load_called_with_weights_only(tmp_path, resnet10_state, monkeypatch):
    path = tmp_path / "w.pt"
    torch.save(resnet10_state, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_pretrained(_fresh(), path)
    assert calls and all(c.get("weights_only") is True for c in calls)


class _Payload:  # an arbitrary pickled object: weights_only refuses it
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_arbitrary_object_refused(tmp_path, resnet10_state):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": resnet10_state, "hook": _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"(?s)weights_only=True\) refuses.*Unsupported global"):
        load_pretrained(_fresh(), path)


@pytest.mark.parametrize(
    "wrapper, prefix",
    [
        ("state_dict", "module."),
        ("model", ""),
        ("net", "model."),
        ("network", "backbone."),
        ("teacher", "encoder."),
        ("model_state_dict", "module.model."),
    ],
)
def test_wrappers_and_prefixes(wrapper, prefix, resnet10_state, all_loaded):
    ckpt = {wrapper: {prefix + k: v for k, v in resnet10_state.items()}, "epoch": 10, "args": {"lr": 0.1}}
    state, _, path = unwrap_state_dict(ckpt)
    assert path == [wrapper] and len(state) == len(resnet10_state)
    report = load_pretrained(_fresh(), ckpt)
    all_loaded(report)


def test_unwrap_prefers_teacher_over_student(resnet10_state):
    ckpt = {"student": {"x": torch.zeros(1)}, "teacher": {"y": torch.ones(1)}}
    state, _, path = unwrap_state_dict(ckpt)
    assert path == ["teacher"] and list(state) == ["y"]


PROVENANCE = Provenance(
    method="SimCLR",
    source_data="MNI152 demo volumes",
    modality="MR",
    input_size=(64, 64),
    spacing=(1.0, 1.0),
    intensity_normalisation="z-score per volume",
    licence="CC-BY-4.0",
    url="https://example.org/weights.pt",
    sha256="0" * 64,
    citation="Chen et al., 2020, arXiv:2002.05709",
    extra={"epochs": 100},
)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_provenance_round_trip(tmp_path, suffix, all_loaded):
    torch.manual_seed(5)
    net = create_backbone("resnet10", spatial_dims=2, in_channels=1)
    path = save_pretrained(net, tmp_path / "out" / f"resnet10{suffix}", PROVENANCE)
    assert path.is_file()
    report = load_pretrained(_fresh(), path)
    all_loaded(report)
    assert report.adapter == "monai"
    expected = PROVENANCE.update(backbone_name="resnet10", spatial_dims=2, in_channels=1)
    assert report.provenance == expected
    assert Provenance.from_dict(json.loads(json.dumps(expected.to_dict()))) == expected


def test_atomic_save_leaves_no_temp_files(tmp_path, monkeypatch):
    net = _fresh()
    target = tmp_path / "weights.pt"
    save_pretrained(net, target, PROVENANCE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]
    original = target.read_bytes()

    def broken_save(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(net, target, PROVENANCE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]
    assert target.read_bytes() == original  # the previous file is intact


def test_report_defaults_are_printable():
    report = LoadReport(stages={"a": (0, 0)})
    assert "total" in str(report) and report.ok and report.stage_fractions() == {"a": 1.0}


def test_lightning_hyper_parameters_need_explicit_allowlist(tmp_path, resnet10_state, all_loaded):
    import argparse

    path = tmp_path / "epoch=9.ckpt"
    torch.save({"state_dict": resnet10_state, "hyper_parameters": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"safe_globals"):
        load_pretrained(_fresh(), path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        all_loaded(load_pretrained(_fresh(), path))


def test_create_backbone_pretrained_path(tmp_path, all_loaded):
    torch.manual_seed(6)
    source = create_backbone("resnet10", spatial_dims=2, in_channels=3)
    path = save_pretrained(source, tmp_path / "r10.safetensors", Provenance(method="supervised"))
    net = create_backbone("resnet10", spatial_dims=3, in_channels=1, pretrained=str(path))
    all_loaded(net.load_report)
    assert net.load_report.adapted["conv1.weight"] == "inflated 2D->3D (mean, depth 7); in_channels 3->1 (sum)"
    assert net.load_report.provenance.spatial_dims == 2  # the provenance describes the weights, not the target


def test_unrecognised_layout_names_the_adapters():
    with pytest.raises(ValueError, match=r"(?s)Could not recognise.*source=one of.*timm-vit"):
        load_pretrained(_fresh(), {"totally.unknown.weight": torch.zeros(3)}, source="auto")
    with pytest.raises(KeyError, match="neither 'auto', an adapter"):
        load_pretrained(_fresh(), {"conv1.weight": torch.zeros(3)}, source="no-such-layout")
