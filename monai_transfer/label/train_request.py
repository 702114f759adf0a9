"""A MONAI Label training request's settings, read as the fields of the fine-tuning spec they are.

MONAI Label's client offers a bundle's training options in a panel and sends what the user set with the request
(``max_epochs``, and any option the task's ``config()`` lists). For our bundles these are the fields of
:class:`~monai_transfer.engines.specs.FinetuneSpec` that a bundle config holds (``lr``, ``batch_size``, ``seed``...):
offered with the bundle's own values, checked as a run checks them (a bad value is named before anything trains, not
found at the first optimizer step) and set at the config id the field declares. Does not import ``monailabel``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from monai_transfer.engines import specs
from monai_transfer.engines.specs import check_values, value_ids
from monai_transfer.engines.workflow import parse_overrides

__all__ = ["REQUEST_NAMES", "request_fields", "train_options", "request_overrides"]

#: request key -> spec field where MONAI Label's own name differs (its panel's ``max_epochs`` is ``epochs``)
REQUEST_NAMES = {"max_epochs": "epochs"}

#: fields a request never sets: MONAI Label always retrains in the bundle's folder, on the datastore's whole labels
_FIXED = ("resume", "label_fraction")


def request_fields() -> dict[str, str]:
    """Request key -> spec field, for every field with a config id a request may set."""
    cls = specs.spec_class("finetune")
    to_key = {field: key for key, field in REQUEST_NAMES.items()}
    return {to_key.get(name, name): name for name in value_ids(cls) if name not in _FIXED}


def _config_value(config: Mapping[str, Any], cid: str) -> Any:
    node: Any = config
    for part in cid.split("#"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def train_options(train_config: Mapping[str, Any]) -> dict[str, Any]:
    """The training panel's options: each field a request may set, with the bundle's ``train.json`` value (the spec's
    default where the config holds an expression); a field whose value is ``None`` (``patience``: off) is not offered
    but may still be sent."""
    cls = specs.spec_class("finetune")
    ids, defaults = value_ids(cls), {f.name: f.default for f in dataclasses.fields(cls)}
    out = {}
    for key, name in request_fields().items():
        value = _config_value(train_config, ids[name])
        value = defaults[name] if value is None or (isinstance(value, str) and value[:1] in "$@%") else value
        if value is not None:
            out[key] = value
    return out


def request_overrides(request: Mapping[str, Any]) -> dict[str, Any]:
    """The config ids a request's settings set, each value checked as its spec field.

    A value typed as text in the client (``"1e-4"``) is read as ``--set`` reads it. Keys that are not spec fields
    (MONAI Label's ``device``, ``val_split``, ``model``...) are left to MONAI Label.

    Raises:
        SpecFieldError: a bad value, named with its request key (``request.lr: must be >= 0.0, got -1.0``).
    """
    fields = request_fields()
    given = {key: request[key] for key in fields if key in request}
    parsed = parse_overrides([f"{k}={v}" for k, v in given.items() if isinstance(v, str)])
    values = {fields[k]: parsed.get(k, v) for k, v in given.items()}
    cls = specs.spec_class("finetune")
    to_key = {field: key for key, field in fields.items()}
    try:
        checked = check_values(cls, values, "", study=False)
    except specs.SpecFieldError as err:  # named as the client sent it
        field, _, rest = str(err).partition(":")
        raise specs.SpecFieldError(f"request.{to_key.get(field, field)}:{rest}") from None
    ids = value_ids(cls)
    return {ids[name]: value for name, value in checked.items()}
