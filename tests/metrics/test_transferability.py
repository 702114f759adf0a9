"""LogME against the direct evidence, kNN and linear probe on separable vs random labels, domain gap, correlations."""

from __future__ import annotations

import numpy as np
import pytest

from monai_transfer.metrics.domain_gap import domain_gap, frechet_distance, frechet_distance_gaussians, mmd
from monai_transfer.metrics.transferability import (
    knn_accuracy,
    linear_probe_accuracy,
    log_evidence,
    logme,
    rank_correlation,
)


def _clusters(n: int = 60, d: int = 16, seed: int = 0, sep: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = r.normal(0, sep, (3, d))
    return centres[y] + r.normal(0, 1, (n, d)), y


@pytest.mark.parametrize("shape", [(30, 6), (12, 20)], ids=["N>D", "N<D"])
def test_logme_matches_direct_evidence_and_beats_grid(shape: tuple[int, int]) -> None:
    r = np.random.default_rng(1)
    f = r.normal(size=shape)
    y = (f[:, 0] + 0.5 * r.normal(size=shape[0]) > 0).astype(int)
    score, params = logme(f, y, return_params=True)
    direct = [log_evidence(f, (y == c).astype(float), a, b) for c, (a, b) in enumerate(params)]
    assert score == pytest.approx(np.mean(direct), abs=1e-6)
    grid = np.logspace(-3, 3, 31)
    for c, (a, b) in enumerate(params):
        target = (y == c).astype(float)
        best = max(log_evidence(f, target, ga, gb) for ga in grid for gb in grid)
        assert direct[c] >= best - 1e-6  # the fixed point is at least as good as any grid point
        # and it is a local optimum: small moves of alpha or beta do not increase the evidence
        for fa, fb in [(1.1, 1), (0.9, 1), (1, 1.1), (1, 0.9)]:
            assert log_evidence(f, target, a * fa, b * fb) <= direct[c] + 1e-6


def test_logme_prefers_informative_features() -> None:
    f, y = _clusters()
    noise = np.random.default_rng(5).normal(size=f.shape)
    assert logme(f, y) > logme(noise, y)


def test_knn_and_linear_probe_separable_vs_random() -> None:
    f, y = _clusters()
    assert knn_accuracy(f, y) >= 0.95
    assert linear_probe_accuracy(f, y) >= 0.95
    y_rand = np.random.default_rng(3).permutation(y)
    assert abs(knn_accuracy(f, y_rand) - 1 / 3) < 0.2
    assert abs(linear_probe_accuracy(f, y_rand) - 1 / 3) < 0.2
    assert knn_accuracy(f, y, seed=1) == knn_accuracy(f, y, seed=1)
    with pytest.raises(ValueError, match="disagree"):
        knn_accuracy(f, y[:-1])


def test_frechet_distance() -> None:
    f, _ = _clusters()
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    # closed form for diagonal covariances: ||mu||^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance_gaussians(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # a full-covariance case against scipy's sqrtm formula
    from scipy.linalg import sqrtm

    r = np.random.default_rng(0)
    a, b = r.normal(size=(4, 4)), r.normal(size=(4, 4))
    ca, cb = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    ref = np.sum((mu1[:1] - mu2[:1]) ** 2) * 0 + np.trace(ca + cb - 2 * np.real(sqrtm(ca @ cb)))
    assert frechet_distance_gaussians(np.zeros(4), ca, np.zeros(4), cb) == pytest.approx(ref, rel=1e-6)
    # samples from two Gaussians approach the closed form
    xa = r.normal(0, 1, (20000, 2))
    xb = r.normal(0, 2, (20000, 2)) + np.array([3.0, 0.0])
    assert frechet_distance(xa, xb) == pytest.approx(9.0 + 2 * (2 - 1) ** 2, rel=0.05)


def test_mmd_same_vs_shifted() -> None:
    r = np.random.default_rng(0)
    a, b = r.normal(size=(200, 8)), r.normal(size=(200, 8))
    same = mmd(a, b)
    shifted = mmd(a, b + 1.5)
    assert abs(same) < 0.01 and shifted > 0.2
    assert mmd(a, b, unbiased=False) >= same
    gap = domain_gap(a, b + 1.5)
    assert set(gap) == {"frechet", "mmd", "mmd_bandwidth"} and gap["frechet"] > 10


def test_rank_correlation() -> None:
    est = {"a": 0.1, "b": 0.5, "c": 0.9, "d": 0.3}
    out = {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.65}
    rc = rank_correlation(est, out)
    assert rc["kendall_tau"] == pytest.approx(1.0) and rc["spearman_rho"] == pytest.approx(1.0) and rc["n"] == 4
    rev = rank_correlation(est, {k: -v for k, v in out.items()})
    assert rev["kendall_tau"] == pytest.approx(-1.0)
    assert np.isnan(rank_correlation({"a": 1.0}, {"a": 2.0})["kendall_tau"])


def test_domain_gap_mmd_cannot_read_as_a_negative_distance() -> None:
    r = np.random.default_rng(3)
    for _ in range(20):
        a, b = r.normal(size=(6, 16)), r.normal(size=(6, 16))
        gap = domain_gap(a, b)
        assert gap["mmd"] >= 0
        assert gap["mmd"] == pytest.approx(max(mmd(a, b, bandwidth=gap["mmd_bandwidth"], unbiased=False), 0.0))
