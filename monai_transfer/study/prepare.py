"""Data a spec asks the study to make before it runs (``prepare: {demo: {...}}``: the package's demo data).

The demo data is written once to the data root (``--data-root``, else ``<out>/data_root``) and reused while its
manifest records the same parameters, so a re-run (or a resumed study) does not regenerate it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai_transfer.study.spec import read_spec_file

__all__ = ["prepare_data"]


def prepare_data(spec: str | os.PathLike | None, preset: str | None, data_root: str | os.PathLike | None,
                 out: str | os.PathLike) -> str | None:  # fmt: skip
    """Make what the spec's ``prepare`` section asks for; returns the data root the spec should use (None: the
    spec's own)."""
    prepare = read_spec_file(spec, preset)[0].get("prepare") or {}
    if not prepare:
        return os.fspath(data_root) if data_root is not None else None
    root = Path(data_root) if data_root is not None else Path(out) / "data_root"
    unknown = sorted(set(prepare) - {"demo"})
    if unknown:
        from monai_transfer.study.spec import SpecError

        raise SpecError(f"prepare: unknown item(s) {unknown}; known: demo")
    params = dict(prepare["demo"] or {})
    manifest = root / "demo_manifest.json"
    if manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("params", {})
        if all(recorded.get(k) == v for k, v in params.items()):
            return str(root)
    from monai_transfer.data import make_demo_data

    make_demo_data(root, progress=True, **params)
    return str(root)
