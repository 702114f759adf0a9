"""A self-supervised pretraining bundle: ``train.json`` pretrains an encoder on unlabeled scans and writes it with its
fine-tuning bundle; the method is a config value.

::

    python -m monai.bundle run --config_file configs/train.json --bundle_root . \\
        --dataset_dir /data/scans --datalist /data/scans/datalist.json      # section "unlabeled", or --data_section
    # -> pretrain/encoder.pt (weights + provenance), pretrain/bundle/ (fine-tuning bundle of the encoder)

The layout is the model zoo's, without ``inference.json`` and ``models/model.pt`` (a pretraining bundle does not
predict; the fine-tuning bundle it writes does). ``metadata.json`` marks it with ``monai_transfer.kind =
"pretraining"``, which ``bundle check`` reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.bundle.writer import LOGGING_CONF, BundleExistsError, metadata_head
from monai_transfer.utils.atomic import atomic_write_json, atomic_write_text

__all__ = ["create_pretraining_bundle"]


def create_pretraining_bundle(
    out_dir: str | os.PathLike,
    method: str,
    backbone: str,
    spatial_dims: int,
    modality: str = "mr",
    roi_size: Sequence[int] | None = None,
    epochs: int = 100,
    batch_size: int = 32,
    intensity: Mapping[str, Any] | str | None = None,
    name: str | None = None,
    description: str | None = None,
    version: str = "0.1.0",
    changelog: str = "initial version",
    overwrite: bool = False,
) -> Path:
    """Write a pretraining bundle (``configs/train.json`` from
    ``monai_transfer.bundle.templates.pretrain.pretrain_config``, metadata, README, LICENSE, logging.conf) and return
    its folder.

    Args:
        out_dir: the bundle folder (refused when it exists, unless ``overwrite``).
        method, backbone, spatial_dims, modality, roi_size, epochs, batch_size, intensity: as ``monai-transfer
            pretrain`` takes them; unset values are the method's recommended ones.
        name, description, version, changelog: for the metadata and README.
    """

    from monai_transfer.bundle.templates.pretrain import pretrain_config  # the SSL run, then its fine-tuning bundle
    from monai_transfer.engines.specs.pretrain import PretrainSpec
    from monai_transfer.ssl.bundle_config import resolve_config
    from monai_transfer.ssl.registry import get_method_spec

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleExistsError(f"{out} exists; choose another folder or pass overwrite=True (--overwrite)")
    options = {"roi_size": list(roi_size)} if roi_size else {}
    if intensity is not None:
        options["intensity"] = intensity
    cfg = resolve_config(PretrainSpec(method=method, backbone=backbone, spatial_dims=spatial_dims,
                                      datalist="$@dataset_dir + '/datalist.json'", out_dir=".", modality=modality,
                                      epochs=epochs, batch_size=batch_size, **options))  # fmt: skip
    train = pretrain_config(cfg)
    train = {"bundle_root": ".", "dataset_dir": "$@bundle_root + '/data'", **train}
    train.update(bundle_root=".", output_dir="$@bundle_root + '/pretrain'", datalist="$@dataset_dir + '/datalist.json'")
    spec = get_method_spec(method)
    roi = list(cfg.roi_size or [])
    title = name or f"{spec.name} self-supervised pretraining of a {spatial_dims}D {backbone}"
    desc = description or (
        f"Pretrains a {spatial_dims}D {backbone} with {spec.name} ({spec.paper}) on unlabeled {modality.upper()} "
        f"images, {roi} views, and writes the encoder (pretrain/encoder.pt, with its provenance and preprocessing) "
        "and a fine-tuning bundle for it (pretrain/bundle/)."
    )
    meta = {
        **metadata_head(version, changelog),
        "name": title,
        "task": f"{spatial_dims}D self-supervised pretraining",
        "description": desc,
        "authors": "monai_transfer",
        "copyright": "Copyright (c) the bundle's authors",
        "data_source": "the user's unlabeled images (a datalist section, default 'unlabeled')",
        "data_type": "nibabel",
        "image_classes": f"1 channel {modality.upper()} image; intensity: {train['intensity']}",
        "eval_metrics": {},
        "intended_use": "Research only; not for clinical use.",
        "references": [spec.paper],
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": modality.upper(),
                                 "num_channels": 1, "spatial_shape": roi, "dtype": "float32", "value_range": [],
                                 "is_patch_data": True, "channel_def": {"0": "image"}}},  # fmt: skip
            "outputs": {"pred": {"type": "tensor", "format": "embedding", "num_channels": 1, "spatial_shape": [],
                                 "dtype": "float32", "value_range": [], "is_patch_data": False,
                                 "channel_def": {"0": "pooled encoder features"}}},  # fmt: skip
        },
        "monai_transfer": {"kind": "pretraining", "method": spec.name, "backbone": backbone},
    }
    readme = _readme(title, desc, spec.name, method, spatial_dims)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for sub in ("configs", "docs"):
            (tmp / sub).mkdir()
        atomic_write_json(tmp / "configs" / "train.json", train, indent=4)
        atomic_write_json(tmp / "configs" / "metadata.json", meta, indent=4)
        atomic_write_text(tmp / "configs" / "logging.conf", LOGGING_CONF)
        atomic_write_text(tmp / "docs" / "README.md", readme)
        atomic_write_text(tmp / "LICENSE", "Configs and documentation: Apache License, Version 2.0 "
                          "(https://www.apache.org/licenses/LICENSE-2.0).\nThe encoder it writes is yours; the data "
                          "you pretrain on keeps its own terms.\n")  # fmt: skip
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _readme(title: str, desc: str, method: str, method_id: str, spatial_dims: int) -> str:
    return f"""# {title}

{desc}

## Run

Data: a datalist JSON with an `unlabeled` section (MSD layout: `{{"unlabeled": [{{"image": "..."}}]}}`) at
`data/datalist.json`, or give its place:

```bash
python -m monai.bundle run --config_file configs/train.json --bundle_root . \\
    --dataset_dir /data/scans --datalist /data/scans/datalist.json --epochs 100 --batch_size 32
```

Every value of `configs/train.json` can be changed the same way (`--lr 1e-3`, `--intensity "{{'name': 'minmax'}}"`,
`--data_section training`). The same run from the package's command line, resumable after a kill:

```bash
monai-transfer pretrain --config configs/train.json --out runs/{method_id} --set datalist=/data/scans/datalist.json
```

Before training, a sample of views is checked (a mapping that collapses the images stops the run with the mapping
named); a contrastive loss that stays at its chance value is flagged. The method is a value: another bundle with
`create_pretraining_bundle(method=...)` (`monai_transfer.bundle`) or `scripts/make_bundles.py`.

## Outputs (under `pretrain/`)

`encoder.pt` (weights with provenance: method, data, modality, and the intensity mapping as data, which fine-tuning
reuses), `bundle/` (a fine-tuning bundle of the encoder: `configs/train.json`, `inference.json`...), `result.json`,
`loss.png`, `checkpoints/last.pt`, TensorBoard logs.
"""
