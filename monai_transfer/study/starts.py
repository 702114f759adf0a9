"""Starting points: what ``pretrained`` each one gives a cell, pretraining inside the study where the spec asks.

``ssl``, ``supervised`` and ``continual`` starts are pretrained once per (start, backbone, spatial dims) into
``<out>/pretrain/<start>/<backbone>_<d>d/`` and reused by every cell; a pretraining that was killed resumes exactly
(``resume="auto"``), one that finished is read back. ``continual`` runs SSL from another start's weights (further
pretraining of a published or pretrained network on in-domain data, as in the systematic benchmarks).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_transfer.data import load_datalist
from monai_transfer.study.identity import changed, read_identity, start_identity, write_identity
from monai_transfer.study.spec import Start, StudySpec
from monai_transfer.utils.atomic import atomic_write_text

__all__ = ["resolve_start"]

logger = logging.getLogger(__name__)


def _folder(out: str | os.PathLike, start: Start, backbone: str, dims: int) -> Path:
    return Path(out) / "pretrain" / start.name / f"{backbone}_{dims}d"


def _ssl(opts: Mapping[str, Any], backbone: str, dims: int, folder: Path, backbone_kwargs: Mapping[str, Any],
         pretrained: str | None, amp: Any = None) -> str:  # fmt: skip
    from monai_transfer.ssl import pretrain

    encoder = folder / "encoder.pt"
    if (folder / "result.json").is_file() and encoder.is_file():
        return str(encoder)
    values = {k: v for k, v in opts.items() if k != "method"}
    values.setdefault("amp", amp)
    values.setdefault("epochs", 2)
    values.setdefault("batch_size", 8)
    values.setdefault("modality", "mr")
    pretrain(method=opts["method"], backbone=backbone, spatial_dims=dims, out=str(folder), pretrained=pretrained,
             backbone_kwargs=dict(backbone_kwargs), resume="auto" if (folder / "checkpoints").is_dir() else None,
             overwrite=(folder.is_dir() and not (folder / "checkpoints").is_dir()), progress=False, tensorboard=False,
             **values)  # fmt: skip
    return str(encoder)


def _supervised(opts: Mapping[str, Any], backbone: str, dims: int, folder: Path, spec: StudySpec,
                domain_key: str) -> str:  # fmt: skip
    from monai_transfer.finetune import finetune

    bundle = folder / "bundle"
    if (folder / "result.json").is_file() and bundle.is_dir():
        return str(bundle)
    data = opts["data"]
    if opts.get("domain"):  # pretrain on some sites / modalities only (e.g. the source site of a domain shift)
        keep = {str(x) for x in (opts["domain"] if isinstance(opts["domain"], list) else [opts["domain"]])}
        raw = json.loads(Path(data).read_text())
        sub = {k: v for k, v in raw.items() if not isinstance(v, list)}
        for section in ("training", "validation"):
            entries = load_datalist(data, section)
            sub[section] = [e for e in entries if str(e.get(domain_key)) in keep]
            if not sub[section]:
                raise ValueError(f"supervised pretraining data {data}: no {section} case with {domain_key} in {keep}")
        data = str(folder.parent / f"{folder.name}_data.json")
        folder.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(data, json.dumps(sub, indent=1, default=str))
    ft = dict(spec.finetune)
    # the cells' values where the start's own section sets none (5 epochs, batch 8, lr 1e-3 where neither does)
    settings = {"epochs": ft.get("epochs", 5), "batch_size": ft.get("batch_size", 8), "lr": ft.get("lr", 1e-3),
                "amp": ft.get("amp"), "backbone_kwargs": dict(ft.get("backbone_kwargs", {})),
                **{k: v for k, v in opts.items() if k not in ("data", "domain")}}  # fmt: skip
    finetune(backbone=backbone, datalist=data, out_dir=str(folder), spatial_dims=dims, seed=0, resume="auto",
             test_section=None, progress=False, tensorboard=False, **settings)  # fmt: skip
    if not bundle.is_dir():
        from monai_transfer.bundle import bundle_from_run

        bundle_from_run(folder, bundle)
    return str(bundle)


def _fresh_folder(folder: Path, identity: dict[str, Any], name: str) -> None:
    """Keep a pretraining folder only if it was made by what makes it today; else remove it (it is the study's own)
    and say why, so a changed ``ssl``/``supervised`` section or pretraining pool is never served old weights."""
    record = folder.with_name(folder.name + ".identity.json")  # beside it: the pretraining owns its folder
    if folder.is_dir():
        why = changed(read_identity(record), identity)
        if why is None:
            return
        logger.warning(f"starting point {name}: pretraining again, since {why}")
        shutil.rmtree(folder)
    write_identity(record, identity)


def resolve_start(spec: StudySpec, start: Start, backbone: str, dims: int, out: str | os.PathLike,
                  domain_key: str = "site") -> str | None:  # fmt: skip
    """The ``pretrained`` argument of a cell: None (random), a source name, a path, or the weights pretrained here."""
    if start.kind == "random":
        return None
    if start.kind == "source":
        return start.source
    if start.kind == "path":
        return start.path
    folder = _folder(out, start, backbone, dims)
    _fresh_folder(folder, start_identity(spec, start, backbone, dims, domain_key), start.name)
    kwargs = dict(spec.finetune.get("backbone_kwargs", {}))
    amp = spec.finetune.get("amp")  # in-study pretraining follows the cells' amp unless its own section sets one
    if start.kind == "ssl":
        return _ssl(start.ssl or {}, backbone, dims, folder, kwargs, None, amp)
    if start.kind == "supervised":
        return _supervised(start.supervised or {}, backbone, dims, folder, spec, domain_key)
    base = resolve_start(spec, spec.start(start.base or ""), backbone, dims, out, domain_key)
    return _ssl(start.ssl or {}, backbone, dims, folder, kwargs, base, amp)
