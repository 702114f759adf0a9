"""Evaluation: metrics, calibration, statistics (bootstrap CI, paired tests, Holm, power), robustness,
transferability."""

from __future__ import annotations

from .calibration import expected_calibration_error, reliability_curve
from .case_summary import summarize_cases
from .checkpoint_robustness import CaseSeededCorruptd, checkpoint_robustness
from .domain_gap import domain_gap, frechet_distance, frechet_distance_gaussians, median_bandwidth, mmd
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
from .power import min_detectable_difference, paired_t_power, seeds_needed
from .rank import RankingResult, candidate_label, extract_features, load_images, rank_backbones
from .robustness import RobustnessReport, evaluate_robustness, mean_over_cases
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
from .thresholds import accuracy_at_threshold, decision_fields, majority_baseline, youden_threshold
from .transferability import (
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
    "paired_t_power",
    "min_detectable_difference",
    "seeds_needed",
    "domain_gap",
    "frechet_distance",
    "frechet_distance_gaussians",
    "median_bandwidth",
    "mmd",
    "RankingResult",
    "candidate_label",
    "extract_features",
    "load_images",
    "rank_backbones",
    "summarize_cases",
    "CaseSeededCorruptd",
    "checkpoint_robustness",
    "RobustnessReport",
    "evaluate_robustness",
    "mean_over_cases",
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
