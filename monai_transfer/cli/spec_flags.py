"""Command-line flags derived from a run spec's fields, and the spec built back from the parsed flags.

Each field with a flag becomes ``--<name-with-dashes>`` (or the flag its declaration names) with the field's type,
choices and help; booleans become ``--x``/``--no-x`` pairs (``progress`` is ``--quiet``), ``KEY=VALUE`` fields
(``nargs="*"``) become mappings. Every flag defaults to "not given", so the spec's own default applies and a flag
the user did not type never overrides a config.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from monai_transfer.cli._common import _parse_kv
from monai_transfer.engines.specs import TrainingRunSpec, spec_fields

__all__ = ["add_spec_arguments", "given_settings"]


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _scalar(hint: Any) -> Any:
    """The argparse ``type`` of a hint: the first of str, int, float it allows (a list's item type for lists)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if str in options and any(typing.get_origin(o) in (list, tuple) for o in options):
        return _number_or_text  # a word or a list of numbers ("--class-weights balanced", "--class-weights 1 3")
    for option in options:
        if typing.get_origin(option) in (list, tuple):
            return _scalar(typing.get_args(option)[0])
    for kind in (str, int, float):
        if kind in options:
            return kind
    return str


def _number_or_text(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _default_text(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else None
    text = f.metadata.get("help", "")
    if default in (None, "", {}, []) or "default" in text.lower() or isinstance(default, bool):
        return text
    return f"{text} (default: {default})"


def add_spec_arguments(
    parser: argparse.ArgumentParser, spec_class: type, exclude: Sequence[str] = (), required: Sequence[str] = ()
) -> None:
    """Add a flag for every field of ``spec_class`` that has one (``exclude``: fields the command words its own
    way; ``required``: flags the command cannot run without)."""
    hints = typing.get_type_hints(spec_class)
    shared = {f.name for f in dataclasses.fields(TrainingRunSpec)}
    flagged = spec_fields(spec_class, cli=True)  # the kind's own settings first, then those every run shares
    for f in [f for f in flagged if f.name not in shared] + [f for f in flagged if f.name in shared]:
        if f.name in exclude:
            continue
        meta, flag, hint = f.metadata, _flag(f), hints[f.name]
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": _default_text(f)}
        if f.name in required:
            kwargs["required"] = True
        if meta.get("positional"):
            parser.add_argument(f.name, type=_scalar(hint), help=_default_text(f), nargs=meta.get("nargs"))
            continue
        if hint is bool and flag == "--quiet":  # the command shows a progress bar unless told not to
            kwargs.update(action="store_const", const=False, default=None if f.default else True)
        elif hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:
            kwargs["type"] = str if meta.get("nargs") == "*" else _scalar(hint)
            for key in ("choices", "nargs", "metavar"):  # (a tuple metavar names each of nargs=2 values)
                if meta.get(key) is not None:
                    kwargs[key] = list(meta[key]) if key == "choices" else meta[key]
        parser.add_argument(flag, **kwargs)


def given_settings(args: argparse.Namespace, spec_class: type, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The fields whose flags were given (``KEY=VALUE`` lists as mappings); the spec's defaults fill the rest."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(spec_class)
    for f in spec_fields(spec_class, cli=True):
        value = getattr(args, f.name, None)
        if f.name in exclude or value is None:
            continue
        if f.metadata.get("nargs") == "*":
            value = _parse_kv(value)
        elif _scalar(hints[f.name]) is _number_or_text and len(value) == 1 and isinstance(value[0], str):
            value = value[0]  # the word of a word-or-numbers field ("balanced")
        out[f.name] = value
    return out
