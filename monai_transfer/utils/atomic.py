"""Atomic file writes: a temporary file in the destination folder, flushed and fsync-ed, then ``os.replace``.

A crash or an exception at any point leaves either the old file or the new one, never half of one, and no
temporary file behind (checkpoints, indices, datalists and reports all go through here).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_save", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # read once: os.umask can only be read by setting it, which is not thread-safe to repeat
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _full_suffix(name: str) -> str:
    # writers such as nibabel choose the format from the suffix, including double ones like ".nii.gz"
    return "." + name.split(".", 1)[1] if "." in name.lstrip(".") else ""


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, on any exception remove it.

    Args:
        path: the final file; its folder is created.
        suffix: suffix of the temporary file; default: the full suffix of ``path`` (``.nii.gz`` stays whole).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.tmp-", suffix=_full_suffix(path.name) if suffix is None else suffix
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; outputs get the mode any new file would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save(path: str | os.PathLike, writer: Callable[[str], Any], suffix: str | None = None) -> str:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path``, then move it onto ``path`` atomically.

    Example: ``atomic_save("img.nii.gz", lambda p: nib.save(img, p))``. Returns the final path.
    """
    with atomic_write(path, suffix=suffix) as tmp:
        writer(str(tmp))
    return os.fspath(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically."""
    return atomic_save(path, lambda p: Path(p).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> str:
    """Write ``obj`` as JSON (insertion order kept, trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
