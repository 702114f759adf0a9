"""``load_pretrained``: put published or saved weights into a backbone, loudly.

The steps, each visible in the returned ``LoadReport``:

1. **Read** the checkpoint: a known source name (downloaded once into a cache and hash-checked), a URL, a file
   (``torch.load(weights_only=True)`` or safetensors), a MONAI bundle folder, or an in-memory (wrapped) state dict.
2. **Adapt** the key layout with an adapter (``source=`` names one; ``"auto"`` detects it from the keys).
3. **Operate** where shapes call for it: 2D -> 3D inflation, position-embedding resampling, input-channel
   adaptation (``monai_transfer.weights.surgery``).
4. **Check** every module key: loaded, missing, shape-mismatched, or defaulted (needs no value); every checkpoint
   key: loaded, dropped on purpose by the adapter, or unexpected.
5. **Load** (strict: only when everything fits, otherwise raise without touching the module; non-strict: load
   what fits and log the report as a warning).
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_transfer.utils.stages import stage_of_key
from monai_transfer.weights.adapters import (
    DEFAULTED_PATTERNS,
    Adapter,
    convert_state_dict,
    detect_adapter,
    get_adapter,
    list_adapters,
    matches_any,
)
from monai_transfer.weights.checkpoint import (
    check_sha256,
    download_checkpoint,
    read_checkpoint,
    sha256_file,
    unwrap_state_dict,
)
from monai_transfer.weights.fetch import allowed_globals, fetch_weights
from monai_transfer.weights.hub import is_hf_url
from monai_transfer.weights.provenance import Provenance
from monai_transfer.weights.report import LoadReport, PretrainedLoadError
from monai_transfer.weights.sources import get_source, is_source_name, resolve_source
from monai_transfer.weights.starting_point import find_bundle_weights
from monai_transfer.weights.surgery import INFLATE_MODES, fit_state_dict
from monai_transfer.weights.zoo import is_zoo_name, zoo_version

__all__ = ["load_pretrained", "load_checkpoint", "resolve_adapter", "module_stages"]

logger = logging.getLogger(__name__)

_URL_SCHEMES = ("http", "https", "file")


def module_stages(module: nn.Module, keys: list[str]) -> dict[str, str]:
    """Key -> stage name, via ``module.param_stages()`` when the module has it, else the key's first component."""
    stages_fn = getattr(module, "param_stages", None)
    if callable(stages_fn):
        stages = stages_fn()
        return {k: stage_of_key(k, stages) for k in keys}
    return {k: k.split(".", 1)[0] for k in keys}


def _stage_order(module: nn.Module, assignment: dict[str, str]) -> list[str]:
    stages_fn = getattr(module, "param_stages", None)
    order = list(stages_fn()) if callable(stages_fn) else []
    for stage in assignment.values():
        if stage not in order:
            order.append(stage)
    return [s for s in order if s in set(assignment.values())]


def resolve_adapter(
    source: str | None,
    state_dict: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    default: str | None = None,
    backbone_name: str | None = None,
) -> Adapter:
    """The adapter named by ``source`` (an adapter name or a source name), ``default``, or detected (``"auto"``)."""
    if source is None and default is not None:
        return get_adapter(default)
    if source is None or source == "auto":
        return detect_adapter(state_dict, target)
    if source in list_adapters():
        return get_adapter(source)
    if is_source_name(source):
        known = get_source(source)
        if backbone_name and backbone_name in known.files:
            return get_adapter(known.adapter_for(backbone_name))
        return get_adapter(known.adapter)
    raise KeyError(f"source={source!r} is neither 'auto', an adapter ({list_adapters()}) nor a known weight source.")


def load_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any], sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], Provenance | None, str, str]:
    """Read a checkpoint from a file, a bundle folder or an in-memory (wrapped) state dict.

    Args:
        checkpoint: a file path, a bundle or run folder (its weights file: :func:`find_bundle_weights`), or a
            (wrapped) state dict.
        sha256: when given, the file's SHA-256 (or 8+ hex prefix) is checked before reading.

    Returns:
        ``(state_dict, provenance_or_None, description, file_sha256)``.
    """
    file_hash = ""
    if isinstance(checkpoint, Mapping):
        obj: Any = checkpoint
        description = "<state dict>"
    else:
        path = Path(checkpoint)
        if path.is_dir():
            path = find_bundle_weights(path)
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint {path} does not exist (and is not a known source name).")
        file_hash = sha256_file(path)
        check_sha256(file_hash, sha256, what=str(path))
        obj = read_checkpoint(path)
        description = str(path)
    state_dict, provenance, _ = unwrap_state_dict(obj)
    record = Provenance.from_dict(provenance) if provenance is not None else None
    return state_dict, record, description, file_hash


def load_pretrained(
    module: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, Any],
    source: str | None = None,
    strict: bool = True,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    inflate_mode: str = "mean",
    depth_axis: int = -1,
    progress: bool = False,
) -> LoadReport:
    """Load pretrained weights into ``module`` and report what happened.

    Args:
        module: the target, usually a backbone from ``monai_transfer.networks.create_backbone`` (its
            ``backbone_name`` selects the file of a named source; its ``param_stages()`` groups the report).
        checkpoint: a known source name (``monai_transfer.weights.list_sources``; a model-zoo source pinned to a
            version: ``"monai-zoo:NAME@VERSION"``), any model-zoo bundle (``"monai-zoo:NAME[@VERSION]"``), a Hugging
            Face file (``"hf://OWNER/REPO[@REVISION]/FILE"``), an ``http(s)://``/``file://`` URL, a ``.pt``/``.pth``/``.ckpt``/``.safetensors`` file, a bundle or run folder the package writes
            (``monai_transfer.weights.starting_point.resolve_pretrained``: a fine-tuned network loads its
            ``backbone.`` part, its head is dropped and reported), or a state dict
            (possibly wrapped: ``{"state_dict": ...}``, ``{"model": ...}``, ``{"teacher": ...}``...).
        source: the checkpoint layout: ``None`` (the named source's adapter, else detection), ``"auto"``
            (detect from the keys), an adapter name (``monai_transfer.weights.adapters.list_adapters()``), or a
            source name.
        strict: raise ``PretrainedLoadError`` (leaving the module untouched) when any module key is missing or
            shape-mismatched, or any checkpoint key is unexpected. Keys the adapter drops on purpose (heads) are
            never errors. With ``strict=False`` the fitting keys load and the report is logged as a warning.
        cache_dir: download folder for source names and URLs; default ``torch.hub.get_dir()/monai_transfer``.
        sha256: expected SHA-256 (full or 8+ hex prefix) of a file or URL checkpoint.
        inflate_mode: 2D -> 3D kernel inflation, ``"mean"`` (I3D) or ``"centre"`` (see ``surgery.inflate_weight``).
        depth_axis: the spatial axis that 2D -> 3D inflation adds (default last: MONAI's ``(H, W, D)``).
        progress: log download progress.

    Returns:
        The ``LoadReport`` (also printable as a table).

    Raises:
        PretrainedLoadError: strict load of a checkpoint that does not fit.
        UnsafeCheckpointError: the file holds pickled objects (e.g. a whole model) that ``weights_only`` refuses.
        HashMismatchError: a downloaded or given file has the wrong SHA-256.
        DownloadError: a source name or URL could not be downloaded (offline); the message says where to put a copy.
        CheckpointReadError: the file is not a readable checkpoint (empty, truncated, random bytes, another format).
    """
    if inflate_mode not in INFLATE_MODES:
        raise ValueError(f"inflate_mode must be one of {INFLATE_MODES}, got {inflate_mode!r}.")
    backbone_name = getattr(module, "backbone_name", None)
    where = _locate(checkpoint, module, source, sha256, cache_dir, progress)
    with allowed_globals(where.safe_globals):  # only the harmless classes a named source's file is known to pickle
        state_dict, file_provenance, read_description, file_hash = load_checkpoint(
            where.checkpoint, sha256=where.expected_hash
        )
    provenance = file_provenance or where.folder_provenance or where.known_provenance
    if provenance is not None and file_hash and not provenance.sha256:
        provenance = provenance.update(sha256=file_hash)

    default_adapter = where.default_adapter
    if file_provenance is not None and default_adapter is None:
        default_adapter = "monai"  # a file written by save_pretrained holds MONAI's own keys
    target = module.state_dict()
    adapter = resolve_adapter(source, state_dict, target, default=default_adapter, backbone_name=backbone_name)
    converted, dropped = convert_state_dict(adapter, state_dict, target)
    fitted, adapted = fit_state_dict(converted, module, target, inflate_mode=inflate_mode, axis=depth_axis)
    report = _report(module, target, fitted, adapter, strict, dropped=dropped,
                     adapted={k: v for k, v in adapted.items() if k in target},
                     checkpoint=where.description or read_description, checkpoint_sha256=file_hash,
                     backbone_name=str(backbone_name or ""), provenance=provenance)  # fmt: skip
    if strict and not report.ok:
        raise PretrainedLoadError(report)

    with torch.no_grad():
        result = module.load_state_dict({k: fitted[k] for k in report.loaded}, strict=False)
    if result.unexpected_keys:  # cannot happen: loaded keys are module keys; kept as a guard against drift
        raise RuntimeError(f"Internal error: load_state_dict saw unexpected keys {result.unexpected_keys}.")

    if report.ok:
        logger.info("Loaded pretrained weights:\n%s", report.to_table())
    else:
        logger.warning("Non-strict pretrained load: not everything fitted.\n%s", report.to_table())
    return report


@dataclass
class _Located:
    """Where a checkpoint argument's weights are and what is known of them before they are read."""

    checkpoint: Any
    expected_hash: str | None = None
    description: str | None = None
    known_provenance: Provenance | None = None
    folder_provenance: Provenance | None = None
    default_adapter: str | None = None
    safe_globals: tuple[str, ...] = ()


def _locate(checkpoint: Any, module: nn.Module, source: str | None, sha256: str | None,
            cache_dir: str | os.PathLike | None, progress: bool) -> _Located:  # fmt: skip
    """A folder the package writes, a source name, a model-zoo or Hub name or a URL, as the file to read (fetched
    and hash-checked where it is downloaded), with its provenance and the adapter its publisher's layout needs."""
    backbone_name = getattr(module, "backbone_name", None)
    out = _Located(checkpoint, expected_hash=sha256)
    if isinstance(checkpoint, (str, os.PathLike)) and not is_source_name(checkpoint) and os.path.isdir(checkpoint):
        # any folder the package writes (bundle, run folder): its weights file and their provenance, or its source
        from monai_transfer.weights.starting_point import resolve_pretrained

        start = resolve_pretrained(checkpoint, backbone_name)
        if start.kind == "source":
            checkpoint = out.checkpoint = str(start.source)
        else:
            out.checkpoint = str(start.weights)
            out.description = f"{start.origin}: {out.checkpoint}"
            out.folder_provenance = Provenance.from_dict(start.provenance) if start.provenance else None
            if start.source is not None and source is None:  # a shipped bundle's downloaded file: its source's layout
                known = get_source(start.source)
                out.default_adapter = (
                    known.adapter_for(backbone_name) if backbone_name in known.files else known.adapter
                )
            return out
    if is_source_name(checkpoint):
        return _locate_source(str(checkpoint), module, cache_dir, progress)
    if is_zoo_name(checkpoint) or is_hf_url(checkpoint):  # a bundle or a file no registered source names
        address = str(checkpoint)
        out.checkpoint = fetch_weights(address, sha256, cache_dir=cache_dir, progress=progress)
        if is_zoo_name(address):
            address = f"{address.partition('@')[0]}@{zoo_version(Path(out.checkpoint).parent.parent) or 'unknown'}"
        out.known_provenance, out.expected_hash = Provenance(url=address), None
    elif isinstance(checkpoint, str) and urllib.parse.urlparse(checkpoint).scheme in _URL_SCHEMES:
        out.checkpoint = download_checkpoint(checkpoint, sha256, cache_dir=cache_dir, progress=progress)
        out.known_provenance, out.expected_hash = Provenance(url=checkpoint), None
    return out


def _locate_source(name: str, module: nn.Module, cache_dir: str | os.PathLike | None, progress: bool) -> _Located:
    """A named source's file for the module's backbone, fetched (and verified) into the cache."""
    backbone_name = getattr(module, "backbone_name", None)
    known, wfile = resolve_source(name, backbone_name)
    module_dims = getattr(module, "spatial_dims", None)
    if module_dims is not None and module_dims < wfile.spatial_dims:
        raise ValueError(
            f"Source {name!r} holds {wfile.spatial_dims}D weights for {backbone_name!r}; they cannot load into a "
            f"{module_dims}D backbone (only 2D -> 3D inflation exists). Build it with "
            f"spatial_dims={wfile.spatial_dims}."
        )
    path = fetch_weights(
        wfile.url, wfile.sha256, cache_dir=cache_dir, filename=wfile.filename, progress=progress,
        what=f"{name} ({backbone_name})", request_url=wfile.request_url,
    )  # fmt: skip
    provenance = known.provenance_for(str(backbone_name))
    if is_zoo_name(wfile.url):  # record the bundle version that was actually read
        version = zoo_version(path.parent.parent)
        provenance = provenance.update(url=f"{wfile.url.partition('@')[0]}@{version or 'unknown'}")
    return _Located(path, expected_hash=None, description=f"{name} ({path})", known_provenance=provenance,
                    default_adapter=known.adapter_for(str(backbone_name)), safe_globals=wfile.safe_globals)  # fmt: skip


def _report(module: nn.Module, target: Mapping[str, Any], fitted: Mapping[str, Any], adapter: Any, strict: bool,
            **facts: Any) -> LoadReport:  # fmt: skip
    """What of ``target`` (the module's state dict) the ``fitted`` tensors fill, per key and per stage."""
    defaulted_patterns = DEFAULTED_PATTERNS + tuple(adapter.defaulted)
    loaded, mismatched, missing, defaulted = [], [], [], []
    for key, value in target.items():
        if key in fitted:
            if tuple(fitted[key].shape) == tuple(value.shape):
                loaded.append(key)
            else:
                mismatched.append((key, tuple(fitted[key].shape), tuple(value.shape)))
        elif matches_any(key, defaulted_patterns):
            defaulted.append(key)
        else:
            missing.append(key)
    unexpected = [k for k in fitted if k not in target]
    counted = [k for k in target if k not in set(defaulted)]
    assignment = module_stages(module, counted)
    loaded_set = set(loaded)
    stages: dict[str, tuple[int, int]] = {}
    for stage in _stage_order(module, assignment):
        keys = [k for k, s in assignment.items() if s == stage]
        stages[stage] = (sum(k in loaded_set for k in keys), len(keys))
    return LoadReport(loaded=loaded, missing=missing, unexpected=unexpected, mismatched=mismatched,
                      defaulted=defaulted, stages=stages, adapter=adapter.name, strict=strict, **facts)  # fmt: skip
