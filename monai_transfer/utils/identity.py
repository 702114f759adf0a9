"""A result's identity: everything that determines it, hashed, and the named difference between two identities.

Resume, a study's cells and the results store key on it, so that a changed setting, changed data or another package
version is never served a stale result: the old and new identity are compared and the keys that differ are named
(``finetune.epochs: 1 -> 2``, ``data: images/case3.nii.gz changed``).

Data content is the content of every file a datalist (or any JSON-like value) names, not its path or timestamp: a
file rewritten with the same bytes keeps its identity, a label flipped in place does not. Digests are memoised per
process by (path, size, modification time), so a study hashes each file once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "file_digest",
    "path_digest",
    "data_digest",
    "value_digest",
    "flatten",
    "identity_diff",
    "describe_diff",
    "package_version",
]

_MEMO: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (memoised by path, size and modification time)."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(chunk_size), b""):
                h.update(block)
        _MEMO[key] = h.hexdigest()
    return _MEMO[key]


def path_digest(path: str | os.PathLike) -> str:
    """A file's digest, or a folder's: its files' relative names and digests, in sorted order."""
    p = Path(path)
    if p.is_file():
        return file_digest(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def _paths_in(value: Any, base_dir: str | None) -> Iterable[str]:
    """Every string in a JSON-like value that names an existing file or folder (relative ones from ``base_dir``)."""
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _paths_in(v, base_dir)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _paths_in(v, base_dir)
    elif isinstance(value, (str, os.PathLike)):
        v = os.fspath(value)
        if not v or len(v) > 4096 or "\n" in v:
            return
        full = v if os.path.isabs(v) or base_dir is None else os.path.join(base_dir, v)
        if os.path.exists(full):
            yield os.path.normpath(full)


def data_digest(data: Any, base_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Digests of the files a datalist names: ``{path: sha256}`` (the datalist file itself included).

    Args:
        data: a datalist file path, a folder of images, or a JSON-like value (a datalist dict) naming files.
        base_dir: where relative paths of a dict start (a datalist file's own folder when ``data`` is a path).
    """
    if isinstance(data, (str, os.PathLike)) and os.path.isdir(data):
        return {os.path.abspath(data): path_digest(data)}
    if isinstance(data, (str, os.PathLike)) and os.path.isfile(data):
        path = os.path.abspath(os.fspath(data))
        out = {path: file_digest(path)}
        if path.endswith(".json"):
            try:
                parsed = json.loads(Path(path).read_text())
            except (ValueError, OSError):
                return out
            out.update(data_digest(parsed, os.path.dirname(path)))
        return out
    base = None if base_dir is None else os.fspath(base_dir)
    return {p: path_digest(p) for p in sorted(set(_paths_in(data, base)))}


def value_digest(value: Any) -> str:
    """SHA-256 of a JSON-able value in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"a.b": 1, "c": [2]}`` (lists stay whole: they are one setting)."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The flattened keys whose values differ: ``{key: (old, new)}`` (a missing key is ``None`` on its side)."""
    a, b = flatten(json.loads(json.dumps(old, default=str))), flatten(json.loads(json.dumps(new, default=str)))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_diff(diff: Mapping[str, tuple[Any, Any]], limit: int = 6) -> str:
    """``finetune.epochs: 1 -> 2; data: 3 files changed`` for a user; data digests are summarised, not printed."""
    parts, data = [], {"changed": 0, "added": 0, "removed": 0}
    for key, (a, b) in diff.items():
        if key.startswith("data."):
            data["added" if a is None else "removed" if b is None else "changed"] += 1
            continue
        parts.append(f"{key}: {_short(a)} -> {_short(b)}")
    summary = [f"{n} file(s) {what}" for what, n in data.items() if n]
    if summary:
        parts.insert(0, "data content: " + ", ".join(summary))
    more = len(parts) - limit
    return "; ".join(parts[:limit]) + (f"; and {more} more" if more > 0 else "")


def package_version() -> str:
    """``monai_transfer``'s version (part of every identity: another version may compute other results)."""
    from monai_transfer import __version__

    return __version__
