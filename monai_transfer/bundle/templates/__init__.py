"""Bundle configs as dicts in MONAI's model-zoo layout: fine-tuning (``train.json``), evaluation and inference.

The static part of each config is a JSON template (package data: ``inference.json``, ``multi_gpu_parts.json``,
``metadata.json``, ``logging.conf`` here; ``train.json`` and ``evaluate.json`` in ``monai_transfer.finetune.templates``;
``pretrain.json`` in ``monai_transfer.ssl.templates``), which Python only fills
(``monai_transfer.engines.templates.render``: values set by id, optional parts dropped or added by name).
"""

from __future__ import annotations

from monai_transfer.bundle.templates.finetune import evaluate_config, finetune_config, inference_config

__all__ = ["finetune_config", "evaluate_config", "inference_config"]
