"""A study's cells and the data each one trains on.

A cell is (target, challenge, starting point, backbone, strategy, seed). The data of a cell depends only on
(target, challenge, seed): one datalist file per such triple is written before anything trains, and every starting
point, backbone and strategy of that triple reads the same file. That is what makes comparisons between starting points
paired (same label subset, same split, same seed).

Challenges on the target's ``training`` section (validation and test stay as published):
* ``label_fraction f``: the nested, class-stratified, patient-level subset of :func:`monai_transfer.data.label_fractions`
  (a smaller fraction of one seed is a subset of a larger one);
* ``imbalance r``: the target's ``positive`` class subsampled to one case per ``r`` of the others
  (:func:`monai_transfer.data.induce_imbalance`); classification only;
* ``domain``: all sections pooled, then train + validation from the ``train`` domains (80/20 by patient) and test
  from the ``test`` domains (:func:`monai_transfer.data.domain_split`).

An impossible cell (a subset that leaves a class empty, too few cases to validate, an unknown domain value) is named
with its place in the spec before any pretraining or fine-tuning starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai_transfer.data import domain_split, induce_imbalance, label_fractions
from monai_transfer.study.checks import check_target_labels
from monai_transfer.study.spec import Challenge, SpecError, StudySpec, Target
from monai_transfer.study.targets import SECTIONS, target_sections
from monai_transfer.utils.atomic import atomic_write_text

__all__ = ["Cell", "expand_cells", "cell_datalist", "write_cell_data"]

@dataclass(frozen=True)
class Cell:
    target: Target
    challenge: Challenge
    start: str
    backbone: str
    strategy: str
    seed: int
    datalist: str  #: the (target, challenge, seed) datalist every start shares

    @property
    def key(self) -> dict[str, Any]:
        return {"target": self.target.name, "challenge": self.challenge.label, "start": self.start,
                "backbone": self.backbone, "strategy": self.strategy, "seed": self.seed}  # fmt: skip

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]


def _classes(entries: list[dict[str, Any]]) -> Counter:
    return Counter(json.dumps(e.get("label"), sort_keys=True) for e in entries)


def cell_datalist(target: Target, challenge: Challenge, seed: int, sections: Mapping[str, Any]) -> dict[str, Any]:
    """The datalist of one (target, challenge, seed); raises ``SpecError`` naming an impossible cell."""
    where = f"target {target.name!r}, challenge {challenge.label!r}, seed {seed}"
    train, val, test = (list(sections[s]) for s in SECTIONS)
    classify = target.task == "classification"
    patient = target.patient_key if all(target.patient_key in e for e in train) else None
    try:
        if challenge.kind == "label_fraction":
            train = label_fractions(train, [challenge.value], seed, "label" if classify else None, patient)[
                challenge.value
            ]
        elif challenge.kind == "imbalance":
            if not classify:
                raise SpecError(f"{where}: class imbalance applies to classification targets only")
            train = induce_imbalance(train, ratio=1.0 / challenge.value, positive=target.positive, seed=seed,
                                     patient_key=patient)  # fmt: skip
        elif challenge.kind == "domain":
            pooled = train + val + test
            parts = domain_split(pooled, challenge.train, challenge.test, by=target.domain_key, val_fraction=0.2,
                                 seed=seed, patient_key=patient)  # fmt: skip
            train, val, test = parts["train"], parts["val"], parts["test"]
    except (ValueError, KeyError) as e:
        raise SpecError(f"{where}: {e}") from None
    if len(train) < 2 or not val or not test:
        raise SpecError(f"{where}: {len(train)} training, {len(val)} validation and {len(test)} test cases; a cell "
                        "needs at least 2, 1 and 1")  # fmt: skip
    if classify:
        full = _classes(list(sections["training"]))
        missing = sorted(set(full) - set(_classes(train)))
        if missing:
            raise SpecError(f"{where}: the training subset has no case of class(es) {', '.join(missing)}")
    return {"labels": sections.get("labels"), "training": train, "validation": val, "test": test,
            "study_cell_data": {"target": target.name, "challenge": challenge.label, "seed": seed,
                                "n_training": len(train), "n_validation": len(val), "n_test": len(test)}}  # fmt: skip


def write_cell_data(spec: StudySpec, out: str | os.PathLike) -> dict[tuple[str, str, int], str]:
    """Write every (target, challenge, seed) datalist under ``out/data``; returns their paths.

    Nothing is pretrained or fine-tuned before this succeeds, so an impossible cell stops the study at once.
    """
    paths: dict[tuple[str, str, int], str] = {}
    for target in spec.targets:
        sections = target_sections(target)
        check_target_labels(target, sections)  # named with the user's datalist, not a cell's seed0.json
        for challenge in spec.challenges:
            for seed in spec.seeds:
                data = cell_datalist(target, challenge, seed, sections)
                path = Path(out) / "data" / target.name / challenge.slug / f"seed{seed}.json"
                text = json.dumps(data, indent=1, default=str)
                if not path.is_file() or path.read_text() != text:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(path, text)
                paths[(target.name, challenge.label, seed)] = str(path)
    return paths


def expand_cells(spec: StudySpec, datalists: Mapping[tuple[str, str, int], str]) -> list[Cell]:
    """Every cell, in a stable order (target, challenge, seed, start, backbone, strategy): the starting points of one
    seed run next to each other, so a partial study already holds paired results."""
    cells = []
    for target in spec.targets:
        for challenge in spec.challenges:
            for seed in spec.seeds:
                for start in spec.starts:
                    for backbone in spec.backbones:
                        for strategy in spec.strategies:
                            path = datalists[(target.name, challenge.label, seed)]
                            cells.append(Cell(target, challenge, start.name, backbone, strategy, seed, path))
    return cells
