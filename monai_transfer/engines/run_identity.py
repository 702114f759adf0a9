"""A run folder's identity: what its result depends on, written as ``identity.json`` before training, checked on resume.

A training run (fine-tuning, pretraining) writes ``<out>/identity.json`` before its first epoch: the resolved bundle
config that runs, without the ids that do not change the result (resume mode, workers, progress and tracking
switches, the device), plus the content digest of its data and starting weights and the package version
(:mod:`monai_transfer.utils.identity`). ``resume="auto"`` compares the new identity with the folder's and refuses a
run whose settings or data differ, naming the keys, so that two runs are never mixed in one result; the changes a
run declares safe (more epochs) go on, said in the log and recorded. ``overwrite`` removes every output the run kind
writes (a list of names kept as data by each run kind), never other files.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from monai_transfer.engines.checkpoint import RunExistsError
from monai_transfer.utils.atomic import atomic_write_json
from monai_transfer.utils.identity import data_digest, describe_diff, identity_diff, package_version, path_digest

__all__ = [
    "IDENTITY_NAME",
    "RunChangedError",
    "result_settings",
    "run_identity",
    "read_identity",
    "write_identity",
    "check_identity",
    "remove_outputs",
]

logger = logging.getLogger(__name__)

IDENTITY_NAME = "identity.json"

#: keys of ``identity.json`` that are records, not part of the comparison
_RECORDS = ("resumed_with_changes",)


class RunChangedError(RunExistsError):
    """``resume="auto"`` met a run in the folder whose settings or data differ from the new run's."""


def _prune(value: Any, ignore_targets: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping):
        return {k: _prune(v, ignore_targets) for k, v in value.items()}
    if isinstance(value, list):
        return [
            _prune(v, ignore_targets)
            for v in value
            if not (isinstance(v, Mapping) and str(v.get("_target_", "")).split(".")[-1] in ignore_targets)
        ]
    return value


def result_settings(
    raw: Mapping[str, Any], ignore_ids: Iterable[str] = (), ignore_targets: Iterable[str] = ()
) -> dict[str, Any]:
    """The config's values that determine the result: ``raw`` without the ids ``ignore_ids`` (``"a#b"`` nested)
    and without list items whose ``_target_`` (last dotted part) is one of ``ignore_targets`` (handlers that only
    report: TensorBoard, progress bars, MLflow)."""
    out = _prune(copy.deepcopy(dict(raw)), tuple(t.split(".")[-1] for t in ignore_targets))
    for cid in ignore_ids:
        parts, node = cid.split("#"), out
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, Mapping) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return out


def _data_content(datalist: Any) -> dict[str, str]:
    """``data_digest`` keyed by paths relative to the datalist's folder (a moved data folder keeps its identity)."""
    if not isinstance(datalist, (str, os.PathLike)) or not os.path.exists(datalist):
        return {}
    base = os.path.dirname(os.path.abspath(datalist)) if os.path.isfile(datalist) else os.path.abspath(datalist)
    digests = data_digest(datalist)
    return {os.path.relpath(p, base).replace(os.sep, "/"): d for p, d in sorted(digests.items())}


def _starting_point(pretrained: Any) -> Any:
    """A file's or folder's content digest; a source name (or none) as it is."""
    if isinstance(pretrained, (str, os.PathLike)) and os.path.exists(pretrained):
        return {"digest": path_digest(pretrained)}
    return pretrained


def run_identity(settings: Mapping[str, Any], datalist: Any = None, pretrained: Any = None) -> dict[str, Any]:
    """``{"settings", "data", "pretrained", "package_version"}``: what ``identity.json`` holds."""
    return {
        "settings": json.loads(json.dumps(dict(settings), default=str)),
        "data": _data_content(datalist),
        "pretrained": _starting_point(pretrained),
        "package_version": package_version(),
    }


def read_identity(out: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's ``identity.json`` (``None``: none, or unreadable)."""
    path = Path(out) / IDENTITY_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_identity(
    out: str | os.PathLike, identity: Mapping[str, Any], changes: Mapping[str, Any] | None = None
) -> None:
    """Write ``identity.json`` atomically (with the safe changes a resumed run accepted, accumulated)."""
    record = dict(identity)
    if changes:
        record["resumed_with_changes"] = dict(changes)
    atomic_write_json(Path(out) / IDENTITY_NAME, record)


def _compared(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The view two identities are compared in: settings at the top level, ``data`` as it is (``describe_diff``
    summarises its keys), the starting weights and the package version by name."""
    settings = identity.get("settings") or {}
    start = identity.get("pretrained")
    return {
        **settings,
        "data": identity.get("data") or {},
        "pretrained weights": f"content {str(start.get('digest'))[:12]}" if isinstance(start, Mapping) else start,
        "package version": identity.get("package_version"),
    }


def _ids(diff: Mapping[str, Any]) -> dict[str, Any]:
    """Config keys as ``--set`` spells them (``train#trainer#max_epochs``); data paths stay as they are."""
    return {k if k.startswith("data.") else k.replace(".", "#"): v for k, v in diff.items()}


def check_identity(
    out: str | os.PathLike,
    new: Mapping[str, Any],
    finished: bool,
    safe: Mapping[str, Callable[[Any, Any], bool]] | None = None,
    what: str = "run",
    legacy: Mapping[str, Any] | None = None,
) -> dict[str, list[Any]]:
    """Compare the new run's identity with the one in ``out`` before resuming it.

    Args:
        out: the run folder.
        new: :func:`run_identity` of the new run.
        finished: whether the folder's run has finished (a finished run accepts no change at all: it is returned as
            it is, so a change would be silently ignored).
        safe: config id -> ``f(old, new)``: True when that change may go on (e.g. more epochs).
        what: the run kind in the message (``"fine-tuning run"``).
        legacy: the identity to compare with when ``out`` has no ``identity.json`` (a run written before it
            existed): its ``settings`` only are compared.

    Returns:
        The accepted changes, ``{id: [old, new]}`` (with those accepted by earlier resumes); empty when unchanged.

    Raises:
        RunChangedError: the settings, data, starting weights or package version differ (named in one sentence).
    """
    old = read_identity(out)
    if old is None and legacy is not None:
        old = dict(legacy)
        new = {**new, **{k: old.get(k) for k in ("data", "pretrained", "package_version")}}
        logger.warning("%s has no %s (written by an older version): only its settings are compared", out,
                       IDENTITY_NAME)  # fmt: skip
    if old is None:
        return {}
    diff = _ids(identity_diff(_compared(old), _compared(new)))
    safe = dict(safe or {})
    refused = {k: v for k, v in diff.items() if finished or k not in safe or not safe[k](*v)}
    if refused:
        state = "finished " if finished else ""
        raise RunChangedError(
            f"{out} holds a {state}{what} with other settings: {describe_diff(refused)}. Continue with the same "
            "settings, or start again with --overwrite (resume='overwrite')."
        )
    changes = {k: list(v) for k, v in (old.get("resumed_with_changes") or {}).items()}
    for k, (a, b) in diff.items():
        first = changes.get(k, [a, b])[0]
        changes[k] = [first, b]
    if diff:
        logger.warning("%s: resuming with changed settings: %s", out, describe_diff(diff))
    return changes


def remove_outputs(out: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Remove the run outputs ``names`` (relative paths or glob patterns, files or folders) from ``out``; folders
    left empty by it are removed too. Everything else in ``out`` stays. Returns the paths removed."""
    root = Path(out)
    removed = []
    for name in names:
        for path in sorted(root.glob(name)):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                continue
            removed.append(path.relative_to(root).as_posix())
            parent = path.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return removed
