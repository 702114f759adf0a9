"""The provenance of a starting point, whatever form it is given in (a source name, a checkpoint file, nothing)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["starting_provenance"]


def starting_provenance(pretrained: str | os.PathLike | None, backbone: str | None = None) -> dict[str, Any]:
    """The provenance record (a dict; ``{}`` when unknown) of ``pretrained``, read without downloading anything.

    A published source gives its registered provenance (for ``backbone``'s file when given); a checkpoint file the
    provenance stored in it (``encoder.pt`` of ``pretrain``); ``None`` (random initialisation) and a file without one
    give ``{}``. A MONAI bundle folder gives the provenance its metadata records.
    """
    from monai_transfer.weights.provenance import Provenance
    from monai_transfer.weights.sources import get_source, is_source_name

    if pretrained is None:
        return {}
    if is_source_name(pretrained):
        source = get_source(str(pretrained))
        if backbone is not None and backbone in source.files:
            return asdict(source.provenance_for(backbone))
        return asdict(source.provenance)
    path = Path(pretrained)
    if path.is_dir():
        import json

        meta = path / "configs" / "metadata.json"
        data = json.loads(meta.read_text()) if meta.is_file() else {}
        return dict((data.get("monai_transfer") or {}).get("provenance") or {})
    if not path.is_file():
        return {}
    from monai_transfer.weights.checkpoint import load_checkpoint

    _, prov, _, _ = load_checkpoint(path)
    if isinstance(prov, Provenance):
        return asdict(prov)
    return dict(prov) if isinstance(prov, Mapping) else {}
