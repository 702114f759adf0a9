"""Export helpers: TorchScript (script, trace) and ONNX (torch.export-based and legacy), verified against eager."""

from __future__ import annotations

import logging

import onnx
import pytest
import torch
from torch import nn

from monai_transfer.networks import export as export_module
from monai_transfer.networks.export import (
    ExportError,
    export_model,
    export_onnx,
    export_torchscript,
    has_onnxruntime,
    verify_onnx,
    verify_outputs,
)
from monai_transfer.networks.transfer_net import create_transfer_net


def _small_net(task="segmentation"):
    torch.manual_seed(0)
    return create_transfer_net("segresnet", task=task, spatial_dims=2, num_classes=2, head_kwargs={})


def _first_relu(*tensors):
    return tensors[0].relu()


class Unscriptable(nn.Module):
    """Scripting fails on the ``*args`` helper; tracing and ONNX export work."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return _first_relu(self.conv(x))


class ExportsDifferently(nn.Module):
    """Computes something else while being exported: verification must catch it."""

    def forward(self, x):
        if torch.compiler.is_exporting():
            return x + 1
        return x * 1


def test_torchscript_script_saved_and_reloaded(tmp_path):
    net = _small_net()
    x = torch.randn(1, 1, 32, 32)
    module = export_torchscript(net, x, path=tmp_path / "net.ts")
    assert (tmp_path / "net.ts").stat().st_size > 0
    assert isinstance(module, torch.jit.ScriptModule)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x))
        # a scripted network keeps its control flow: another batch size and input size still work
        x2 = torch.randn(3, 1, 48, 48)
        torch.testing.assert_close(module(x2), net(x2))


def test_torchscript_trace_and_auto_fallback(caplog):
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ExportError, match="script failed"):
        export_torchscript(Unscriptable(), x, method="script")
    traced = export_torchscript(Unscriptable(), x, method="trace")
    assert isinstance(traced, torch.jit.ScriptModule)
    with caplog.at_level(logging.WARNING, logger="monai_transfer.networks.export"):
        export_torchscript(Unscriptable(), x, method="auto")
    assert "tracing instead" in caplog.text
    with pytest.raises(ValueError, match="method"):
        export_torchscript(Unscriptable(), x, method="compile")


def test_verify_outputs_detects_differences():
    a = torch.randn(2, 3)
    assert verify_outputs(a, a.clone()) == 0.0
    with pytest.raises(ExportError, match="differs"):
        verify_outputs(a, a + 1e-2)
    with pytest.raises(ExportError, match="shape"):
        verify_outputs(a, a[:1])


@pytest.mark.slow
@pytest.mark.skipif(not has_onnxruntime(), reason="onnxruntime is needed to compare ONNX outputs")
def test_onnx_dynamo_export_with_dynamic_batch(tmp_path):
    net = _small_net("classification")
    x = torch.randn(1, 1, 32, 32)  # batch 1: the exporter traces two samples so the batch axis stays free
    path = export_onnx(net, x, tmp_path / "sub" / "net.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    assert verify_onnx(path, net, torch.randn(4, 1, 32, 32)) < 1e-4


@pytest.mark.skipif(not has_onnxruntime(), reason="onnxruntime is needed to compare ONNX outputs")
def test_onnx_legacy_exporter(tmp_path):
    net = _small_net()
    path = export_onnx(net, torch.randn(2, 1, 32, 32), tmp_path / "net.onnx", dynamo=False)
    assert path.exists()


def test_onnx_verification_catches_wrong_export(tmp_path):
    if not has_onnxruntime():
        pytest.skip("onnxruntime is needed to compare ONNX outputs")
    with pytest.raises(ExportError, match="differs"):
        export_onnx(ExportsDifferently(), torch.randn(2, 3), tmp_path / "bad.onnx")


def test_onnx_without_onnxruntime_checks_structure_only(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(export_module, "_has_ort", False)
    with caplog.at_level(logging.WARNING, logger="monai_transfer.networks.export"):
        result = export_model(Unscriptable(), torch.randn(2, 1, 8, 8), tmp_path / "m", format="onnx")
    assert result.verified_with == "onnx.checker" and result.max_abs_diff is None
    assert "not compared" in caplog.text
    with pytest.raises(ExportError, match="onnxruntime"):
        verify_onnx(result.path, Unscriptable(), torch.randn(2, 1, 8, 8))


def test_export_model_picks_the_format(tmp_path):
    x = torch.randn(2, 1, 32, 32)
    result = export_model(_small_net(), x, tmp_path / "seg.pt")
    assert (result.format, result.method, result.path.suffix) == ("torchscript", "script", ".ts")
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    result = export_model(Unscriptable(), torch.randn(2, 1, 8, 8), tmp_path / "toy")
    assert (result.format, result.method, result.path.suffix) == ("onnx", "dynamo", ".onnx")
    assert result.verified_with == ("onnxruntime" if has_onnxruntime() else "onnx.checker")
    with pytest.raises(ExportError):
        export_model(Unscriptable(), torch.randn(2, 1, 8, 8), tmp_path / "toy", format="torchscript")
    with pytest.raises(ValueError, match="format"):
        export_model(Unscriptable(), x, tmp_path / "toy", format="tflite")
