"""Cross-validated kNN accuracy of frozen features, shared by the SSL monitor and ``metrics.transferability``.

The kNN monitor of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance Discrimination"):
cosine similarity, ``k`` neighbours vote, stratified folds. Public through
:mod:`monai_transfer.metrics.transferability` (and ``monai_transfer.evaluation``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["stratified_folds", "knn_accuracy"]


def _xy(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features.detach().cpu().numpy() if hasattr(features, "detach") else features, dtype=np.float64)
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels).ravel()
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if len(f) != len(y):
        raise ValueError(f"features and labels disagree on N: {len(f)} vs {len(y)}")
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0:
        raise ValueError("labels must be non-negative integer class indices")
    return f, y.astype(np.int64)


def stratified_folds(labels: Any, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index per sample: each class shuffled (seeded) and dealt round-robin over ``n_folds`` folds."""
    y = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (np.arange(len(idx)) + offset) % n_folds
        offset += len(idx)
    return fold


def _check_folds(n: int, n_folds: int) -> int:
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    return min(n_folds, n)


def knn_accuracy(features: Any, labels: Any, k: int = 5, n_folds: int = 5, seed: int = 0) -> float:
    """Cross-validated kNN accuracy with cosine similarity; the vote is weighted by similarity (ties broken by it).

    Args:
        features: ``(N, D)``.
        labels: class indices ``(N,)``.
        k: neighbours.
        n_folds: stratified folds (capped at N).
        seed: fold assignment seed.
    """
    f, y = _xy(features, labels)
    n_folds = _check_folds(len(y), n_folds)
    fn = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    folds = stratified_folds(y, n_folds, seed)
    n_cls = int(y.max()) + 1
    correct = 0
    for i in range(n_folds):
        te, tr = folds == i, folds != i
        if not te.any() or not tr.any():
            continue
        sim = fn[te] @ fn[tr].T
        kk = min(k, int(tr.sum()))
        nn = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
        votes = np.zeros((int(te.sum()), n_cls))
        for j in range(kk):
            np.add.at(votes, (np.arange(len(nn)), y[tr][nn[:, j]]), 1.0 + 1e-6 * sim[np.arange(len(nn)), nn[:, j]])
        correct += int(np.sum(votes.argmax(1) == y[te]))
    return correct / len(y)
