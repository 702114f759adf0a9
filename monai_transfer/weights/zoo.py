"""``monai-zoo:NAME[@VERSION]``: a MONAI model-zoo bundle as a starting point, fetched with ``monai.bundle.download``
from the zoo's current host (the Hugging Face organisation ``MONAI``), its ``models/model.pt`` read.

Bundles are kept in ``<cache>/monai-zoo/<version or "latest">/<NAME>/``; a folder already there is used as it is (delete
it to fetch the latest again). The registered zoo sources (``monai_transfer.weights.sources_zoo``) say which encoder
of which bundle fits which backbone; any other bundle name loads with the ``monai`` adapter (MONAI keys under the
prefix that fits the backbone best).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

from monai_transfer.weights.checkpoint import DownloadError, default_cache_dir

__all__ = ["ZOO_PREFIX", "ZooBundle", "is_zoo_name", "parse_zoo_name", "zoo_bundle_dir", "fetch_zoo", "zoo_version"]

ZOO_PREFIX = "monai-zoo:"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ZooBundle(NamedTuple):
    name: str
    version: str | None


def is_zoo_name(value: object) -> bool:
    return isinstance(value, str) and value.startswith(ZOO_PREFIX)


def parse_zoo_name(value: str) -> ZooBundle:
    """``monai-zoo:NAME[@VERSION]`` -> ``ZooBundle``; ``ValueError`` naming the expected form otherwise."""
    name, _, version = value[len(ZOO_PREFIX) :].partition("@") if is_zoo_name(value) else ("", "", "")
    if not _NAME.match(name) or (version and not _NAME.match(version)):
        raise ValueError(f"{value!r} is not a model-zoo bundle name: write monai-zoo:NAME or monai-zoo:NAME@VERSION.")
    return ZooBundle(name, version or None)


def zoo_bundle_dir(bundle: ZooBundle, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder the bundle is (or will be) in."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / "monai-zoo" / (bundle.version or "latest") / bundle.name


def zoo_version(folder: str | os.PathLike) -> str:
    """The version a downloaded bundle declares in ``configs/metadata.json`` ("" when it declares none)."""
    try:
        return str(json.loads((Path(folder) / "configs" / "metadata.json").read_text()).get("version", ""))
    except (OSError, ValueError):
        return ""


def fetch_zoo(value: str, cache_dir: str | os.PathLike | None = None, what: str | None = None) -> Path:
    """The ``models/model.pt`` of a model-zoo bundle, downloaded once.

    Raises:
        DownloadError: the bundle could not be downloaded (offline, unknown name or version); the message names the
            folder where a copy of the bundle is picked up.
    """
    bundle = parse_zoo_name(value)
    folder = zoo_bundle_dir(bundle, cache_dir)
    weights = folder / "models" / "model.pt"
    if weights.is_file():
        return weights
    from monai.bundle import download

    reason = "the bundle has no models/model.pt"
    try:
        download(
            name=bundle.name,
            version=bundle.version,
            bundle_dir=str(folder.parent),
            source="huggingface_hub",
            repo=f"MONAI/{bundle.name}",
            progress=False,
        )
    except Exception as err:  # huggingface_hub, urllib and MONAI each raise their own errors for a failed fetch
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    if not weights.is_file():
        raise DownloadError(
            f"Could not fetch the model-zoo bundle {what or value!r} from Hugging Face (MONAI/{bundle.name}"
            f"{', revision ' + bundle.version if bundle.version else ''}: {reason}); to use a copy downloaded "
            f"elsewhere, put the bundle folder at {folder} (its models/model.pt is read), or pass the file's path "
            "instead.",
            url=f"https://huggingface.co/MONAI/{bundle.name}",
            target=str(folder),
            reason=reason,
        )
    return weights
