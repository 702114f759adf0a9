"""Classification labels for MONAI Label training: a CSV in the studies folder, or the datastore's label info.

MONAI Label's datastore keeps label *files* (label maps); a class per image has no file. Two places hold it:

* ``<studies>/labels.csv`` (or the file ``--conf class_labels_csv PATH`` names): a header row with an image column
  (``image``, ``id`` or ``file``: the image's id, file name or path) and a class column (``label`` or ``class``: a
  class name of the bundle or its index). Example::

      image,label
      sub-000_T1w.nii.gz,no_lesion
      sub-001_T1w,lesion

* the datastore's info for an image's ``final`` label or for the image itself (``PUT /datastore/updateimageinfo``)
  with a ``label`` or ``class`` key, as an annotation client sets it.

The CSV wins where both name an image.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_transfer.data.case_ids import image_stem as image_id  # MONAI Label's image id is the file's stem

__all__ = ["image_id", "class_index", "read_class_csv", "DEFAULT_CSV"]

DEFAULT_CSV = "labels.csv"
IMAGE_COLUMNS = ("image", "id", "file")
CLASS_COLUMNS = ("label", "class")


def class_index(value: Any, labels: Sequence[str], where: str) -> int:
    """A class name of ``labels`` or an index into it, as the index.

    Raises:
        ValueError: neither; ``where`` says which row or image.
    """
    text = str(value).strip()
    lowered = [x.lower() for x in labels]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    try:
        index = int(text)
    except ValueError:
        index = -1
    if 0 <= index < len(labels) and str(index) == text:
        return index
    raise ValueError(
        f"{where}: class {text!r} is not one of the bundle's classes {list(labels)} (or 0..{len(labels) - 1})"
    )


def _column(header: Sequence[str], names: Sequence[str], path: Path) -> str:
    for name in header:
        if name.strip().lower() in names:
            return name
    raise ValueError(f"{path}: no {'/'.join(names)} column (header: {', '.join(header)})")


def read_class_csv(path: str | os.PathLike, labels: Sequence[str]) -> dict[str, int]:
    """``{image id: class index}`` from a CSV (see the module docstring); ``{}`` when the file does not exist.

    Raises:
        ValueError: no header / columns, an unknown class (row named), or one image given two classes.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty, expected a header row like 'image,label'")
        image_col = _column(reader.fieldnames, IMAGE_COLUMNS, path)
        class_col = _column(reader.fieldnames, CLASS_COLUMNS, path)
        out: dict[str, int] = {}
        for row_number, row in enumerate(reader, start=2):
            name = (row.get(image_col) or "").strip()
            value = (row.get(class_col) or "").strip()
            if not name and not value:
                continue
            where = f"{path}, row {row_number}"
            index = class_index(value, labels, where)
            key = image_id(name)
            if key in out and out[key] != index:
                raise ValueError(f"{where}: image {key!r} has two classes ({labels[out[key]]} and {labels[index]})")
            out[key] = index
    return out


def class_from_info(info: Mapping[str, Any] | None, labels: Sequence[str], where: str) -> int | None:
    """The class an info record (``label`` or ``class`` key) names, or ``None`` when it names none."""
    if not info:
        return None
    for key in CLASS_COLUMNS:
        if key in info and info[key] not in (None, ""):
            return class_index(info[key], labels, where)
    return None
