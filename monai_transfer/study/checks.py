"""A study's targets checked before anything runs: every image readable, finite and of the target's dimensions, every
classification label one of the target's classes, each named with the user's own datalist (never a cell's generated
``seed0.json``).

Without it a NaN image or a bad label surfaced in the first cell that read it, after in-study pretraining and
transferability estimates had run, and named the cell's datalist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monai_transfer.study.spec import SpecError, StudySpec, Target
from monai_transfer.study.targets import SECTIONS, target_sections

__all__ = ["check_target_labels", "check_target_images"]


def check_target_labels(target: Target, sections: Mapping[str, Any]) -> None:
    """Every classification label of a target is one of its declared classes (cheap: no file is read); called where
    the cells' data is written (:func:`monai_transfer.study.cells.write_cell_data`).

    Args:
        target: the spec's target (its ``data`` is the file or folder the user gave).
        sections: :func:`monai_transfer.study.targets.target_sections` of it (absolute paths, ``labels``).

    Raises:
        SpecError: the first bad label, in one sentence naming the target, the user's datalist, the section and case.
    """
    from monai_transfer.finetune.cases import check_class_labels

    if target.task != "classification":
        return
    declared = sections.get("labels") if isinstance(sections.get("labels"), Mapping) else None
    for section in SECTIONS:
        try:
            check_class_labels(list(sections.get(section) or []), len(declared) if declared else None,
                               _where(target, section), declared)  # fmt: skip
        except ValueError as e:
            raise SpecError(str(e)) from None


def check_target_images(spec: StudySpec) -> int:
    """Read every image (and label map) of every target, with the checks each run applies when it loads them; called
    by :func:`monai_transfer.study.run_study` before any pretraining or cell (``study plan`` reads no image).

    Returns:
        The number of cases checked.

    Raises:
        SpecError: the first unreadable, non-finite or wrongly shaped file, in one sentence naming the target, the
            user's datalist and the file.
    """
    from monai_transfer.transforms.checks import check_image_files

    n = 0
    for target in spec.targets:
        sections = target_sections(target)
        keys = ("image", "label") if target.task == "segmentation" else ("image",)
        for section in SECTIONS:
            try:
                n += check_image_files(list(sections.get(section) or []), keys, target.spatial_dims,
                                       where=_where(target, section))  # fmt: skip
            except ValueError as e:
                raise SpecError(str(e)) from None
    return n


def _where(target: Target, section: str) -> str:
    return f"target {target.name!r} ({target.data}) [{section}]"
