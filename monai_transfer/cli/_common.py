"""Helpers shared by the command modules: tables and KEY=VALUE parsing."""

from __future__ import annotations

import json
from collections.abc import Sequence


def _table(rows: list[dict]) -> str:
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items()).rstrip(), "  ".join("-" * w for w in widths.values())]
    lines += ["  ".join(str(r[k]).ljust(w) for k, w in widths.items()).rstrip() for r in rows]
    return "\n".join(lines)


def _parse_kv(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs with JSON values where they parse (``decay=0.75``, ``k=2``), else strings."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
