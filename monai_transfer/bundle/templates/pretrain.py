"""The pretraining config with the step that writes the encoder's fine-tuning bundle.

The SSL layer renders a pretraining run's config (:func:`monai_transfer.ssl.bundle_config.pretrain_config`: train,
then publish ``encoder.pt``) and names nothing above itself. Writing a fine-tuning bundle of the published encoder is
this layer's work, so the step is added here, by the caller that wants the bundle: :func:`pretrain_config` is the SSL
config plus that step (the command line's ``pretrain`` and the pretraining bundles run it), and
:func:`finetune_bundle` is the step, the last of its ``run`` list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_transfer.engines.specs.pretrain import PretrainSpec
from monai_transfer.ssl.bundle_config import CONFIG_NAME, is_bundle_config
from monai_transfer.ssl.bundle_config import pretrain_config as ssl_pretrain_config

__all__ = ["CONFIG_NAME", "pretrain_config", "with_finetune_bundle", "is_bundle_config", "finetune_bundle"]

logger = logging.getLogger("monai_transfer.ssl")

#: the config's import and ``run`` step that write the fine-tuning bundle (``finetune_bundle``'s arguments)
_IMPORT = "$import monai_transfer.bundle.templates.pretrain"
_STEP = "$monai_transfer.bundle.templates.pretrain.finetune_bundle(@train#publish, @finetune_bundle)"


def with_finetune_bundle(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the pretraining ``config`` whose last ``run`` step writes the encoder's fine-tuning bundle
    (``<out>/bundle/``, from the config's ``finetune_bundle`` arguments; ``null`` there writes none)."""
    out = dict(config)
    out["imports"] = [*config.get("imports", []), *([] if _IMPORT in config.get("imports", []) else [_IMPORT])]
    out["run"] = [*config.get("run", []), *([] if _STEP in config.get("run", []) else [_STEP])]
    return out


def pretrain_config(config: PretrainSpec) -> dict[str, Any]:
    """The pretraining run's config (:func:`monai_transfer.ssl.bundle_config.pretrain_config`) that also writes the
    encoder's fine-tuning bundle."""
    return with_finetune_bundle(ssl_pretrain_config(config))


def finetune_bundle(publisher: Any, arguments: Mapping[str, Any] | None) -> str | None:
    """Write ``<out>/bundle/``, a fine-tuning bundle starting from the published encoder (rank 0), and add it to the
    run's ``result.json``. ``arguments`` are ``create_bundle``'s (``null`` in the config: no bundle).

    A bundle that cannot be written (a backbone without a segmentation decoder...) is a warning in the log and in
    ``result.json``: the encoder, the run's product, is already saved.
    """
    from monai_transfer.bundle.writer import create_bundle
    from monai_transfer.utils.atomic import atomic_write_json
    from monai_transfer.utils.distributed import is_main_process

    result = getattr(publisher, "result", None)
    if not arguments or not result or not is_main_process():
        return None
    out = Path(result["encoder"]).parent / "bundle"
    try:
        path: str | None = str(create_bundle(out, pretrained=result["encoder"], overwrite=True, **dict(arguments)))
    except Exception as e:  # noqa: BLE001 - the encoder is written; the bundle is a convenience on top
        path = None
        result.setdefault("warnings", []).append(f"no fine-tuning bundle written: {type(e).__name__}: {e}")
        logger.warning("no fine-tuning bundle written for %s: %s", result["encoder"], e)
    result["bundle"] = path
    atomic_write_json(Path(result["encoder"]).parent / "result.json", result)
    return path
