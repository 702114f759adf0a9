"""Bundle configs rendered from JSON templates: the static part of a config is package data, Python fills values only.

A template is a complete MONAI bundle config (``_target_`` components, ``@`` references), kept beside the code of the
layer whose components it names (``monai_transfer/finetune/templates/train.json`` names fine-tuning and engines
components, never a layer above), as the MONAI model zoo keeps its configs. Rendering is three steps, each by config
id, never by list position:

1. :func:`load_template`: a fresh copy of the template (key order kept, so a written config is byte-stable);
2. :func:`render`: set values by id (``"train#trainer#max_epochs": 5``); an id the template lacks is an error naming
   the closest ids, so a renamed id fails loudly instead of adding a stray key;
3. drop the optional parts a run does not use (``drop=("threshold", "validate#best_checkpoint#decision")``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from monai_transfer.engines.workflow import OverrideError, apply_overrides

__all__ = ["load_template", "render", "drop_ids"]


def load_template(package: str, name: str) -> dict[str, Any]:
    """The template ``name`` (a JSON file of ``package``: ``"monai_transfer.finetune.templates"``) as a new dict."""
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def drop_ids(config: dict[str, Any], ids: Iterable[str]) -> dict[str, Any]:
    """Remove each ``#``-separated id (a key of a dict) from ``config`` in place, and return it.

    Raises:
        OverrideError: an id the config does not hold (a template and its renderer disagree).
    """
    for cid in ids:
        *parents, leaf = cid.split("#")
        node: Any = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise OverrideError(f"cannot drop {cid!r}: the config holds no such id")
        del node[leaf]
    return config


def render(
    package: str, name: str, values: Mapping[str, Any] | None = None, drop: Iterable[str] = ()
) -> dict[str, Any]:
    """The template ``name`` of ``package`` with ``values`` set by id and the ids in ``drop`` removed.

    Values are set before the drops, so a value may be set inside a part that is then dropped (one code path for every
    variant of a config).
    """
    config = apply_overrides(load_template(package, name), dict(values or {}))
    return drop_ids(config, drop)
