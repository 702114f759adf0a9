"""JSON templates of the pretraining config (package data), rendered by ``monai_transfer.ssl.bundle_config``."""
