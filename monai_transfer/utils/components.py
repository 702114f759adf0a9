"""Bundle components built outside a config file: a ``_target_`` dict (or a list of them) built as MONAI's
``ConfigParser`` builds it, so that Python and the rendered bundle configs make the same objects."""

from __future__ import annotations

from typing import Any

__all__ = ["instantiate"]


def instantiate(component: Any) -> Any:
    """Build a bundle component (``_target_`` dict, or a list of them) as MONAI's ``ConfigParser`` does."""
    from monai.bundle import ConfigParser

    parser = ConfigParser({"imports": ["$import torch", "$import monai"], "c": component})
    return parser.get_parsed_content("c", instantiate=True)
