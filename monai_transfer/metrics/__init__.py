"""Pure array functions for scoring and comparing runs: metrics, calibration, thresholds, statistics, power, domain gap
and transferability, with case-level summaries.

They take arrays (NumPy or torch) and build no network, so they sit below ``engines``, as ``monai.metrics`` sits below
MONAI's engines: fine-tuning decides its test section with them and a study compares its cells with them. What builds
networks to score them (ranking backbones, robustness of a checkpoint) lives in ``monai_transfer.evaluation``.
"""

from __future__ import annotations

from monai_transfer.metrics.calibration import (
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)
from monai_transfer.metrics.case_summary import MIN_UNITS, summarize_cases
from monai_transfer.metrics.classification import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    classification_metrics,
    f1_macro,
    predicted_labels,
)
from monai_transfer.metrics.domain_gap import (
    domain_gap,
    frechet_distance,
    frechet_distance_gaussians,
    median_bandwidth,
    mmd,
)
from monai_transfer.metrics.inputs import check_classification, infer_task
from monai_transfer.metrics.power import min_detectable_difference, paired_t_power, seeds_needed
from monai_transfer.metrics.segmentation import (
    as_one_hot,
    dice_per_case,
    hd95_per_case,
    segmentation_metrics,
    surface_dice_per_case,
)
from monai_transfer.metrics.stats import (
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
from monai_transfer.metrics.thresholds import (
    accuracy_at_threshold,
    decision_fields,
    majority_baseline,
    youden_threshold,
)
from monai_transfer.metrics.transferability import (
    knn_accuracy,
    linear_probe_accuracy,
    log_evidence,
    logme,
    rank_correlation,
    stratified_folds,
)

__all__ = [
    "accuracy",
    "auroc",
    "average_precision",
    "balanced_accuracy",
    "classification_metrics",
    "f1_macro",
    "predicted_labels",
    "check_classification",
    "infer_task",
    "as_one_hot",
    "dice_per_case",
    "hd95_per_case",
    "segmentation_metrics",
    "surface_dice_per_case",
    "apply_temperature",
    "brier_score",
    "expected_calibration_error",
    "fit_temperature",
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
    "paired_t_power",
    "min_detectable_difference",
    "seeds_needed",
    "domain_gap",
    "frechet_distance",
    "frechet_distance_gaussians",
    "median_bandwidth",
    "mmd",
    "MIN_UNITS",
    "summarize_cases",
    "knn_accuracy",
    "linear_probe_accuracy",
    "log_evidence",
    "logme",
    "rank_correlation",
    "stratified_folds",
    "accuracy_at_threshold",
    "decision_fields",
    "majority_baseline",
    "youden_threshold",
]
