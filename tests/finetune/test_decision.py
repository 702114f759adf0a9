"""Decisions a reviewer accepts (issue 25): the threshold chosen on validation and recorded, calibration against
hand-computed values, case-level intervals against scipy's bootstrap, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from monai_transfer.finetune.decision import decide, decided_metrics, row_metrics
from monai_transfer.metrics.calibration import (
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
)
from monai_transfer.metrics.case_summary import summarize_cases
from monai_transfer.metrics.thresholds import (
    binary_auroc,
    binary_average_precision,
    binary_decision_metrics,
    check_threshold_rule,
    choose_threshold,
)


def _shifted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A classifier that ranks well but whose scores all sit above 0.5 (as the SSL-started runs of the issue)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    s = np.clip(0.6 + 0.25 * y + rng.normal(0, 0.07, n), 0.5, 1.0)
    return y, s


def test_accuracy_at_half_is_poor_where_the_validation_threshold_is_not():
    yv, sv = _shifted(200, 0)
    yt, st = _shifted(300, 1)
    t = choose_threshold(yv, sv, "youden")
    assert 0.6 < t < 0.85  # chosen where the classes separate, not at 0.5
    at_half = binary_decision_metrics(yt, st, 0.5)["accuracy"]
    at_t = binary_decision_metrics(yt, st, t)["accuracy"]
    majority = max(yt.mean(), 1 - yt.mean())
    assert at_half < 0.35 < majority < at_t  # 0.5 calls every case positive; the chosen threshold beats the majority
    cases = [{"label": int(a), "prob": [1 - b, b]} for a, b in zip(yt, st)]
    val = [{"label": int(a), "prob": [1 - b, b]} for a, b in zip(yv, sv)]
    decision = decide(val, "youden")
    report = decided_metrics(cases, decision)
    assert report["threshold"] == pytest.approx(t) and report["threshold_rule"] == "youden"
    assert report["accuracy"] == pytest.approx(at_t) and report["accuracy_at_0.5"] == pytest.approx(at_half)
    for name in ("auroc", "auprc", "accuracy", "sensitivity", "specificity", "f1", "balanced_accuracy", "brier"):
        ci = report[f"{name}_ci95"]
        assert ci["low"] <= report[name] <= ci["high"], name


def test_threshold_rules():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.45, 0.5, 0.7, 0.8, 0.9])
    assert choose_threshold(y, s, "youden") == pytest.approx(0.475)  # the one cut that separates the classes
    assert choose_threshold(y, s, 0.3) == 0.3
    assert choose_threshold(y, s, "argmax") == 0.5
    t = choose_threshold(y, s, "sensitivity:0.75")  # the highest threshold that still finds 3 of 4 positives
    assert binary_decision_metrics(y, s, t)["sensitivity"] == 0.75 and t == pytest.approx(0.6)
    f1 = choose_threshold(y, s, "f1")
    best = max(binary_decision_metrics(y, s, c)["f1"] for c in np.linspace(0, 1, 101))
    assert binary_decision_metrics(y, s, f1)["f1"] == pytest.approx(best)
    for bad in ("yoden", 1.5, "sensitivity:2", True):
        with pytest.raises(ValueError, match="threshold"):
            check_threshold_rule(bad)


def test_ece_and_brier_match_hand_computed_values():
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.55])
    assert brier_score(y, p) == pytest.approx(np.mean([0.01, 0.04, 0.16, 0.36, 0.3025]))
    # 5 bins: (0.2) -> bin 0: conf 0.2, freq 0; (0.4) -> bin 1: conf 0.4, freq 1; (0.55, 0.6) -> bin 2: conf 0.575,
    # freq 0.5; (0.9) -> bin 4: conf 0.9, freq 1
    hand = (0.2 + 0.6 + 2 * 0.075 + 0.1) / 5
    assert expected_calibration_error(y, p, n_bins=5, task="binary") == pytest.approx(hand)
    multi = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    assert brier_score([0, 2], multi) == pytest.approx(np.mean([0.09 + 0.04 + 0.01, 0.01 + 0.64 + 0.81]))


def test_fast_binary_metrics_match_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = np.round(np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1), 2)  # rounded: ties
    assert binary_auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s))
    assert binary_average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s))


def test_case_level_auroc_interval_agrees_with_scipy_bootstrap():
    from scipy.stats import bootstrap

    y, s = _shifted(300, 4)
    cases = [{"label": int(a), "prob": [1 - b, b]} for a, b in zip(y, s)]
    ours = summarize_cases(cases, n_resamples=4000, seed=0)["auroc_ci95"]
    ref = bootstrap((y, s), binary_auroc, paired=True, vectorized=False, n_resamples=4000, method="BCa",
                    random_state=np.random.default_rng(1)).confidence_interval  # fmt: skip
    assert ours["low"] == pytest.approx(ref.low, abs=0.01)
    assert ours["high"] == pytest.approx(ref.high, abs=0.01)
    assert ours["high"] - ours["low"] > 0.02


def test_temperature_scaling_fits_overconfidence_and_keeps_the_ranking():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    logit = (2 * y - 1) * 1.0 + rng.normal(0, 1.5, 500)
    p = 1 / (1 + np.exp(-3 * logit))  # three times too confident
    t = fit_temperature(y, p)
    assert 2.0 < t < 4.5
    q = apply_temperature(p, t)
    assert binary_auroc(y, q) == pytest.approx(binary_auroc(y, p))
    assert expected_calibration_error(y, q, task="binary") < 0.5 * expected_calibration_error(y, p, task="binary")
    val = [{"label": int(a), "prob": [1 - b, b]} for a, b in zip(y, p)]
    assert decide(val, "youden", "temperature")["temperature"] == pytest.approx(t)
    with pytest.raises(ValueError, match="calibrate"):
        decide(val, "youden", "platt")


def test_multiclass_decides_by_argmax():
    probs = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.7 + 0.1
    val = [{"label": i % 3, "prob": p.tolist()} for i, p in enumerate(probs)]
    d = decide(val, "youden")
    assert d["rule"] == "argmax" and d["threshold"] is None
    report = decided_metrics(val, d)
    assert report["accuracy"] == 1.0 and "sensitivity" not in report


def _under_scored(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes; class 2 is always out-scored by class 0 (never the argmax) but ranks its own cases first."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = np.full((n, 3), 0.2) + rng.normal(0, 0.02, (n, 3))
    p[y == 0, 0] += 0.5
    p[y == 1, 1] += 0.5
    p[:, 0] += 0.15  # class 0 wins wherever class 2 is the truth
    p[y == 2, 2] += 0.08
    p = np.clip(p, 1e-3, None)
    return y, p / p.sum(1, keepdims=True)


def test_one_vs_rest_thresholds_are_chosen_on_validation_and_reported_per_class():
    yv, pv = _under_scored(300, 0)
    yt, pt = _under_scored(300, 1)
    val = [{"label": int(a), "prob": b.tolist()} for a, b in zip(yv, pv)]
    test = [{"label": int(a), "prob": b.tolist()} for a, b in zip(yt, pt)]
    assert decided_metrics(test, decide(val, "youden")).get("class2_sensitivity") is None  # only where asked
    d = decide(val, "youden", one_vs_rest=True)
    assert d["rule"] == "argmax" and d["class_rule"] == "youden" and len(d["class_thresholds"]) == 3
    report = decided_metrics(test, d)
    argmax_sensitivity = float(np.mean(pt[yt == 2].argmax(1) == 2))
    assert argmax_sensitivity < 0.1 < 0.9 < report["class2_sensitivity"]  # the argmax never finds class 2
    assert report["class2_threshold"] == pytest.approx(d["class_thresholds"][2])
    for k in range(3):
        for name in ("sensitivity", "specificity", "f1", "balanced_accuracy"):
            ci = report[f"class{k}_{name}_ci95"]
            assert ci["low"] <= report[f"class{k}_{name}"] <= ci["high"]
    row = row_metrics(report)
    assert "class2_sensitivity" in row["metrics"] and "class2_threshold" not in row["metrics"]
    assert "class2_sensitivity" in row["metric_ci"]


def test_a_tiny_validation_or_test_set_gives_a_result_without_intervals_not_an_error():
    one = [{"label": 1, "prob": [0.3, 0.7]}]
    d = decide(one, "youden", "temperature")  # one class, one case: neither a threshold nor a temperature to fit
    assert d["threshold"] == 0.5 and d["temperature"] is None and "0.5 used" in d["note"]
    report = decided_metrics([{"label": 0, "prob": [0.6, 0.4]}], d)
    assert report["accuracy"] == 1.0 and not any(k.endswith("_ci95") for k in report)
    assert "no interval" in report["warnings"][0]
