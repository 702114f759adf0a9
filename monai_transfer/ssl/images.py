"""The unlabeled images of a pretraining run (a datalist section) and their intensity transforms."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PretrainData", "load_images", "intensity_transforms"]


@dataclass
class PretrainData:
    """The unlabeled images of a run: ``items`` (``{"image": path}`` only), the ``section`` they came from and the
    datalist's file name (no folder: folder names can carry patient or site names)."""

    items: list[dict[str, Any]]
    section: str
    source: str
    datalist: str = field(default="", repr=False)

    def __len__(self) -> int:
        return len(self.items)


def load_images(datalist: str | os.PathLike, section: str | None = None) -> PretrainData:
    """The images of a datalist section: ``section``, or ``unlabeled`` when the datalist has it, else ``training``.

    Raises:
        FileNotFoundError: the datalist is missing.
        DatalistError: the section is missing (the sections present are named) or empty (said so), or an entry is
            malformed or points at a missing file (named).
    """
    from monai_transfer.data.datalist import DatalistError, load_datalist, load_datalist_file

    path = os.fspath(datalist)
    sections = load_datalist_file(path)
    present = [k for k, v in sections.items() if isinstance(v, list)]
    if section is None:
        section = "unlabeled" if "unlabeled" in sections else "training"
        if section not in sections:
            raise DatalistError(
                f"{path}: no section 'unlabeled' or 'training' to pretrain on; sections present: {present} "
                f"(choose one with --section)"
            )
    elif section not in sections:
        raise DatalistError(f"{path}: no section {section!r}; sections present: {present}")
    if not sections[section]:
        raise DatalistError(f"{path}: section {section!r} is empty (0 images); nothing to pretrain on")
    rows = load_datalist(path, key=section, required_keys=("image",))
    # only the image travels: labels or IDs in the datalist are not needed and must not reach logs
    return PretrainData([{"image": r["image"]} for r in rows], section, os.path.basename(path), datalist=path)


def intensity_transforms(spec: Mapping[str, Any] | None, keys: str = "image", in_channels: int = 1) -> list[Any]:
    """The transforms of an intensity spec (``monai_transfer.transforms.preprocessing``), instantiated."""
    from monai.bundle import ConfigParser

    from monai_transfer.transforms.preprocessing import intensity_components

    return list(ConfigParser({"t": intensity_components(spec, keys, in_channels)}).get_parsed_content("t"))
