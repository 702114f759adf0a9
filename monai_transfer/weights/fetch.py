"""Where a named source's file comes from: one function for every kind of address a source may give.

* ``https://`` / ``file://``: :func:`monai_transfer.weights.checkpoint.download_checkpoint` (hash-checked cache);
* ``hf://OWNER/REPO[@REVISION]/FILE``: ``huggingface_hub`` and its cache (:mod:`monai_transfer.weights.hub`);
* ``monai-zoo:NAME[@VERSION]``: a MONAI model-zoo bundle (:mod:`monai_transfer.weights.zoo`);
* a file handed out only through a request form (``WeightFile.request_url``): read from the cache path, never
  downloaded; its absence is one sentence naming the form and the path.

And the few harmless classes that some published files pickle beside their tensors, allowed for those files only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from monai_transfer.weights.checkpoint import (
    DownloadError,
    check_sha256,
    default_cache_dir,
    download_checkpoint,
    sha256_file,
)
from monai_transfer.weights.hub import fetch_hf, is_hf_url
from monai_transfer.weights.zoo import fetch_zoo, is_zoo_name

__all__ = ["SAFE_GLOBALS", "fetch_weights", "allowed_globals"]

#: classes a published checkpoint may pickle that cannot run code when unpickled (PyContrast stores its argparse
#: options beside the weights); a source names the ones its file needs (``WeightFile.safe_globals``)
SAFE_GLOBALS: dict[str, type] = {"argparse.Namespace": argparse.Namespace}


@contextlib.contextmanager
def allowed_globals(names: Sequence[str]) -> Iterator[None]:
    """Allow exactly these :data:`SAFE_GLOBALS` to ``torch.load(weights_only=True)`` inside the block."""
    unknown = [n for n in names if n not in SAFE_GLOBALS]
    if unknown:
        raise ValueError(f"{unknown} are not among the classes a checkpoint may hold ({sorted(SAFE_GLOBALS)}).")
    if not names:
        yield
        return
    with torch.serialization.safe_globals([SAFE_GLOBALS[n] for n in names]):
        yield


def fetch_weights(
    url: str,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    filename: str | None = None,
    progress: bool = False,
    what: str | None = None,
    request_url: str = "",
) -> Path:
    """The local file for a source's address (downloaded once where it can be).

    Raises:
        DownloadError: the file could not be fetched; the message says where a copy is picked up.
        HashMismatchError: the file does not have the published SHA-256.
    """
    if is_zoo_name(url):
        return fetch_zoo(url, cache_dir=cache_dir, what=what)
    if is_hf_url(url):
        # the Hugging Face cache is huggingface_hub's own unless a cache folder is given
        path = fetch_hf(url, cache_dir=cache_dir, what=what)
        check_sha256(sha256_file(path), sha256, what=str(path))
        return path
    if request_url:
        target = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / (
            filename or Path(url).name or "weights.pt"
        )
        if not target.is_file():
            raise DownloadError(
                f"The weights {what or url!r} are handed out by their publisher only through a request form "
                f"({request_url}); request them there and put the file at {target}, or pass the file's path instead.",
                url=request_url,
                target=str(target),
                reason="request form",
            )
        check_sha256(sha256_file(target), sha256, what=str(target))
        return target
    return download_checkpoint(url, sha256, cache_dir=cache_dir, filename=filename, progress=progress, what=what)
