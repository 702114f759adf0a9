"""Decision thresholds: Youden's J on validation scores, the majority-class baseline, accuracy at a threshold.

Issue 12: a 3D model with test AUROC 0.843 had accuracy 0.634, below the 0.768 of always answering the majority class,
and nothing said so. The result of an evaluation now carries the threshold used and the majority baseline, and offers a
threshold chosen on the validation set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_transfer.metrics.thresholds import (
    accuracy_at_threshold,
    decision_fields,
    majority_baseline,
    youden_threshold,
)


def _brute_force_youden(y: np.ndarray, s: np.ndarray) -> float:
    best = -np.inf
    for t in np.unique(np.concatenate([s, [np.inf]])):
        p = s >= t
        j = p[y == 1].mean() + (~p[y == 0]).mean() - 1
        best = max(best, j)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_youden_threshold_reaches_the_best_j(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(60) < 0.3).astype(int)
    s = np.clip(0.2 + 0.3 * y + rng.normal(0, 0.2, 60), 0, 1)
    t = youden_threshold(y, s)
    p = s >= t
    j = p[y == 1].mean() + (~p[y == 0]).mean() - 1
    assert j == pytest.approx(_brute_force_youden(y, s))
    assert not np.any(np.isclose(s, t))  # a midpoint between validation scores, not on one


def test_youden_threshold_hand_example_and_inputs() -> None:
    # positives score 0.3 and 0.4, negatives 0.1 and 0.2: any cut in (0.2, 0.3] separates them; the midpoint is 0.25
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25)
    # (N, 2) probabilities: the positive class's column is used
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    assert youden_threshold([0, 0, 1, 1], probs) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold([1, 1, 1], [0.2, 0.5, 0.7])
    with pytest.raises(ValueError, match="binary"):
        youden_threshold([0, 1, 2], np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="disagree"):
        youden_threshold([0, 1], [0.1, 0.2, 0.3])


def test_majority_baseline_and_accuracy_at_threshold() -> None:
    y = [0, 0, 0, 1]
    assert majority_baseline(y) == pytest.approx(0.75)
    assert majority_baseline([2, 2, 1, 0, 2]) == pytest.approx(0.6)
    s = [0.1, 0.6, 0.2, 0.7]
    assert accuracy_at_threshold(y, s, 0.5) == pytest.approx(0.75)
    assert accuracy_at_threshold(y, s, 0.65) == pytest.approx(1.0)
    assert accuracy_at_threshold(y, np.stack([1 - np.asarray(s), s], 1), 0.65) == pytest.approx(1.0)


def _cases(y, p1):
    return [{"index": i, "label": int(a), "prob": [1 - b, b]} for i, (a, b) in enumerate(zip(y, p1))]


def test_decision_fields_report_threshold_baseline_and_validation_threshold() -> None:
    # the situation: good ranking, poorly calibrated scores (all below 0.5), so argmax accuracy < majority
    rng = np.random.default_rng(0)
    y_val, y_test = (rng.random(80) < 0.25).astype(int), (rng.random(80) < 0.25).astype(int)
    p_val = np.clip(0.15 + 0.2 * y_val + rng.normal(0, 0.05, 80), 0, 1)
    p_test = np.clip(0.15 + 0.2 * y_test + rng.normal(0, 0.05, 80), 0, 1)
    plain = decision_fields(_cases(y_test, p_test))
    assert plain["threshold"] == 0.5 and plain["threshold_rule"] == "argmax"
    assert plain["majority_baseline"] == pytest.approx(max(np.mean(y_test), 1 - np.mean(y_test)))
    assert "accuracy_at_threshold" not in plain
    tuned = decision_fields(_cases(y_test, p_test), val_cases=_cases(y_val, p_val))
    assert tuned["threshold_rule"] == "youden_validation" and 0.15 < tuned["threshold"] < 0.5
    assert tuned["accuracy_at_threshold"] > tuned["majority_baseline"]
    json.dumps(tuned)
    # multi-class: argmax, no threshold; the baseline still reported
    multi = decision_fields([{"label": c, "prob": [0.2, 0.3, 0.5]} for c in (0, 2, 2)])
    assert multi["threshold"] is None and multi["majority_baseline"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="binary"):
        decision_fields(
            [{"label": c, "prob": [0.2, 0.3, 0.5]} for c in (0, 2, 2)], val_cases=_cases([0, 1], [0.1, 0.9])
        )
