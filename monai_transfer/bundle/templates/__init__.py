"""Bundle configs as dicts in MONAI's model-zoo layout: fine-tuning (``train.json``), evaluation and inference."""

from __future__ import annotations

from monai_transfer.bundle.templates.finetune import evaluate_config, finetune_config, inference_config

__all__ = ["finetune_config", "evaluate_config", "inference_config"]
