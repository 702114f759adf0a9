"""Self-supervised pretraining: method specs (views + heads + loss + teacher) and the SSL trainer.

Importing this package is cheap: methods and the trainer are imported when used.
"""

from __future__ import annotations

from monai_transfer.ssl.base import MissingViewError, SSLMethod, ema_update
from monai_transfer.ssl.registry import (
    MethodSpec,
    check_method_backbone,
    create_method,
    get_method_spec,
    list_methods,
    register_method,
)

__all__ = [
    "MethodSpec",
    "MissingViewError",
    "SSLMethod",
    "check_method_backbone",
    "create_method",
    "ema_update",
    "get_method_spec",
    "list_methods",
    "register_method",
]
