"""Reading, saving and downloading checkpoints, safely.

* Reading never unpickles arbitrary objects: ``torch.load(..., weights_only=True)`` always, and ``.safetensors``
  files through ``safetensors``. A checkpoint that holds a whole pickled model is refused with an explanation.
* Writing is atomic: a temporary file in the destination folder, flushed and ``fsync``-ed, then ``os.replace``;
  an interrupted save leaves the previous file (or nothing), never a truncated one.
* Downloading streams into a temporary file in the cache folder, hashes it on the way, and renames it into place
  only when the SHA-256 matches (the full digest, or the prefix of at least 8 hex digits that torchvision puts
  in its file names, ``resnet18-f37072fd.pth``). A download that cannot happen (offline, blocked, 404) raises
  :class:`DownloadError`, one sentence that names the URL and how to use a local copy instead.
* A file that is not a checkpoint at all (random bytes, an empty or truncated download, an HTML error page, a Git LFS
  pointer) raises :class:`CheckpointReadError` saying so; only a real pickle with disallowed objects raises
  :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_transfer.utils.atomic import atomic_write
from monai_transfer.weights.provenance import Provenance

__all__ = [
    "UnsafeCheckpointError",
    "CheckpointReadError",
    "HashMismatchError",
    "DownloadError",
    "WRAPPER_KEYS",
    "default_cache_dir",
    "sha256_file",
    "check_sha256",
    "hash_prefix_from_filename",
    "atomic_write",
    "read_checkpoint",
    "unwrap_state_dict",
    "save_pretrained",
    "download_checkpoint",
    "copy_into_cache",
]

logger = logging.getLogger(__name__)

# keys under which training frameworks nest the weights, in order of preference
# (Lightning/MONAI/MedicalNet: state_dict; MONAI CheckpointSaver, timm train: model; DINO/iBOT: teacher before student)
WRAPPER_KEYS: tuple[str, ...] = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "teacher",
    "student",
    "module",
    "params",
    "weights",
)

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_FILENAME_HASH = re.compile(r"-([a-f0-9]{8,64})\.")


class UnsafeCheckpointError(RuntimeError):
    """The file holds pickled Python objects that ``torch.load(weights_only=True)`` refuses to unpickle."""


class CheckpointReadError(ValueError):
    """The file is not a checkpoint that can be read: empty, truncated, random bytes or another format."""


class HashMismatchError(RuntimeError):
    """A downloaded or local file does not have the SHA-256 it should have."""


class DownloadError(RuntimeError):
    """Published weights could not be downloaded (no network, a blocked host, a moved file).

    Attributes:
        url: the address tried.
        target: where the file is looked for in the cache (copy a local download there to use it).
        reason: what the network layer said.
    """

    def __init__(self, message: str, url: str = "", target: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.url, self.target, self.reason = url, target, reason


def default_cache_dir() -> Path:
    """``torch.hub.get_dir()/monai_transfer``, read at call time (so ``TORCH_HOME`` changes are honoured)."""
    return Path(torch.hub.get_dir()) / "monai_transfer"


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_expected(expected: str) -> str:
    expected = expected.strip().lower()
    if not _HEX.match(expected) or not 8 <= len(expected) <= 64:
        raise ValueError(
            f"Expected SHA-256 must be 8 to 64 hex digits (a full digest or its prefix), got {expected!r}."
        )
    return expected


def check_sha256(digest: str, expected: str | None, what: str = "file") -> None:
    """Raise ``HashMismatchError`` unless ``digest`` equals ``expected`` or starts with it (8+ hex digits)."""
    if expected is None:
        return
    expected = _normalise_expected(expected)
    if not digest.lower().startswith(expected):
        kind = "SHA-256" if len(expected) == 64 else f"SHA-256 prefix ({len(expected)} hex digits)"
        raise HashMismatchError(f"{what}: {kind} mismatch: expected {expected}, got {digest}.")


def hash_prefix_from_filename(name: str) -> str | None:
    """The hash prefix torchvision-style file names carry (``resnet18-f37072fd.pth`` -> ``f37072fd``), else None."""
    match = _FILENAME_HASH.search(Path(name).name)
    return match.group(1) if match else None


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Read a ``.pt``/``.pth``/``.ckpt`` file with ``weights_only=True``, or a ``.safetensors`` file.

    Returns what the file holds (a state dict, or a wrapper dict around one). A ``.safetensors`` file is returned as
    ``{"state_dict": tensors, "provenance": dict}`` when its metadata carries a provenance record.

    Raises:
        UnsafeCheckpointError: the file holds pickled objects other than tensors and containers (for example a
            whole model saved with ``torch.save(model)``), which would need arbitrary code execution to read.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise _unreadable(path, "the file is empty (an interrupted download or copy?)")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except Exception as err:  # safetensors raises its own SafetensorError (and OSError) for a bad header
            if isinstance(err, FileNotFoundError):
                raise
            raise _unreadable(path, f"not a valid safetensors file ({_first_line(err)})") from None
        out: dict[str, Any] = {"state_dict": tensors}
        if "provenance" in metadata:
            out["provenance"] = Provenance.from_json(metadata["provenance"]).to_dict()
        return out
    with open(path, "rb") as f:
        head = f.read(64)
    kind = _sniff(head)
    if kind is not None:
        raise _unreadable(path, kind)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        raise _unreadable(path, "it ends early (a truncated download or an interrupted save)") from None
    except RuntimeError as err:
        if "unexpected EOF" in str(err) or "might be corrupted" in str(err):
            raise _unreadable(path, "it ends early (a truncated download or an interrupted save)") from None
        if "PytorchStreamReader" not in str(err) and "zip archive" not in str(err):
            raise
        why = f"a zip archive PyTorch cannot read: truncated, corrupt or not written by torch.save ({_first_line(err)})"
        raise _unreadable(path, why) from None
    except pickle.UnpicklingError as err:
        blocked = blocked_global(err)
        if blocked is None:
            # the stream is not a pickle torch.save could have written (an opcode it never emits): corrupt data
            raise _unreadable(
                path, f"its contents are not a valid PyTorch pickle: corrupt or truncated ({_torch_reason(err)})"
            ) from None
        raise UnsafeCheckpointError(
            f"{path} holds pickled Python objects that torch.load(weights_only=True) refuses to unpickle, because "
            f"unpickling can run arbitrary code: it refused the global {blocked}. "
            "This usually means a whole model was saved with torch.save(model) "
            "(TorchXRayVision releases its weights this way) or the checkpoint stores custom classes; a global such "
            "as os.system or subprocess.Popen means the file would run a command when loaded: do not load it. "
            "monai_transfer never loads such files. In an environment you trust, load it with the library that "
            "wrote it and save only the tensors, e.g. torch.save(model.state_dict(), 'weights.pt'), then load "
            "that file. If the extra objects are harmless classes you know (argparse.Namespace in a Lightning "
            "checkpoint's hyper_parameters), allow exactly those: "
            "`with torch.serialization.safe_globals([argparse.Namespace]): load_pretrained(...)`. "
            f"(torch said: {_torch_reason(err)})"
        ) from err


#: torch's weights_only refusals: an unknown global ("Unsupported global: GLOBAL builtins.print was not an allowed
#: global by default") and a global of a blocked module ("Trying to load unsupported GLOBAL posix.system whose module
#: posix is blocked"); the second is what a malicious pickle (os.system, subprocess) gives
_BLOCKED_GLOBAL = re.compile(r"[Uu]nsupported (?:global:\s+)?GLOBAL\s+([\w.]+)")


def blocked_global(err: BaseException) -> str | None:
    """The global (``posix.system``, ``argparse.Namespace``) that ``torch.load(weights_only=True)`` refused in
    ``err``, or ``None`` when the error is not such a refusal (a corrupt stream)."""
    match = _BLOCKED_GLOBAL.search(re.sub(r"\x1b\[[0-9;]*m", "", str(err)))
    return match.group(1) if match else None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0].split(". ")[0][:200] if lines else type(err).__name__


def _unreadable(path: Path, reason: str) -> CheckpointReadError:
    return CheckpointReadError(
        f"{path} is not a readable checkpoint: {reason}. Pass a file written by torch.save (.pt, .pth, .ckpt) or a "
        ".safetensors file; if it was downloaded, download it again."
    )


def _sniff(head: bytes) -> str | None:
    """Why the first bytes of a file cannot start a PyTorch checkpoint, or None when they can.

    torch.save writes a zip archive (``PK\x03\x04``) or, in the legacy format, a pickle (protocol 2+: ``\x80``).
    """
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    known = {
        b"\x1f\x8b": "gzip-compressed data (decompress it first)",
        b"\x89HDF": "an HDF5 file (Keras/TensorFlow weights?), not a PyTorch checkpoint",
        b"\x93NUMPY": "a NumPy .npy array, not a PyTorch checkpoint",
        b"version https://git-lfs": "a Git LFS pointer, not the weights themselves (run 'git lfs pull')",
        b"<!DOCTYPE": "an HTML page (a failed download or a login page?)",
        b"<html": "an HTML page (a failed download or a login page?)",
        b"{": "a text (JSON?) file, not a checkpoint",
    }
    for magic, what in known.items():
        if head.lstrip().lower().startswith(magic.lower()):
            return what
    text = head.decode("utf-8", errors="replace")
    if "\ufffd" not in text[:-3] and all(c.isprintable() or c.isspace() for c in text[:-3]):
        return "a text file, not a checkpoint"
    shown = " ".join(f"{b:02x}" for b in head[:8])
    return f"not a PyTorch zip archive or pickle (it starts with bytes {shown}: random or foreign data)"


def _torch_reason(err: Exception) -> str:
    """The informative line of torch's weights_only error (which global it refused), without terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "unsupported global" in line.lower() or "Unsupported operand" in line:
            return line
    return lines[0] if lines else type(err).__name__


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def unwrap_state_dict(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, list[str]]:
    """Find the state dict inside a checkpoint object.

    Descends through wrapper keys (``WRAPPER_KEYS``: ``state_dict``, ``model``, ``net``, ``teacher`` ...) until a
    mapping of tensors is reached; non-tensor entries beside the tensors (epoch counters, hyper-parameters) are
    ignored.

    Returns:
        ``(state_dict, provenance_dict_or_None, path_of_wrapper_keys)``.
    """
    if isinstance(obj, nn.Module):
        raise TypeError("Pass module.state_dict(), not a module, as the checkpoint.")
    if not isinstance(obj, Mapping):
        raise TypeError(f"A checkpoint must be a mapping of names to tensors (or a wrapper dict), got {type(obj)}.")
    provenance = obj.get("provenance") if isinstance(obj.get("provenance"), Mapping) else None
    path: list[str] = []
    current: Mapping = obj
    while not _is_state_dict(current):
        for key in WRAPPER_KEYS:
            inner = current.get(key)
            if isinstance(inner, Mapping) and any(torch.is_tensor(v) or isinstance(v, Mapping) for v in inner.values()):
                path.append(key)
                current = inner
                if provenance is None and isinstance(current.get("provenance"), Mapping):
                    provenance = current["provenance"]
                break
        else:
            tensors = {k: v for k, v in current.items() if isinstance(k, str) and torch.is_tensor(v)}
            if tensors:
                return tensors, provenance, path
            raise ValueError(
                "Could not find a state dict in the checkpoint: no tensors at the top level and none of the wrapper "
                f"keys {list(WRAPPER_KEYS)}; top-level keys: {list(current)[:20]}"
            )
    return {str(k): v for k, v in current.items()}, provenance, path


def save_pretrained(
    module: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    provenance: Provenance | None = None,
) -> Path:
    """Save weights with their provenance, atomically.

    A ``.safetensors`` path writes a safetensors file whose metadata holds ``{"provenance": <json>}``; any other
    suffix writes ``torch.save({"state_dict": ..., "provenance": {...}})``. ``backbone_name``, ``spatial_dims`` and
    ``in_channels`` of the provenance are filled from the module where empty.

    Args:
        module: a backbone (or any module), or a state dict.
        path: destination file; its folder is created.
        provenance: the record to store (an empty one when None).

    Returns:
        The path written.
    """
    path = Path(path)
    record = provenance if provenance is not None else Provenance()
    if isinstance(module, nn.Module):
        record = record.fill_from_module(module)
        state = module.state_dict()
    else:
        state = dict(module)
    state = {k: v.detach().cpu() for k, v in state.items()}
    with atomic_write(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            # safetensors refuses tensors sharing storage: store contiguous copies
            save_file(
                {k: v.contiguous().clone() for k, v in state.items()},
                str(tmp),
                metadata={"provenance": record.to_json()},
            )
        else:
            torch.save({"state_dict": state, "provenance": record.to_dict()}, tmp)
    return path


def _url_filename(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"Cannot derive a file name from URL {url!r}; pass filename=.")
    return name


def download_checkpoint(
    url: str,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    filename: str | None = None,
    progress: bool = False,
    opener: Callable[[str], Any] | None = None,
    what: str | None = None,
) -> Path:
    """Download ``url`` into the cache (once) and verify its SHA-256.

    Args:
        url: ``https://`` (or ``file://``) address.
        sha256: the full hex digest or a prefix of at least 8 hex digits. When None, the prefix in a
            torchvision-style file name is used (``resnet18-f37072fd.pth``); when there is none either, the file is
            kept but a warning names its digest so that it can be pinned.
        cache_dir: folder for downloaded weights; default ``torch.hub.get_dir()/monai_transfer`` (read now).
        filename: name in the cache; default the last component of the URL path.
        progress: log progress every ~10%.
        opener: replaces ``urllib.request.urlopen`` (for tests and proxies).
        what: how the user named these weights (a source name), for the message when the download fails.

    Returns:
        The cached file.

    Raises:
        DownloadError: the address cannot be reached (offline, blocked, not found); the message names it and the
            cache path where a copy downloaded elsewhere is picked up.
        HashMismatchError: the downloaded (or already cached) file has the wrong hash. A wrong download leaves
            nothing in the cache.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = filename or _url_filename(url)
    expected = sha256 if sha256 is not None else hash_prefix_from_filename(name)
    target = cache / name
    if target.is_file():
        if expected is not None:
            check_sha256(
                sha256_file(target),
                expected,
                what=f"cached file {target} (delete it to download {url} again)",
            )
        return target
    cache.mkdir(parents=True, exist_ok=True)
    open_url = opener if opener is not None else urllib.request.urlopen
    digest = hashlib.sha256()
    logger.info("Downloading %s to %s", url, target)
    try:
        response_cm = open_url(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise _download_error(url, target, err, what) from None
    with atomic_write(target) as tmp:
        with response_cm as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) if hasattr(response, "headers") else 0
            done, next_report = 0, 0.1
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress and total and done / total >= next_report:
                    logger.info("%s: %.0f%%", name, 100 * done / total)
                    next_report += 0.1
        got = digest.hexdigest()
        check_sha256(got, expected, what=f"download of {url}")
    if expected is None:
        logger.warning(
            "No published SHA-256 for %s; the downloaded file has sha256=%s. Pin it (sha256=...) to detect changes.",
            url,
            got,
        )
    return target


def _download_error(url: str, target: Path, err: BaseException, what: str | None) -> DownloadError:
    reason = getattr(err, "reason", None) or err
    if isinstance(err, urllib.error.HTTPError):
        reason = f"HTTP {err.code} {err.reason}"
    name = f"the weights {what!r}" if what else "the weights"
    message = (
        f"Could not download {name} from {url} ({reason}); to use a copy downloaded elsewhere, put it at {target} "
        "(checked against its published sha256 where there is one) or pass the file's path instead "
        "(pretrained='/path/to/file', or the CHECKPOINT argument of 'monai-transfer weights inspect')."
    )
    return DownloadError(message, url=url, target=str(target), reason=str(reason))


def copy_into_cache(src: str | os.PathLike, cache_dir: str | os.PathLike, sha256: str | None = None) -> Path:
    """Copy a local file into a cache folder atomically after checking its hash (used for offline installs)."""
    src = Path(src)
    check_sha256(sha256_file(src), sha256, what=str(src))
    target = Path(cache_dir) / src.name
    with atomic_write(target) as tmp:
        shutil.copyfile(src, tmp)
    return target
