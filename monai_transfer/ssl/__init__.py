"""Self-supervised pretraining: method specs (views + heads + loss + teacher) and the SSL trainer.

Importing this package is cheap: methods, views and the trainer are imported when used
(``monai_transfer.ssl.views.make_views``, ``monai_transfer.ssl.trainer.SSLTrainer``). A pretraining run
(:func:`pretrain`) is a MONAI bundle config (``monai_transfer.ssl.bundle_config.pretrain_config``) whose parts live in
one module per purpose: :mod:`~monai_transfer.ssl.build` (device, backbone, method), :mod:`~monai_transfer.ssl.images`
(the unlabeled images), :mod:`~monai_transfer.ssl.checks` (before training), :mod:`~monai_transfer.ssl.handlers`,
:mod:`~monai_transfer.ssl.resume`, :mod:`~monai_transfer.ssl.publish` and :mod:`~monai_transfer.ssl.plots`.
"""

from __future__ import annotations

from monai_transfer.engines.specs.pretrain import PretrainSpec, load_pretrain_spec
from monai_transfer.ssl.base import MissingViewError, SSLMethod, ema_update
from monai_transfer.ssl.registry import (
    MethodSpec,
    check_method_backbone,
    create_method,
    get_method_spec,
    list_methods,
    register_method,
)
from monai_transfer.ssl.run import pretrain, resolve_config

__all__ = [
    "PretrainSpec",
    "load_pretrain_spec",
    "pretrain",
    "resolve_config",
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
