"""Evaluation: metrics, calibration, statistics (bootstrap CI, paired tests, Holm), robustness, transferability."""

from __future__ import annotations

from .calibration import expected_calibration_error, reliability_curve
from .metrics import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    classification_metrics,
    dice_per_case,
    f1_macro,
    hd95_per_case,
    segmentation_metrics,
    surface_dice_per_case,
)
from .stats import (
    BootstrapResult,
    PairedTestResult,
    bootstrap_ci,
    bootstrap_paired_difference,
    cliffs_delta,
    cohens_dz,
    compare_to_baseline,
    hedges_g,
    holm,
    paired_test,
    rank_biserial,
)

__all__ = [
    "accuracy",
    "auroc",
    "average_precision",
    "balanced_accuracy",
    "classification_metrics",
    "dice_per_case",
    "f1_macro",
    "hd95_per_case",
    "segmentation_metrics",
    "surface_dice_per_case",
    "expected_calibration_error",
    "reliability_curve",
    "BootstrapResult",
    "PairedTestResult",
    "bootstrap_ci",
    "bootstrap_paired_difference",
    "cliffs_delta",
    "cohens_dz",
    "compare_to_baseline",
    "hedges_g",
    "holm",
    "paired_test",
    "rank_biserial",
]
