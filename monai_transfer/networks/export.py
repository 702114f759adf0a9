"""Export a network to TorchScript or ONNX, and check that the exported model computes what the eager one does.

TorchScript (``torch.jit.script``) keeps the network's control flow and is what ``monai.bundle.ckpt_export`` writes
into a bundle's ``models/model.ts``; ONNX (``torch.onnx.export``, the ``torch.export``-based exporter by default) serves
runtimes outside PyTorch and the networks that do not script (MONAI's ``SwinTransformer``). Every export is verified:
the exported model's output on the example (and, with a dynamic batch, on a batch of another size) must match eager
within tolerance, and an ONNX file must also pass ``onnx.checker`` (with ``full_check``). ONNX outputs are compared
with onnxruntime when it is installed; without it only the checker runs and the result says so.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.utils import optional_import
from torch import nn

_has_ort: bool | None = None  # looked up on first use: importing onnxruntime is slow

__all__ = [
    "ExportError",
    "ExportResult",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "has_onnxruntime",
    "verify_onnx",
    "verify_outputs",
]

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An export failed or its outputs differ from the eager network's."""


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` produced.

    Attributes:
        format: ``"torchscript"`` or ``"onnx"``.
        method: ``"script"``, ``"trace"``, ``"dynamo"`` (``torch.export``-based ONNX) or ``"torchscript-onnx"``.
        path: the written file.
        max_abs_diff: largest absolute difference from eager over the verification inputs; ``None`` when the ONNX
            model could only be checked structurally (no onnxruntime).
        verified_with: ``"torchscript"``, ``"onnxruntime"`` or ``"onnx.checker"``.
    """

    format: str
    method: str
    path: Path
    max_abs_diff: float | None
    verified_with: str


def has_onnxruntime() -> bool:
    """Whether ONNX exports can be verified output for output (onnxruntime is installed)."""
    global _has_ort
    if _has_ort is None:
        _has_ort = bool(optional_import("onnxruntime")[1])
    return _has_ort


def _verification_inputs(example: torch.Tensor, vary_batch: bool) -> list[torch.Tensor]:
    inputs = [example]
    if vary_batch:
        # another batch size, with different content, proves the batch axis is not baked in
        g = torch.Generator().manual_seed(0)
        shape = (example.shape[0] + 1,) + tuple(example.shape[1:])
        inputs.append(torch.randn(shape, generator=g, dtype=example.dtype).to(example.device))
    return inputs


def verify_outputs(expected: torch.Tensor, actual: torch.Tensor, rtol: float = 1e-3, atol: float = 1e-4) -> float:
    """Max absolute difference; raise ``ExportError`` when ``|actual - expected| > atol + rtol * |expected|``."""
    actual, expected = torch.as_tensor(actual).detach().cpu(), expected.detach().cpu()
    if tuple(actual.shape) != tuple(expected.shape):
        raise ExportError(f"exported output shape {tuple(actual.shape)} differs from eager {tuple(expected.shape)}.")
    diff = (actual.float() - expected.float()).abs()
    max_diff = float(diff.max()) if diff.numel() else 0.0
    if bool((diff > atol + rtol * expected.float().abs()).any()):
        raise ExportError(
            f"exported output differs from eager: max abs difference {max_diff:.3g} (atol {atol}, rtol {rtol})."
        )
    return max_diff


def export_torchscript(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike | None = None,
    method: str = "script",
    verify: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> torch.jit.ScriptModule:
    """Compile ``model`` (in eval mode) to TorchScript, optionally save it, and verify it against eager.

    Args:
        model: the network; it is put in eval mode.
        example: an input batch, used to verify (and, for ``method="trace"``, to trace).
        path: where to ``torch.jit.save`` the module; the saved file is reloaded and it is what gets verified.
        method: ``"script"`` (``torch.jit.script``, keeps control flow; preferred), ``"trace"`` (``torch.jit.trace``,
            records the ops run on ``example``: shape checks and branches are frozen) or ``"auto"`` (script, and
            trace with a logged warning when scripting fails).
        verify: compare outputs with eager on ``example`` (and, for a traced module, on a batch of another size:
            a trace can bake in shapes, a script cannot).
        rtol, atol: tolerances of the comparison.

    Returns:
        The TorchScript module (reloaded from ``path`` when given).

    Raises:
        ExportError: scripting/tracing failed, or the outputs differ.

    Note:
        A failed ``torch.jit.script`` can leave TorchScript's per-process class cache inconsistent, so that scripting
        networks sharing those classes fails later in the same process ("Can't redefine method"); export each
        unscriptable network in its own process when that matters (``scripts/make_export_table.py`` does).
    """
    module, used = _torchscript(model, example, method)
    if path is not None:
        torch.jit.save(module, str(path))
        module = torch.jit.load(str(path))
    if verify:
        _verify_torchscript(model, module, example, rtol, atol, vary_batch=used == "trace")
    return module


def _torchscript(model: nn.Module, example: torch.Tensor, method: str) -> tuple[torch.jit.ScriptModule, str]:
    if method not in ("script", "trace", "auto"):
        raise ValueError(f"method must be 'script', 'trace' or 'auto', got {method!r}.")
    model.eval()
    if method in ("script", "auto"):
        try:
            return torch.jit.script(model), "script"
        except Exception as err:  # TorchScript raises several exception types while compiling
            if method == "script":
                raise ExportError(f"torch.jit.script failed for {type(model).__name__}: {err}") from err
            logger.warning("torch.jit.script failed for %s; tracing instead (%s)", type(model).__name__, err)
    try:
        with torch.no_grad():
            return torch.jit.trace(model, example, check_trace=False), "trace"
    except Exception as err:
        raise ExportError(f"torch.jit.trace failed for {type(model).__name__}: {err}") from err


def _verify_torchscript(
    model: nn.Module, module: torch.jit.ScriptModule, example: torch.Tensor, rtol: float, atol: float, vary_batch: bool
) -> float:
    model.eval()
    module.eval()
    max_diff = 0.0
    with torch.no_grad():
        for x in _verification_inputs(example, vary_batch):
            max_diff = max(max_diff, verify_outputs(model(x), module(x), rtol=rtol, atol=atol))
    return max_diff


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    dynamic_batch: bool = True,
    dynamo: bool = True,
    opset_version: int | None = None,
    verify: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> Path:
    """Export ``model`` (in eval mode) to an ONNX file and check it.

    Args:
        model: the network; it is put in eval mode.
        example: an input batch fixing the spatial shape (ONNX graphs of MONAI networks are shape-specialised,
            as a sliding-window inferer's ``roi_size`` is).
        path: the ``.onnx`` file to write (one file; weights over 2 GB go to ``<path>.data``).
        dynamic_batch: keep the batch axis free (input ``image`` and output ``logits``).
        dynamo: use the ``torch.export``-based exporter (PyTorch's default, needs ``onnxscript``); ``False`` uses the
            deprecated TorchScript-based exporter, which fails on some networks (e.g. 3D Swin with instance norm and a
            dynamic batch).
        opset_version: ONNX opset; ``None`` lets PyTorch choose.
        verify: run ``onnx.checker`` (full check) and, when onnxruntime is installed, compare outputs with eager on
            ``example`` and, with ``dynamic_batch``, on a batch of another size.
        rtol, atol: tolerances of the comparison.

    Returns:
        The path written.

    Raises:
        ExportError: the export failed, the checker rejected the model, or the outputs differ.
    """
    _export_onnx(model, example, path, dynamic_batch, dynamo, opset_version, verify, rtol, atol)
    return Path(path)


def _export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    dynamic_batch: bool = True,
    dynamo: bool = True,
    opset_version: int | None = None,
    verify: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> float | None:
    """``export_onnx``, returning the max absolute difference from eager (``None`` when not compared)."""
    onnx, has_onnx = optional_import("onnx")
    if not has_onnx:
        raise ExportError("ONNX export needs the onnx package (pip install onnx onnxscript).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000
    kwargs: dict = {"input_names": ["image"], "output_names": ["logits"], "opset_version": opset_version}
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            if dynamo:
                batch = torch.export.Dim("batch")
                # torch.export specialises a size-1 axis, so a dynamic batch is traced with two samples
                traced = torch.cat([example, example]) if dynamic_batch and example.shape[0] == 1 else example
                torch.onnx.export(
                    model,
                    (traced,),
                    str(path),
                    dynamo=True,
                    external_data=external,
                    dynamic_shapes=({0: batch},) if dynamic_batch else None,
                    verbose=False,
                    **kwargs,
                )
            else:
                axes = {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
                torch.onnx.export(model, (example,), str(path), dynamo=False, dynamic_axes=axes, **kwargs)
    except Exception as err:
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {err}") from err
    if verify:
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as err:
            raise ExportError(f"onnx.checker rejected {path}: {err}") from err
        if has_onnxruntime():
            return verify_onnx(path, model, example, vary_batch=dynamic_batch, rtol=rtol, atol=atol)
        else:
            logger.warning(
                "onnxruntime is not installed: %s passed onnx.checker but its outputs were not compared", path
            )
    return None


def verify_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    example: torch.Tensor,
    vary_batch: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> float:
    """Run an ONNX file with onnxruntime (CPU) and compare with eager; return the max absolute difference."""
    if not has_onnxruntime():
        raise ExportError("verify_onnx needs onnxruntime (pip install onnxruntime).")
    ort = optional_import("onnxruntime")[0]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    model.eval()
    max_diff = 0.0
    with torch.no_grad():
        for x in _verification_inputs(example, vary_batch):
            out = session.run(None, {name: x.detach().cpu().numpy()})[0]
            max_diff = max(max_diff, verify_outputs(model(x), torch.from_numpy(out), rtol=rtol, atol=atol))
    return max_diff


def export_model(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    format: str = "auto",
    rtol: float = 1e-3,
    atol: float = 1e-4,
    **onnx_kwargs,
) -> ExportResult:
    """Export and verify: TorchScript by ``torch.jit.script`` when the network scripts, ONNX otherwise.

    Args:
        model: the network.
        example: an input batch.
        path: output file; its suffix is replaced by ``.ts`` or ``.onnx`` to match the format chosen.
        format: ``"auto"``, ``"torchscript"`` (script only, never trace) or ``"onnx"``.
        rtol, atol: tolerances of the comparison with eager.
        onnx_kwargs: passed to ``export_onnx`` (``dynamic_batch``, ``dynamo``, ``opset_version``).
    """
    if format not in ("auto", "torchscript", "onnx"):
        raise ValueError(f"format must be 'auto', 'torchscript' or 'onnx', got {format!r}.")
    path = Path(path)
    if format in ("auto", "torchscript"):
        try:
            module, method = _torchscript(model, example, "script")
        except ExportError:
            if format == "torchscript":
                raise
            logger.info("%s does not script; exporting ONNX", type(model).__name__)
        else:
            ts_path = path.with_suffix(".ts")
            ts_path.parent.mkdir(parents=True, exist_ok=True)
            torch.jit.save(module, str(ts_path))
            diff = _verify_torchscript(model, torch.jit.load(str(ts_path)), example, rtol, atol, vary_batch=False)
            return ExportResult("torchscript", method, ts_path, diff, "torchscript")
    onnx_path = path.with_suffix(".onnx")
    diff = _export_onnx(model, example, onnx_path, rtol=rtol, atol=atol, **onnx_kwargs)
    method = "dynamo" if onnx_kwargs.get("dynamo", True) else "torchscript-onnx"
    return ExportResult("onnx", method, onnx_path, diff, "onnxruntime" if diff is not None else "onnx.checker")
