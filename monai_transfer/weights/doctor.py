"""The weight doctor: find how a checkpoint no adapter claims maps into a backbone, say what it found, and write the
converted weights that ``--pretrained`` then loads strictly.

>>> from monai_transfer.networks import create_backbone
>>> from monai_transfer.weights.doctor import convert, diagnose
>>> net = create_backbone("resnet50", spatial_dims=2, in_channels=3)
>>> report = diagnose("mocov2_800ep.pth.tar", net)  # {"state_dict": {"module.encoder_q.conv1.weight", ...}}
>>> print(report)                                     # the reading, coverage per stage, what stays unmatched
>>> convert("mocov2_800ep.pth.tar", net, "mocov2_resnet50.pt")  # refuses (DoctorError) unless all fits

The steps, each in the report:

1. **Container.** The tensors are found under the wrapper keys of ``weights.checkpoint.WRAPPER_KEYS``
   (``state_dict``, ``model``, ``module``, ``teacher`` ...) and ``encoder``/``backbone``; what sits beside them
   (optimizer states, epochs) is named.
2. **Names** (``doctor_match.read_names``): every prefix (``module.``, ``model.``, ``backbone.``, ``swin_vit.``...)
   with every known rename (``weights.renames``: the registered adapters, lightly's ``nn.Sequential`` children, MMPretrain's
   ``ResNetV1d`` shortcuts); equal readings are an ambiguity unless all but one read a momentum/EMA/student copy.
3. **Unique shapes** (``doctor_match.match_shapes``) for what names leave, once names settle at least half of the
   backbone: one-to-one only.
4. **Surgery** where the shapes call for it and it is certain: input-channel surgery on the stem, position-embedding
   resampling, and 2D -> 3D inflation **only when asked** (``inflate="mean"`` or ``"centre"``).

Nothing is guessed: an ambiguous pairing is reported and not taken, and ``convert`` writes only a complete mapping
(``save_pretrained``: atomic, with provenance recording what the doctor did).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_transfer.weights.adapters import DEFAULTED_PATTERNS, get_adapter, list_adapters, matches_any
from monai_transfer.weights.checkpoint import WRAPPER_KEYS, read_checkpoint, save_pretrained, sha256_file
from monai_transfer.weights.doctor_match import read_names
from monai_transfer.weights.doctor_report import DoctorError, DoctorReport
from monai_transfer.weights.doctor_steps import DoctorWork
from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.renames import readers
from monai_transfer.weights.starting_point import find_bundle_weights
from monai_transfer.weights.surgery import INFLATE_MODES, first_conv_key

__all__ = [
    "CONTAINER_KEYS",
    "CheckpointFile",
    "DoctorError",
    "DoctorReport",
    "convert",
    "diagnose",
    "kernel_dims",
    "read_for_doctor",
    "save_converted",
    "unwrap_container",
]

# where training code nests the tensors: the loader's wrapper keys, and the encoder/backbone dicts some SSL code saves
CONTAINER_KEYS: tuple[str, ...] = WRAPPER_KEYS + ("encoder", "backbone")


def _has_tensors(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(torch.is_tensor(v) for v in obj.values())


def unwrap_container(obj: Any) -> tuple[dict[str, torch.Tensor], list[str], list[str], dict | None]:
    """The tensors of a checkpoint object, the wrapper keys descended, what sat beside them, and any provenance.

    Raises:
        DoctorError: no tensors anywhere the doctor looks.
    """
    if not isinstance(obj, Mapping):
        raise DoctorError(f"A checkpoint must be a mapping of names to tensors, got {type(obj).__name__}.")
    provenance = obj.get("provenance") if isinstance(obj.get("provenance"), Mapping) else None
    path: list[str] = []
    current: Mapping = obj
    while True:
        inner_key = next((k for k in CONTAINER_KEYS if isinstance(current.get(k), Mapping)), None)
        tensors = {str(k): v for k, v in current.items() if torch.is_tensor(v)}
        # descend unless this level already is the state dict (tensors and no wrapper holding more of them)
        if inner_key is None or (tensors and not _holds_tensors(current[inner_key])):
            break
        path.append(inner_key)
        current = current[inner_key]
        if provenance is None and isinstance(current.get("provenance"), Mapping):
            provenance = current["provenance"]
    if not tensors:
        raise DoctorError(
            f"No tensors found in the checkpoint (top-level keys: {list(obj)[:8]}; wrappers tried: "
            f"{', '.join(CONTAINER_KEYS)})."
        )
    siblings = [str(k) for k, v in current.items() if not torch.is_tensor(v)]
    if path:
        siblings = [str(k) for k in obj if k != path[0]] + siblings
    return tensors, path, siblings, dict(provenance) if provenance is not None else None


def _holds_tensors(obj: Any, depth: int = 3) -> bool:
    if _has_tensors(obj):
        return True
    return depth > 0 and isinstance(obj, Mapping) and any(_holds_tensors(v, depth - 1) for v in obj.values())


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint read once (``read_for_doctor``): the object, where it came from, and the file's SHA-256."""

    obj: Any
    description: str
    sha256: str = ""


Checkpoint = str | os.PathLike | Mapping[str, Any] | CheckpointFile


def read_for_doctor(checkpoint: Checkpoint) -> CheckpointFile:
    """Read a file (``torch.load(weights_only=True)`` or safetensors; a bundle folder's weights file) once."""
    if isinstance(checkpoint, CheckpointFile):
        return checkpoint
    if isinstance(checkpoint, Mapping):
        return CheckpointFile(checkpoint, "<state dict>")
    path = Path(checkpoint)
    if path.is_dir():
        path = find_bundle_weights(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    return CheckpointFile(read_checkpoint(path), str(path), sha256_file(path))


def kernel_dims(source: Mapping[str, torch.Tensor]) -> int | None:
    """The spatial dimensionality of a checkpoint's convolution kernels (the most common), or None without any."""
    counts: dict[int, int] = {}
    for key, value in source.items():
        if key.endswith("weight") and value.dim() in (4, 5) and torch.is_floating_point(value):
            counts[value.dim() - 2] = counts.get(value.dim() - 2, 0) + 1
    return max(counts, key=lambda d: (counts[d], d)) if counts else None


def _defaulted_patterns() -> tuple[str, ...]:
    extra = tuple(p for name in list_adapters() for p in get_adapter(name).defaulted)
    return DEFAULTED_PATTERNS + extra


def diagnose(
    checkpoint: Checkpoint,
    module: nn.Module,
    inflate: str | None = None,
    prefix: str | None = None,
    depth_axis: int = -1,
) -> DoctorReport:
    """Find how ``checkpoint`` maps into ``module`` and report it (nothing is loaded or written).

    Args:
        checkpoint: a file (``torch.load(weights_only=True)`` or safetensors), a bundle folder, a (wrapped) state
            dict, or a ``CheckpointFile`` already read.
        module: the target backbone (``create_backbone(...)``; its ``backbone_name``, ``spatial_dims`` and
            ``param_stages()`` are used where present).
        inflate: ``"mean"`` or ``"centre"`` to inflate 2D kernels into a 3D backbone (``surgery.inflate_weight``);
            ``None``: never (such kernels are reported).
        prefix: read names only under this checkpoint prefix (to settle equal readings the report named).
        depth_axis: the axis inflation adds (default last: MONAI's ``(H, W, D)``).

    Returns:
        The ``DoctorReport``; ``report.ok`` when every backbone tensor has exactly one source, ``report.reason``
        otherwise, ``report.state_dict`` the converted tensors.
    """
    if inflate is not None and inflate not in INFLATE_MODES:
        raise ValueError(f"inflate must be one of {INFLATE_MODES} or None, got {inflate!r}.")
    read = read_for_doctor(checkpoint)
    source, container, siblings, record = unwrap_container(read.obj)
    if prefix is not None and not any(k.startswith(prefix) for k in source):
        tops = sorted({k.split(".", 1)[0] + "." for k in source})
        raise DoctorError(f"No checkpoint key starts with the prefix {prefix!r}; its keys start with {tops[:8]}.")
    target = module.state_dict()
    spatial_dims = getattr(module, "spatial_dims", None)
    stem = first_conv_key(target, spatial_dims)
    defaulted_patterns = _defaulted_patterns()
    needed = {k for k in target if not matches_any(k, defaulted_patterns)}

    report = DoctorReport(
        checkpoint=read.description,
        checkpoint_sha256=read.sha256,
        backbone_name=str(getattr(module, "backbone_name", "") or type(module).__name__),
        spatial_dims=spatial_dims,
        in_channels=getattr(module, "in_channels", None),
        container=container,
        siblings=siblings,
        source_count=len(source),
        inflate=inflate,
        provenance=Provenance.from_dict(record) if record else None,
    )
    work = DoctorWork(report, module, source, target, needed, stem, inflate, depth_axis)
    choice = read_names(source, target, needed, readers(), stem, depth_axis, prefix)
    report.tied_readings = [r.label for r in choice.tied]
    report.skipped_copies = [r.label for r in choice.skipped_copies]
    if choice.chosen is not None:
        work.take_reading(choice.chosen)
        # shapes only complete what names found: in a checkpoint whose names settle little of the backbone (another
        # architecture) tensors would pair by coincidence (a DenseNet's 7x7 stem fits a ResNet's)
        settled = sum(k in needed for k in work.taken) + len(report.needs_inflation)
        if 2 * settled >= len(needed):
            work.take_shapes(choice.chosen)
        else:
            report.notes.append(
                f"unique shapes not tried: names settle {settled} of {len(needed)} tensors (shapes complete at most half)"
            )
    work.fit()
    report = work.finish()
    if report.filled == 0:  # say what the checkpoint looks like instead: the family adapter that recognises it
        report.layout = _family_layout(source, target)
    return report


def _family_layout(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> str:
    scores = [(float(a.detect(source, target)), a) for a in map(get_adapter, list_adapters()) if a.family != "any"]
    score, adapter = max(scores, key=lambda s: s[0], default=(0.0, None))
    return f"a {adapter.family} checkpoint ({adapter.name} layout)" if adapter is not None and score > 0 else ""


def convert(
    checkpoint: Checkpoint,
    module: nn.Module,
    out: str | os.PathLike,
    inflate: str | None = None,
    prefix: str | None = None,
    provenance: Provenance | None = None,
    depth_axis: int = -1,
) -> DoctorReport:
    """``diagnose``, then ``save_converted`` when every backbone tensor is settled.

    Raises:
        DoctorError: the mapping is incomplete or ambiguous (nothing is written), or ``out`` is the checkpoint itself;
            the message is one sentence (``report.reason``).
    """
    if isinstance(checkpoint, (str, os.PathLike)) and Path(out).exists() and Path(checkpoint).is_file():
        if os.path.samefile(checkpoint, out):
            raise DoctorError(
                f"{out} is the checkpoint being converted: refusing to overwrite it; choose another file."
            )
    report = diagnose(checkpoint, module, inflate=inflate, prefix=prefix, depth_axis=depth_axis)
    save_converted(report, module, out, provenance)
    return report


def save_converted(
    report: DoctorReport, module: nn.Module, out: str | os.PathLike, provenance: Provenance | None = None
) -> Path:
    """Write a complete diagnosis's tensors to ``out`` for ``--pretrained``.

    The file is ``save_pretrained``'s (``{"state_dict", "provenance"}``, or safetensors with the provenance in its
    metadata), written atomically (a temporary file beside ``out``, then renamed). The provenance is ``provenance``,
    else the checkpoint's own record, plus what the doctor did (``extra["weights_doctor"]``) and the SHA-256 of the
    original file.

    Raises:
        DoctorError: ``report`` is not complete (``report.reason``); nothing is written.
    """
    if not report.ok:
        raise DoctorError(report.reason)
    record = provenance or report.provenance or Provenance()
    doctor = {
        "checkpoint": report.checkpoint,
        "container": report.container,
        "prefix": report.prefix,
        "reader": report.reader,
        "steps": report.step_counts(),
        "by_shape": {k: m.source for k, m in report.matches.items() if m.step == "shapes"},
        "surgery": {k: m.surgery for k, m in report.matches.items() if m.surgery},
        "skipped_copies": report.skipped_copies,
    }
    changes: dict[str, Any] = {"extra": {**record.extra, "weights_doctor": doctor}}
    if report.checkpoint_sha256 and not record.sha256:
        changes["sha256"] = report.checkpoint_sha256
    record = record.update(**changes).fill_from_module(module)
    ordered = {k: report.state_dict[k] for k in module.state_dict()}
    return save_pretrained(ordered, out, provenance=record)
