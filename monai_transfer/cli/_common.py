"""Helpers shared by the command modules: tables, KEY=VALUE parsing, the help formatter, the noise filter for MONAI's
optional-decoder messages, and the checks that turn a bad fine-tuning checkpoint into one named error."""

from __future__ import annotations

import argparse
import json
import logging
import os
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from typing import Any


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


# ----------------------------------------------------------------------------------------------------------- help


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` that shows a default only where it tells the reader something.

    No ``(default: None)`` on required options or options without a default, no ``(default: False)`` on flags, and no
    second default where the help text already states one.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or getattr(action, "required", False)
            or not action.option_strings
            or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            or default == []
        ):
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


class ParagraphHelpFormatter(HelpFormatter):
    """The house formatter (defaults shown where they help) that wraps each paragraph of a description and keeps
    paragraphs holding line breaks (the examples) as they are written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(
            p if "\n" in p else textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent)
            for p in paragraphs
        )


def help_by_default(parser: argparse.ArgumentParser) -> None:
    """A command group run without a subcommand prints its help and exits 0."""
    parser.set_defaults(func=lambda _args: (parser.print_help(), 0)[1])


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield sub
                yield from _subparsers(sub)


def finish_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every command the same :class:`HelpFormatter`, and each option without help text its default.

    Called once on the whole parser tree by ``build_parser``, so that every command module gets it.
    """
    for sub in _subparsers(parser):
        if sub.formatter_class in (argparse.HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
            sub.formatter_class = HelpFormatter
        for action in sub._actions:
            if action.help is None and action.option_strings and action.default not in (None, argparse.SUPPRESS):
                action.help = "(default: %(default)s)"
    return parser


# ------------------------------------------------------------------------------------------------------ log noise

#: MONAI builds its optional nvImageCodec DICOM reader for every ``LoadImage`` and says each time that the codec is
#: missing (a logging record and a ``UserWarning``): dozens of identical lines per run on a machine without it.
NVIMGCODEC_LOGGER = "monai.data.nvimgcodec_pydicom_plugin"
NVIMGCODEC_LOG = "nvImageCodec is not available"
NVIMGCODEC_WARNING = r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register"


class _OnceFilter(logging.Filter):
    """Lets the first record whose message starts with ``prefix`` through, drops the repeats; passes all others."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def quiet_optional_decoder_messages() -> None:
    """Show MONAI's "nvImageCodec is not available" at most once per process and drop the ``UserWarning`` that repeats
    it; every other record and warning passes. Installed by the command's entry point (idempotent), never at import
    time of the library."""
    log = logging.getLogger(NVIMGCODEC_LOGGER)
    if not any(isinstance(f, _OnceFilter) for f in log.filters):
        log.addFilter(_OnceFilter(NVIMGCODEC_LOG))
    warnings.filterwarnings("ignore", message=NVIMGCODEC_WARNING, category=UserWarning)


# ------------------------------------------------------------------------------------------------ checkpoints


#: where a fine-tuning run keeps its best weights: the run-folder layout (a bundle's), then the earlier single file
RUN_WEIGHTS = ("models/model.pt", "best_model.pt")


def run_weights_file(checkpoint: str | os.PathLike) -> str | None:
    """The weights file a ``finetune`` checkpoint argument names: the file itself, or the run folder's weights file;
    None for a folder without one (``evaluate`` then says what the folder lacks)."""
    path = os.fspath(checkpoint)
    if os.path.isdir(path):
        found = [os.path.join(path, name) for name in RUN_WEIGHTS if os.path.isfile(os.path.join(path, name))]
        return found[0] if found else None
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return path


def check_readable_weights(checkpoint: str | os.PathLike) -> str | None:
    """Read a fine-tuning run's weights file once, safely, so that a file that is not a checkpoint at all is named in
    one line before any network is built. What the file must hold (and whether it fits its config) is ``evaluate``'s
    to check; its errors name the file too.

    Returns:
        The weights file (None for a folder without one).

    Raises:
        FileNotFoundError: no such file.
        CheckpointReadError: the file is not a readable PyTorch checkpoint (random bytes, truncated, empty, gzip...).
        UnsafeCheckpointError: it holds pickled objects that ``weights_only`` refuses.
    """
    from monai_transfer.weights import read_checkpoint

    path = run_weights_file(checkpoint)
    if path is not None:
        read_checkpoint(path)
    return path


def state_dict_mismatch(path: str, err: BaseException) -> ValueError | None:
    """A one-line ``ValueError`` for torch's multi-line "Error(s) in loading state_dict" ``RuntimeError``, else None."""
    text = str(err)
    if "Error(s) in loading state_dict" not in text:
        return None
    detail = " ".join(line.strip() for line in text.splitlines()[1:] if line.strip())
    detail = detail if len(detail) <= 300 else detail[:297] + "..."
    return ValueError(
        f"{path}: its weights do not fit the network its config describes (edited or mixed-up checkpoint): {detail}"
    )


def load_errors(path: str) -> Any:
    """A context manager that turns torch's state-dict mismatch into :func:`state_dict_mismatch`'s one line."""
    from contextlib import contextmanager

    @contextmanager
    def _ctx() -> Iterator[None]:
        try:
            yield
        except RuntimeError as err:
            named = state_dict_mismatch(path, err)
            if named is None:
                raise
            raise named from None

    return _ctx()
