"""Atomic file writes: write a temporary file in the target folder, then ``os.replace`` it into place."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save"]


def atomic_save(path: str | os.PathLike, writer: Callable[[str], Any], suffix: str | None = None) -> str:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path``, then move it over ``path`` atomically.

    Args:
        path: the final file.
        writer: writes the content to the path it is given (e.g. ``lambda p: nib.save(img, p)``).
        suffix: suffix of the temporary file (writers such as nibabel choose the format from it); default: the
            suffix of ``path`` including double suffixes such as ``.nii.gz``.

    Returns:
        The final path.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        base = os.path.basename(path)
        suffix = "." + base.split(".", 1)[1] if "." in base else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically."""

    def _w(p: str) -> None:
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_save(path, _w)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> str:
    """Write ``obj`` as JSON (sorted insertion order kept, trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
