"""A synthetic but realistic study results table with known effects, shared by the statistics and report tests.

Two targets (a classification scored by AUROC, a segmentation scored by mean Dice), five challenges, four starting
points, one backbone and strategy, five seeds. Each score is a challenge baseline plus the starting point's effect
plus a seed effect shared by every start (the paired design: one seed = one label subset) plus independent noise:

* ``ssl_same_pool``: +0.08 (seed effect SD 0.02, run noise SD 0.01): a strong effect, "better" after Holm.
* ``imagenet``: +0.00: the null effect.
* ``ssl_other_modality``: +0.03.
* The segmentation target under domain shift has only seeds 0 and 1 (n = 2: no test).
* ``lesion_cls_3d`` / ``fraction 0.1`` / ``ssl_other_modality`` / seed 4 failed.
* The segmentation target's "full" runs carry per-case scores: 6 patients with 2 cases each.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

TARGETS = {"lesion_cls_3d": ("classification", "auroc"), "tissue_seg_3d": ("segmentation", "mean_dice")}
CHALLENGES = [
    ("full", "full", None, 0.80),
    ("fraction 0.1", "label_fraction", 0.1, 0.62),
    ("fraction 0.5", "label_fraction", 0.5, 0.74),
    ("imbalance 10:1", "imbalance", 10.0, 0.70),
    ("domain site_0 -> site_1", "domain", "site_0 -> site_1", 0.66),
]
EFFECTS = {"random": 0.0, "imagenet": 0.0, "ssl_same_pool": 0.08, "ssl_other_modality": 0.03}
#: transferability estimates per start: ordered like the effects (random lowest), with a tie-free order.
TRANSFER = {
    "random": {"knn": 0.55, "linear_probe": 0.60, "logme": -1.2},
    "imagenet": {"knn": 0.62, "linear_probe": 0.66, "logme": -0.9},
    "ssl_same_pool": {"knn": 0.74, "linear_probe": 0.78, "logme": -0.3},
    "ssl_other_modality": {"knn": 0.66, "linear_probe": 0.64, "logme": -0.6},
}
SEEDS = [0, 1, 2, 3, 4]
NOISE_SD = 0.02  # seed effect, shared by the starts of one seed
RUN_SD = 0.01  # independent noise per run
FAILED = ("lesion_cls_3d", "fraction 0.1", "ssl_other_modality", 4)
N_PATIENTS = 6


def make_rows(seed: int = 1234) -> list[dict]:
    """Build the table (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    rows = []
    counter = 0
    patient_effect = rng.normal(0, 0.05, N_PATIENTS)
    for target, (task, metric) in TARGETS.items():
        for challenge, kind, value, base in CHALLENGES:
            seeds = SEEDS[:2] if (target == "tissue_seg_3d" and kind == "domain") else SEEDS
            seed_effect = rng.normal(0, NOISE_SD, len(SEEDS))
            for start, effect in EFFECTS.items():
                for s in seeds:
                    counter += 1
                    score = float(np.clip(base + effect + seed_effect[s] + rng.normal(0, RUN_SD), 0, 1))
                    failed = (target, challenge, start, s) == FAILED
                    other = {"auroc": ("accuracy", score - 0.1), "mean_dice": ("hd95", 20 - 10 * score)}[metric]
                    case_scores = None
                    if task == "segmentation" and kind == "full" and not failed:
                        case_scores = [
                            {
                                "case": f"sub-{p:03d}_ses-{c}",
                                "patient": f"sub-{p:03d}",
                                "score": float(score + patient_effect[p] + rng.normal(0, 0.01)),
                                "label": None,
                            }
                            for p in range(N_PATIENTS)
                            for c in (1, 2)
                        ]
                    rows.append(
                        {
                            "cell": f"{counter:012x}",
                            "target": target,
                            "task": task,
                            "challenge": challenge,
                            "challenge_kind": kind,
                            "challenge_value": value,
                            "start": start,
                            "backbone": "resnet10",
                            "strategy": "full",
                            "seed": s,
                            "status": "failed" if failed else "ok",
                            "error": "CUDA out of memory <simulated> & co" if failed else None,
                            "metric": metric,
                            "score": None if failed else score,
                            "metrics": {} if failed else {metric: score, other[0]: other[1]},
                            "n_train": 40 if value is None else 12,
                            "duration_s": float(30 + rng.uniform(0, 5)),
                            "transferability": dict(TRANSFER[start]),
                            "domain_gap": 0.12 if kind == "domain" else None,
                            "case_scores": case_scores,
                        }
                    )
    return rows


_ROWS = make_rows()


@pytest.fixture
def study_rows() -> list[dict]:
    """A fresh deep copy of the synthetic results table (tests may edit it)."""
    return copy.deepcopy(_ROWS)


def write_squares(root: Path, flip: bool = False) -> Path:
    """16 NIfTI images of 16x16 noise (class 1: a bright square), one patient each, as ``root/squares.json``
    (8 training, 4 validation, 4 test; ``flip`` swaps every label) and the same images unlabeled as ``root/pool.json``:
    the smallest data a real study run learns from in seconds."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    entries = []
    for i in range(16):
        label = i % 2
        img = rng.normal(0, 1, (16, 16)).astype(np.float32)
        if label:
            img[4:9, 4:9] += 4
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / f"img{i:02d}.nii.gz")
        entries.append({"image": f"img{i:02d}.nii.gz", "label": 1 - label if flip else label, "patient_id": f"p{i}"})
    dl = {"labels": {"0": "empty", "1": "square"}, "training": entries[:8], "validation": entries[8:12],
          "test": entries[12:]}  # fmt: skip
    (root / "squares.json").write_text(json.dumps(dl))
    (root / "pool.json").write_text(json.dumps({"unlabeled": [{"image": e["image"]} for e in entries]}))
    return root / "squares.json"
