"""What a ``pretrained`` argument stands for, whatever form it is given in: nothing (random initialisation), a
published source name, a checkpoint file, or any folder the package writes.

One function, :func:`resolve_pretrained`, turns the argument into the weights file to read and the provenance of those
weights; fine-tuning, pretraining, ``load_pretrained``, the bundle writer and ``bundle create`` all go through it, so
that every bundle and run folder the package writes is a valid starting point:

======================================  ====================================================================
a folder holding                        the weights
======================================  ====================================================================
``models/model.pt``                     the fine-tuned network (a finetune run folder, its inference bundle,
                                        a study's best bundle); its ``backbone.`` part loads, the head drops
``encoder.pt``                          the encoder of a ``pretrain`` output folder
``models/pretrained/<file>``            the starting weights of a starting-point bundle (``bundle create``,
                                        the fine-tuning bundle ``pretrain`` writes)
``large_files.yml``                     a published source (a shipped bundle): its file when downloaded into
                                        the bundle, else the source itself (downloaded once into the cache); a
                                        file handed out on request: the metadata's ``starting_weights_by_hand``
``pretrain/encoder.pt``                 what a pretraining bundle wrote when it was run
======================================  ====================================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monai_transfer.weights.checkpoint import read_checkpoint, unwrap_state_dict

__all__ = ["ResolvedStart", "resolve_pretrained", "starting_provenance", "find_bundle_weights", "MODEL_FILES"]

#: the fine-tuned weights of a bundle or run folder, in order of preference
MODEL_FILES: tuple[str, ...] = ("models/model.pt", "models/model.safetensors", "models/model.pth", "model.pt")


@dataclass(frozen=True)
class ResolvedStart:
    """A starting point, resolved.

    Attributes:
        kind: ``"random"`` (no weights), ``"source"`` (a published source, fetched by name) or ``"file"`` (a local
            weights file).
        name: how the start is named to a user (a source name, a file name, ``folder/models/model.pt``).
        weights: the weights file (``kind == "file"``).
        source: the published source the weights are (``kind == "source"``), or whose key layout a local file has
            (a shipped bundle's downloaded file).
        provenance: the provenance record as a dict (``{}`` when unknown); for a fine-tuned network, its starting
            point's record with the intensity mapping it was trained with.
        origin: what was given, in words (``"finetune run folder"``, ``"inference bundle"``, ``"checkpoint file"``...).
        given: the argument as given.
    """

    kind: str
    name: str
    weights: Path | None = None
    source: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    given: str | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not readable JSON ({err})") from None
    return data if isinstance(data, dict) else {}


def _file_provenance(path: Path) -> dict[str, Any]:
    from monai_transfer.weights.provenance import Provenance

    _, prov, _ = unwrap_state_dict(read_checkpoint(path))
    prov = Provenance.from_dict(prov) if prov is not None else None
    if isinstance(prov, Provenance):
        return asdict(prov)
    return dict(prov) if isinstance(prov, Mapping) else {}


def _source_provenance(name: str, backbone: str | None) -> dict[str, Any]:
    from monai_transfer.weights.sources import get_source

    source = get_source(str(name))
    if backbone is not None and backbone in source.files:
        return asdict(source.provenance_for(backbone))
    return asdict(source.provenance)


def _finetuned_provenance(folder: Path, backbone: str | None) -> tuple[dict[str, Any], str]:
    """The provenance of a fine-tuned network in a bundle or run folder, and what the folder is (in words).

    The starting point's record, with the intensity mapping the network was trained with (what the encoder now
    expects) and the fine-tuning named in ``method``."""
    meta = _read_json(folder / "configs" / "metadata.json")
    train = _read_json(folder / "configs" / "train.json")
    ours = meta.get("monai_transfer") or {}
    if not (folder / "result.json").is_file():  # a bundle (a run folder saves a metadata.json of its own too)
        origin = "inference bundle" if (folder / "configs" / "inference.json").is_file() else "bundle"
        prov = dict(ours.get("provenance") or {})
        start = ours.get("starting_point")
        intensity = ours.get("intensity", train.get("intensity"))
    else:
        origin = "finetune run folder"
        result = _read_json(folder / "result.json")
        start = result.get("pretrained")
        prov = {}
        if start:
            try:  # the run's own start (a source, a file, a folder): its record, when it can still be read
                prov = resolve_pretrained(start, backbone).provenance
            except (FileNotFoundError, ValueError, KeyError):
                prov = {}
        intensity = train.get("intensity")
    nd = train.get("network_def") or {}
    task = train.get("task") or "supervised"
    before = prov.get("method")
    prov["method"] = f"supervised {task} fine-tuning" + (f" after {before}" if before else "")
    if intensity:
        prov["preprocessing"] = {**dict(prov.get("preprocessing") or {}), "intensity": intensity}
    for key, value in (("backbone_name", nd.get("backbone")), ("spatial_dims", train.get("spatial_dims")),
                       ("in_channels", train.get("in_channels"))):  # fmt: skip
        if value is not None:
            prov[key] = value
    extra = dict(prov.get("extra") or {})
    extra["fine_tuned_from"] = str(start) if start else "random initialisation"
    prov["extra"] = extra
    return prov, origin


def _local_start_file(folder: Path, train: Mapping[str, Any]) -> Path | None:
    """The file under ``models/pretrained/`` a starting-point bundle's ``train.json`` starts from, if present."""
    for ref in (train.get("pretrained"), (train.get("network_def") or {}).get("pretrained")):
        if isinstance(ref, str) and "models/pretrained/" in ref:
            rel = "models/pretrained/" + ref.split("models/pretrained/", 1)[1].rstrip("'\" ")
            if (folder / rel).is_file():
                return folder / rel
    files = sorted(p for p in (folder / "models" / "pretrained").glob("*") if p.is_file())
    return files[0] if len(files) == 1 else None


def _resolve_folder(folder: Path, backbone: str | None, given: str) -> ResolvedStart:
    name = folder.name
    for rel in MODEL_FILES:
        if (folder / rel).is_file():
            meta = _read_json(folder / "configs" / "metadata.json")
            if "monai_transfer" in meta or (folder / "result.json").is_file():  # ours: a bundle or a run folder
                prov, origin = _finetuned_provenance(folder, backbone)
            else:  # another MONAI bundle: its weights, and no record we could vouch for
                prov, origin = {}, "MONAI bundle"
            return ResolvedStart("file", f"{name}/{rel}", folder / rel, None, prov, origin, given)
    if (folder / "encoder.pt").is_file():
        return ResolvedStart("file", f"{name}/encoder.pt", folder / "encoder.pt", None,
                             _file_provenance(folder / "encoder.pt"), "pretrain output folder", given)  # fmt: skip
    meta = _read_json(folder / "configs" / "metadata.json")
    train = _read_json(folder / "configs" / "train.json")
    ours = meta.get("monai_transfer") or {}
    if ours.get("kind") == "pretraining":
        encoder = folder / "pretrain" / "encoder.pt"
        if encoder.is_file():
            return ResolvedStart("file", f"{name}/pretrain/encoder.pt", encoder, None, _file_provenance(encoder),
                                 "pretraining bundle", given)  # fmt: skip
        raise FileNotFoundError(
            f"{folder} is a pretraining bundle that has not been run: it holds no weights yet. Run it "
            "(python -m monai.bundle run --config_file configs/train.json --bundle_root ...) and pass the bundle "
            "again, or its pretrain/encoder.pt."
        )
    source = (train.get("network_def") or {}).get("pretrained_source")
    local = _local_start_file(folder, train)
    prov = dict(ours.get("provenance") or {})
    if local is not None:
        file_prov = _file_provenance(local)
        return ResolvedStart("file", f"{name}/{local.relative_to(folder)}", local, source, file_prov or prov,
                             "starting-point bundle", given)  # fmt: skip
    # a published source: listed for download (large_files.yml), or a file its publisher hands out only on request
    if (folder / "large_files.yml").is_file() or ours.get("starting_weights_by_hand"):
        from monai_transfer.weights.sources import is_source_name

        source = source or ours.get("starting_point")
        if source and is_source_name(source):
            return ResolvedStart("source", str(source), None, str(source), prov or _source_provenance(source, backbone),
                                 "starting-point bundle of a published source", given)  # fmt: skip
        raise FileNotFoundError(
            f"{folder}: its starting weights (large_files.yml) are not downloaded and name no known source; fetch "
            "them with `python -m monai.bundle download_large_files --bundle_path ...`."
        )
    if meta and ours.get("kind") == "random":
        raise FileNotFoundError(
            f"{folder} is a bundle that starts from random initialisation: it holds no weights to start from. Leave "
            "pretrained out (random initialisation), or pass a bundle or run folder with weights."
        )
    raise FileNotFoundError(
        f"no weights in folder {folder}: looked for {', '.join(MODEL_FILES)} (a fine-tuned network), encoder.pt (a "
        "pretrain output folder), models/pretrained/ or large_files.yml (a starting-point bundle)."
    )


def resolve_pretrained(pretrained: str | os.PathLike | None, backbone: str | None = None) -> ResolvedStart:
    """Turn any ``pretrained`` argument into the weights to load and their provenance, without downloading anything.

    Args:
        pretrained: ``None`` (random initialisation), a weight source name, a checkpoint file, or a folder the package
            writes (table in the module docstring).
        backbone: the backbone the weights are for (selects a source's file and provenance).

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without weights (the message says what was looked
            for, or why the folder holds none).
    """
    from monai_transfer.weights.sources import is_source_name

    if pretrained is None:
        return ResolvedStart("random", "random initialisation", origin="random initialisation")
    given = os.fspath(pretrained)
    if is_source_name(given):
        return ResolvedStart("source", given, None, given, _source_provenance(given, backbone), "published source",
                             given)  # fmt: skip
    path = Path(given)
    if path.is_dir():
        return _resolve_folder(path, backbone, given)
    if path.is_file():
        return ResolvedStart("file", path.name, path, None, _file_provenance(path), "checkpoint file", given)
    raise FileNotFoundError(
        f"pretrained checkpoint not found: {path} (give a checkpoint file, a bundle or run folder, or a source name)"
    )


def starting_provenance(pretrained: str | os.PathLike | None, backbone: str | None = None) -> dict[str, Any]:
    """The provenance record (a dict; ``{}`` when unknown) of ``pretrained``, read without downloading anything.

    A published source gives its registered provenance (for ``backbone``'s file when given); a checkpoint file the
    provenance stored in it (``encoder.pt`` of ``pretrain``); a folder (bundle, run folder) the provenance of its
    weights (:func:`resolve_pretrained`); ``None`` (random initialisation), a file without one and a path that does
    not exist give ``{}``.
    """
    try:
        return dict(resolve_pretrained(pretrained, backbone).provenance)
    except FileNotFoundError:
        return {}


def find_bundle_weights(path: str | os.PathLike) -> Path:
    """The weights file of a folder the package writes or a MONAI bundle: a fine-tuned network's
    ``models/model.pt`` (or ``.safetensors``), a ``pretrain`` folder's ``encoder.pt``, a starting-point bundle's
    ``models/pretrained/<file>`` (:func:`resolve_pretrained`).

    Raises:
        FileNotFoundError: the folder holds no local weights file (the message says what was looked for, or names
            the published source a shipped bundle starts from).
    """
    path = Path(path)
    try:
        start = resolve_pretrained(path)
    except FileNotFoundError as err:
        ts = path / "models" / "model.ts"
        hint = (
            " It holds only a TorchScript model (models/model.ts), whose weights this loader does not read."
            if ts.is_file()
            else ""
        )
        raise FileNotFoundError(f"{err}{hint}") from None
    if start.weights is None:
        raise FileNotFoundError(
            f"{path} holds no weights file: it starts from the published source {start.source!r}; pass that name, or "
            "fetch the file with `python -m monai.bundle download_large_files --bundle_path ...`."
        )
    return start.weights
