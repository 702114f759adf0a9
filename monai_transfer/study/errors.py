"""The errors a study spec raises: a problem named with its place, and a path of the spec that does not exist."""

from __future__ import annotations

__all__ = ["SpecError", "MissingDataError"]


class SpecError(ValueError):
    """A spec problem, named with its place (``targets[0].data: ...``)."""


class MissingDataError(SpecError):
    """A path of the spec that does not exist (the spec's ``data_help`` says how to get the data)."""
