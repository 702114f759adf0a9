"""Calibration: expected calibration error and the reliability curve on known values."""

from __future__ import annotations

import numpy as np
import pytest

from monai_transfer.metrics.calibration import expected_calibration_error, reliability_curve


def test_ece_known_values_and_reliability() -> None:
    # perfectly calibrated in each bin: confidence 0.8, 4 of 5 correct -> ECE 0
    y = np.array([1, 1, 1, 1, 0])
    p = np.full(5, 0.8)
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.0)
    # overconfident: confidence 0.9, half correct -> |0.5 - 0.9| = 0.4
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error([0, 1, 1, 0], probs, n_bins=15) == pytest.approx(0.4)
    # two bins: hand-worked weighted mean
    conf = np.array([0.15, 0.15, 0.95, 0.95])
    y2 = np.array([0, 1, 1, 1])  # binary: positive-class frequency per bin
    expected = 0.5 * abs(0.5 - 0.15) + 0.5 * abs(1.0 - 0.95)
    assert expected_calibration_error(y2, conf, n_bins=10) == pytest.approx(expected)
    r = reliability_curve(conf, y2, n_bins=10)
    assert r["count"].sum() == 4 and r["count"][1] == 2 and r["count"][9] == 2
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([0, 1], [-1.0, 2.0])
