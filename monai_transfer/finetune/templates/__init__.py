"""JSON templates of the fine-tuning configs (package data), rendered by ``monai_transfer.finetune.config``."""
