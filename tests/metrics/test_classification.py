"""Classification metrics: known values, sklearn agreement, tasks, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from monai_transfer.metrics.classification import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    classification_metrics,
    f1_macro,
)

try:
    import sklearn.metrics as skm
except ImportError:  # pragma: no cover - scikit-learn is optional, only a reference here
    skm = None


def _multiclass(n: int = 60, c: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = np.arange(n) % c
    s = r.dirichlet(np.ones(c), n)
    s[np.arange(n), y] += 0.3 * r.random(n)
    return y, s / s.sum(1, keepdims=True)


def test_auroc_known_values() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == pytest.approx(1.0)
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.skipif(skm is None, reason="scikit-learn not installed")
def test_classification_agrees_with_sklearn() -> None:
    y, s = _multiclass()
    per = auroc(y, s, average=None)
    onehot = np.eye(3)[y]
    ref = [skm.roc_auc_score(onehot[:, c], s[:, c]) for c in range(3)]
    np.testing.assert_allclose(per, ref, atol=1e-9)
    np.testing.assert_allclose(
        average_precision(y, s, average=None),
        [skm.average_precision_score(onehot[:, c], s[:, c]) for c in range(3)],
        atol=1e-9,
    )
    pred = s.argmax(1)
    assert accuracy(y, s) == pytest.approx(skm.accuracy_score(y, pred))
    assert balanced_accuracy(y, s) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert f1_macro(y, s) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    # binary
    yb, sb = (y == 1).astype(int), s[:, 1]
    assert f1_macro(yb, sb) == pytest.approx(skm.f1_score(yb, sb >= 0.5))
    assert balanced_accuracy(yb, sb) == pytest.approx(skm.balanced_accuracy_score(yb, sb >= 0.5))
    # multi-label
    r = np.random.default_rng(1)
    yl = r.integers(0, 2, (50, 4))
    sl = np.clip(yl * 0.3 + r.random((50, 4)) * 0.7, 0, 1)
    np.testing.assert_allclose(auroc(yl, sl, average=None), skm.roc_auc_score(yl, sl, average=None), atol=1e-9)
    assert auroc(yl, sl) == pytest.approx(skm.roc_auc_score(yl, sl, average="macro"))
    assert f1_macro(yl, sl) == pytest.approx(skm.f1_score(yl, sl >= 0.5, average="macro"))


def test_classification_metrics_keys_and_tasks() -> None:
    y, s = _multiclass()
    m = classification_metrics(y, s)
    assert m["task"] == "multiclass" and len(m["auroc_per_class"]) == 3
    assert 0.5 < m["auroc"] <= 1 and 0 <= m["ece"] <= 1
    mb = classification_metrics((y == 0).astype(int), s[:, 0])
    assert mb["task"] == "binary" and len(mb["auroc_per_class"]) == 1
    # a class absent from y_true gives NaN for that class and is left out of the mean
    per = auroc(np.array([0, 1, 0, 1]), np.eye(3)[[0, 1, 0, 1]] * 0.8 + 0.05, average=None)
    assert np.isnan(per[2]) and per[0] == 1.0


@pytest.mark.parametrize(
    "y,s,msg",
    [
        ([0, 1, 2], [0.1, 0.2], "same number"),
        ([0, 3, 1], np.full((3, 3), 1 / 3), r"integers in \[0, 2\]"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1"),
        (np.zeros((3, 2)), np.zeros((3, 3)), "multilabel"),
    ],
)
def test_classification_errors(y: object, s: object, msg: str) -> None:
    task = "multilabel" if msg == "multilabel" else None
    with pytest.raises(ValueError, match=msg):
        auroc(y, s, task=task)
