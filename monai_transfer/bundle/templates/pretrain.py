"""The pretraining bundle config beside the other bundle templates, and the step that writes its fine-tuning bundle.

The config is built in the SSL layer (:func:`monai_transfer.ssl.bundle_config.pretrain_config`, run by
:func:`monai_transfer.ssl.pretrain`) and re-exported here; :func:`finetune_bundle` is the last step of its ``run``
list: it writes ``<out>/bundle/``, a fine-tuning bundle starting from the encoder the run published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_transfer.ssl.bundle_config import CONFIG_NAME, is_bundle_config, pretrain_config

__all__ = ["CONFIG_NAME", "pretrain_config", "is_bundle_config", "finetune_bundle"]

logger = logging.getLogger("monai_transfer.ssl")


def finetune_bundle(publisher: Any, arguments: Mapping[str, Any] | None) -> str | None:
    """Write ``<out>/bundle/``, a fine-tuning bundle starting from the published encoder (rank 0), and add it to the
    run's ``result.json``. ``arguments`` are ``create_bundle``'s (``null`` in the config: no bundle).

    A bundle that cannot be written (a backbone without a segmentation decoder...) is a warning in the log and in
    ``result.json``: the encoder, the run's product, is already saved.
    """
    from monai_transfer.utils.atomic import atomic_write_json
    from monai_transfer.utils.distributed import is_main_process

    result = getattr(publisher, "result", None)
    if not arguments or not result or not is_main_process():
        return None
    out = Path(result["encoder"]).parent / "bundle"
    try:
        from monai_transfer.bundle import create_bundle

        path: str | None = str(create_bundle(out, pretrained=result["encoder"], overwrite=True, **dict(arguments)))
    except Exception as e:  # noqa: BLE001 - the encoder is written; the bundle is a convenience on top
        path = None
        result.setdefault("warnings", []).append(f"no fine-tuning bundle written: {type(e).__name__}: {e}")
        logger.warning("no fine-tuning bundle written for %s: %s", result["encoder"], e)
    result["bundle"] = path
    atomic_write_json(Path(result["encoder"]).parent / "result.json", result)
    return path
