"""``hf://OWNER/REPO[@REVISION]/FILE``: any file of a Hugging Face model repository, through ``huggingface_hub``
and its cache (``HF_HOME`` / ``HF_HUB_CACHE``; offline mode, ``HF_HUB_OFFLINE=1``, honoured).

>>> parse_hf_url("hf://timm/vit_small_patch14_dinov2.lvd142m/model.safetensors")
HFFile(repo_id='timm/vit_small_patch14_dinov2.lvd142m', revision='main', filename='model.safetensors')

A file that cannot be fetched (offline and not cached, a gated or missing repository) raises ``DownloadError``: one
sentence naming the file and where in the cache to place a copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from monai_transfer.weights.checkpoint import DownloadError

__all__ = ["HF_SCHEME", "HFFile", "is_hf_url", "parse_hf_url", "hf_cache_path", "fetch_hf"]

HF_SCHEME = "hf://"
_TRUE = ("1", "true", "yes", "on")


class HFFile(NamedTuple):
    repo_id: str
    revision: str
    filename: str


def is_hf_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(HF_SCHEME)


def parse_hf_url(url: str) -> HFFile:
    """``hf://OWNER/REPO[@REVISION]/FILE`` -> ``HFFile``; ``ValueError`` naming the expected form otherwise."""
    parts = url[len(HF_SCHEME) :].split("/") if is_hf_url(url) else []
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"{url!r} is not a Hugging Face file address: write hf://OWNER/REPO[@REVISION]/FILE.")
    repo, _, revision = parts[1].partition("@")
    return HFFile(f"{parts[0]}/{repo}", revision or "main", "/".join(parts[2:]))


def _hub():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # submodules the lazy package does not expose as attributes
        import huggingface_hub.errors
    except ImportError:
        raise ImportError("hf:// weights need huggingface_hub: pip install huggingface_hub.") from None
    return huggingface_hub


def hf_cache_path(ref: HFFile, cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Where ``huggingface_hub`` looks for the file offline: ``(snapshot file, refs file)`` for the revision."""
    cache = Path(cache_dir) if cache_dir is not None else Path(_hub().constants.HF_HUB_CACHE)
    folder = cache / ("models--" + ref.repo_id.replace("/", "--"))
    return folder / "snapshots" / ref.revision / ref.filename, folder / "refs" / ref.revision


def fetch_hf(url: str, cache_dir: str | os.PathLike | None = None, what: str | None = None) -> Path:
    """The local path of an ``hf://`` file, downloaded into the Hugging Face cache once.

    Args:
        url: ``hf://OWNER/REPO[@REVISION]/FILE``.
        cache_dir: the Hugging Face cache folder; default ``huggingface_hub``'s (``HF_HUB_CACHE``).
        what: how the user named these weights, for the error message.

    Raises:
        DownloadError: offline (``HF_HUB_OFFLINE``) and not cached, or not reachable / not found.
    """
    hub = _hub()
    ref = parse_hf_url(url)
    # read now rather than at import (no import-time switches): set after importing huggingface_hub, it still counts
    offline = bool(hub.constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE
    try:
        path = hub.hf_hub_download(
            ref.repo_id, ref.filename, revision=ref.revision, cache_dir=cache_dir, local_files_only=offline
        )
    except (OSError, ValueError, hub.errors.HfHubHTTPError) as err:  # LocalEntryNotFoundError is an OSError
        snapshot, refs = hf_cache_path(ref, cache_dir)
        name = f"the weights {what!r} ({url})" if what else url
        if offline:
            reason = "offline (HF_HUB_OFFLINE) and not in the cache"
        elif isinstance(err, hub.errors.LocalEntryNotFoundError):
            reason = "the Hub is not reachable and the file is not in the cache"
        else:  # a missing repository, revision or file, a gated repository: the Hub's own first line says which
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}"
        raise DownloadError(
            f"Could not fetch {name} through huggingface_hub ({reason}); to use a copy downloaded elsewhere, put it "
            f"at {snapshot} and write '{ref.revision}' into {refs}, or pass the file's path instead.",
            url=url,
            target=str(snapshot),
            reason=str(err),
        ) from None
    return Path(path)
