"""Run a bundle config the way ``python -m monai.bundle run`` does, after ``id=value`` overrides, saving it first.

Every run of the package (fine-tuning, evaluation, inference, pretraining) is a MONAI bundle config. The command line
and the Python API build such a config (or load one), apply the user's overrides, write the resolved config into the
run's folder (``configs/<name>.json``, atomically, 4-space JSON) and hand that file to MONAI's ``ConfigWorkflow``:
the run that happened is the config that was saved, and re-running it with ``python -m monai.bundle run`` repeats it.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_transfer.utils.atomic import atomic_write_json

__all__ = [
    "ConfigRun",
    "parse_overrides",
    "apply_overrides",
    "load_config",
    "run_config",
    "OverrideError",
    "unwrap_config_error",
    "close_writers",
]


class OverrideError(KeyError):
    """An ``id=value`` override that is malformed or names no value of the config."""

    def __str__(self) -> str:  # KeyError quotes its message
        return str(self.args[0]) if self.args else ""


def parse_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["train#trainer#max_epochs=3", "device=cpu"]`` -> ``{"train#trainer#max_epochs": 3, "device": "cpu"}``.

    The value is read as JSON (numbers, booleans, ``null``, lists, objects, quoted strings) and otherwise kept as the
    string written, so ``lr=1e-4`` is a float and ``device=cuda:1`` a string. A mapping is returned as a copy.

    Raises:
        OverrideError: an item without ``=`` or with an empty id.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise OverrideError(f"override {item!r} is not of the form id=value (ids are '#'-separated: a#b#c=1)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _norm(key: str) -> str:
    return key.replace("::", "#")


def _ids(config: Any, prefix: str = "") -> list[str]:
    """Every id of a config, ``#``-joined."""
    out = []
    items = config.items() if isinstance(config, Mapping) else enumerate(config) if isinstance(config, list) else ()
    for k, v in items:
        cid = f"{prefix}#{k}" if prefix else str(k)
        out.append(cid)
        out += _ids(v, cid)
    return out


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any], allow_new: bool = False) -> dict[str, Any]:
    """A copy of ``config`` with each ``id`` (``#``- or ``::``-separated) set to its value.

    Args:
        config: the raw (unresolved) config.
        overrides: ids to values.
        allow_new: let an override add a key that the config lacks (its parent must exist); otherwise an unknown id
            is an error, with the closest ids named, so that a typo never passes silently.

    Raises:
        OverrideError: an id the config does not hold (with close matches), or whose parent is not a dict or list.
    """
    out = json.loads(json.dumps(config))
    known = _ids(out)
    for raw_id, value in overrides.items():
        cid = _norm(str(raw_id))
        parts = cid.split("#")
        parent: Any = out
        for depth, part in enumerate(parts[:-1]):
            parent = _child(parent, part, "#".join(parts[: depth + 1]), known)
        leaf = parts[-1]
        if isinstance(parent, list):
            idx = _index(leaf, parent, cid)
            parent[idx] = value
        elif isinstance(parent, dict):
            if leaf not in parent and not allow_new:
                raise OverrideError(_unknown(cid, known))
            parent[leaf] = value
        else:
            raise OverrideError(f"override {raw_id!r}: {'#'.join(parts[:-1])!r} is a value, not a dict or list")
    return out


def _child(parent: Any, part: str, cid: str, known: list[str]) -> Any:
    if isinstance(parent, list):
        return parent[_index(part, parent, cid)]
    if isinstance(parent, dict) and part in parent:
        return parent[part]
    raise OverrideError(_unknown(cid, known))


def _index(part: str, seq: list, cid: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise OverrideError(f"override id {cid!r}: {part!r} indexes a list and must be a number") from None
    if not -len(seq) <= idx < len(seq):
        raise OverrideError(f"override id {cid!r}: index {idx} is outside the list of {len(seq)} items")
    return idx


def _unknown(cid: str, known: list[str]) -> str:
    close = difflib.get_close_matches(cid, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"the config has no id {cid!r}{hint}"


def load_config(config: Mapping[str, Any] | str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, Any]:
    """A raw config from a dict, a JSON/YAML file, or several files merged in order (later files win, as in MONAI)."""
    if isinstance(config, Mapping):
        return json.loads(json.dumps(config))
    from monai.bundle import ConfigParser

    files = [os.fspath(config)] if isinstance(config, (str, os.PathLike)) else [os.fspath(c) for c in config]
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"config file not found: {f}")
        read_config_file(f)  # a broken file is named here (MONAI's parser says only where in some file it broke)
    return dict(ConfigParser.load_config_files(files))


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """One JSON or YAML config file as a dict.

    Raises:
        ValueError: the file is not valid JSON/YAML, or holds no mapping; the message names the file and the place.
    """
    import yaml
    from monai.bundle import ConfigParser

    try:
        obj = ConfigParser.load_config_file(os.fspath(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{os.fspath(path)} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{os.fspath(path)} is not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{os.fspath(path)} is not a config file (binary content)") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{os.fspath(path)}: a config file holds a JSON/YAML object, not a {type(obj).__name__}")
    return dict(obj)


@dataclass
class ConfigRun:
    """What :func:`run_config` ran: the saved config file and the MONAI workflow (its parser holds the components)."""

    config_file: Path
    workflow: Any
    config: dict[str, Any] = field(default_factory=dict)

    def get(self, cid: str) -> Any:
        """A parsed component of the run (``"network"``, ``"train#trainer"``...), instantiated once."""
        return self.workflow.parser.get_parsed_content(cid)


def run_config(
    config: Mapping[str, Any] | str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    name: str = "train.json",
    meta: Mapping[str, Any] | None = None,
    workflow_type: str | None = None,
    run: bool = True,
    allow_new: bool = False,
) -> ConfigRun:
    """Apply overrides to a bundle config, save it as ``out_dir/configs/<name>``, and run it with ``ConfigWorkflow``.

    Args:
        config: a config dict, a config file, or several files merged in order.
        out_dir: the run's folder; the resolved config goes to ``configs/`` inside it.
        overrides: ``id=value`` strings or a mapping (:func:`parse_overrides`, :func:`apply_overrides`).
        name: file name of the saved config.
        meta: metadata saved as ``configs/metadata.json`` when the folder has none (MONAI reads it into ``_meta_``);
            default: a version and a one-line description.
        workflow_type: ``"train"`` or ``"infer"`` to have MONAI check the properties of that workflow kind; ``None``
            checks nothing (pretraining and evaluation configs are neither).
        run: run (``initialize``, ``run``, ``finalize``); ``False`` only initialises, for callers that run parts.
        allow_new: overrides may add keys the config lacks.

    Returns:
        A :class:`ConfigRun`.
    """
    from monai.bundle import ConfigWorkflow

    raw = apply_overrides(load_config(config), parse_overrides(overrides), allow_new=allow_new)
    configs = Path(out_dir) / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    config_file = configs / name
    atomic_write_json(config_file, raw, indent=4)
    meta_file = configs / "metadata.json"
    if not meta_file.exists():  # MONAI reads it into _meta_ (and logs an error when there is none)
        default = {"version": "0.1.0", "description": f"the {name} config of a monai_transfer run"}
        atomic_write_json(meta_file, dict(meta) if meta is not None else default, indent=4)
    logging_file = configs / "logging.conf"
    # the process's own logging stays as the caller set it: no logging.conf means no fileConfig, said once not per run
    with _without_message(logging.getLogger("monai.bundle.workflows"), "skipping logging"):
        workflow = ConfigWorkflow(
            config_file=str(config_file),
            meta_file=str(meta_file),
            logging_file=str(logging_file) if logging_file.exists() else False,
            workflow_type=workflow_type,
        )
    if run:
        with _isolated_rng():
            _run(workflow, run)
    else:  # the caller runs the parts: the generators the config seeded stay seeded for it
        _run(workflow, run)
    return ConfigRun(config_file=config_file, workflow=workflow, config=raw)


@contextlib.contextmanager
def _without_message(logger: logging.Logger, text: str) -> Iterator[None]:
    def keep(record: logging.LogRecord) -> bool:
        return text not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextlib.contextmanager
def _isolated_rng() -> Iterator[None]:
    """A run may seed torch's global generators (dropout draws from them); the caller's states come back after it."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


def _run(workflow: Any, run: bool) -> None:
    try:
        workflow.initialize()
        if run:
            try:
                workflow.run()
            finally:
                workflow.finalize()
                close_writers(workflow)
    except BaseException as err:
        close_writers(workflow)  # a failed start too: an open writer's thread makes the exit abort
        if isinstance(err, RuntimeError):
            raise unwrap_config_error(err) from None
        raise


def close_writers(workflow: Any) -> None:
    """Close the TensorBoard writers a run's handlers opened, finished or failed.

    A writer left open when a run fails (a truncated image found while caching) keeps its thread to interpreter exit,
    which then aborts (``terminate called without an active exception``, exit 134) instead of exiting with the error.
    """
    from monai.handlers.tensorboard_handlers import TensorBoardHandler

    resolved = getattr(getattr(workflow.parser, "ref_resolver", None), "resolved_content", {}) or {}
    stack = list(resolved.values())
    while stack:
        obj = stack.pop()
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, TensorBoardHandler):
            obj.close()


_WRAPPERS = ("Failed to evaluate", "Failed to instantiate", "applying transform")


def unwrap_config_error(err: BaseException) -> BaseException:
    """The error a component raised, from under MONAI's "Failed to evaluate/instantiate ..." wrappers.

    MONAI's config parser (and ``Compose``) wrap a component's own exception in ``RuntimeError`` chains; the message
    that names the bad file or value is the innermost one, so that one is what a user should see.
    """
    inner = err
    while inner.__cause__ is not None and (isinstance(inner, RuntimeError) and any(w in str(inner) for w in _WRAPPERS)):
        inner = inner.__cause__
    return inner
