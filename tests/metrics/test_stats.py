"""Bootstrap CIs, paired tests, Holm correction and effect sizes against scipy / statsmodels / hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from monai_transfer.metrics.classification import auroc
from monai_transfer.metrics.stats import (
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


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_agrees_with_scipy(method: str) -> None:
    x = np.random.default_rng(3).gamma(2.0, 1.0, 40)
    ours = bootstrap_ci(x, np.mean, n_resamples=4000, method=method, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method=method, rng=np.random.default_rng(1), vectorized=False)
    assert ours.estimate == pytest.approx(x.mean())
    # same generator, same draws -> same bootstrap distribution; the interval agrees closely
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=1e-6, abs=1e-9)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=1e-6, abs=1e-9)
    assert ours.standard_error == pytest.approx(ref.standard_error, rel=1e-6)


def test_bootstrap_is_seeded_and_paired() -> None:
    x = np.random.default_rng(0).normal(size=30)
    a = bootstrap_ci(x, n_resamples=500, seed=5)
    b = bootstrap_ci(x, n_resamples=500, seed=5)
    c = bootstrap_ci(x, n_resamples=500, seed=6)
    assert a == b and a != c
    assert a.low < x.mean() < a.high
    # paired statistic over two arrays (per-case Dice of two models)
    da, db = x + 1.0, x
    d = bootstrap_ci((da, db), lambda u, v: float(np.mean(u - v)), n_resamples=200, seed=0)
    assert d.low == pytest.approx(1.0) and d.high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number of cases"):
        bootstrap_ci((x, x[:-1]), lambda u, v: 0.0)


def test_bootstrap_paired_difference_auroc() -> None:
    r = np.random.default_rng(0)
    y = np.arange(80) % 2
    good = y + r.normal(0, 0.5, 80)
    bad = y + r.normal(0, 3.0, 80)
    res = bootstrap_paired_difference(auroc, y, good, bad, n_resamples=300, seed=0)
    assert res.estimate == pytest.approx(auroc(y, good) - auroc(y, bad))
    assert res.low > 0  # the better model is better on the same resampled cases
    same = bootstrap_paired_difference(auroc, y, good, good, n_resamples=50, seed=0)
    assert same.low == same.high == 0.0


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_paired_t_agrees_with_scipy(alternative: str) -> None:
    r = np.random.default_rng(2)
    a = r.normal(0.80, 0.02, 10)
    b = a - r.normal(0.01, 0.01, 10)
    ours = paired_test(a, b, "t", alternative)
    ref = sps.ttest_rel(a, b, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    d = a - b
    assert ours.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert ours.effect_size_name == "cohens_dz" and ours.n == 10


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_wilcoxon_agrees_with_scipy(alternative: str) -> None:
    a = np.array([0.81, 0.79, 0.84, 0.80, 0.83, 0.78, 0.85, 0.82])
    b = np.array([0.80, 0.80, 0.81, 0.77, 0.79, 0.775, 0.80, 0.79])
    ours = paired_test(a, b, "wilcoxon", alternative)
    ref = sps.wilcoxon(a, b, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.pvalue == pytest.approx(ref.pvalue)
    # rank-biserial by hand: differences .01 -.01 .03 .03 .04 .005 .05 .03; |d| ranks: .005->1, .01->2.5 (x2),
    # .03->5 (x3), .04->7, .05->8; R- = 2.5, R+ = 36 - 2.5 = 33.5 -> r = (33.5 - 2.5) / 36
    assert ours.effect_size == pytest.approx(31 / 36)


def test_holm_hand_worked_and_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: .005 (x4 = .02), .01 (x3 = .03), .03 (x2 = .06), .04 (x1 = .04 -> running max .06)
    reject, adj = holm(p, alpha=0.05)
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(reject, [True, False, False, True])
    np.testing.assert_allclose(holm([0.5, 0.9])[1], [1.0, 1.0])
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    ps = np.random.default_rng(0).random(12) ** 3
    ref = multitest.multipletests(ps, alpha=0.05, method="holm")
    ours = holm(ps, 0.05)
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_allclose(ours[1], ref[1])


def test_effect_sizes() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([0.5, 1.0, 2.0, 3.0, 6.0])
    d = a - b
    assert cohens_dz(a, b) == pytest.approx(d.mean() / d.std(ddof=1))
    sp = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert hedges_g(a, b) == pytest.approx((1 - 3 / (4 * 10 - 9)) * (a.mean() - b.mean()) / sp)
    # Cliff's delta = 2 U / (n m) - 1 with Mann-Whitney U
    u = sps.mannwhitneyu(a, b).statistic
    assert cliffs_delta(a, b) == pytest.approx(2 * u / 25 - 1)
    assert cliffs_delta([3, 4], [1, 2]) == 1.0 and cliffs_delta([1, 2], [3, 4]) == -1.0
    assert rank_biserial([2, 3, 4], [1, 1, 1]) == 1.0


def test_compare_to_baseline_holm() -> None:
    r = np.random.default_rng(0)
    base = r.normal(0.7, 0.01, 6)
    results = {"random": base, "imagenet": base + 0.05 + r.normal(0, 0.005, 6), "same": base + r.normal(0, 0.01, 6)}
    rows = compare_to_baseline(results, "random")
    by = {row["model"]: row for row in rows}
    assert set(by) == {"imagenet", "same"}
    assert by["imagenet"]["reject"] and by["imagenet"]["pvalue_holm"] >= by["imagenet"]["pvalue"]
    assert by["imagenet"]["effect_size"] > 2
    with pytest.raises(ValueError, match="baseline"):
        compare_to_baseline(results, "nope")


# --------------------------------------------------------------- cluster bootstrap (issue 12: slices of few patients)


def _clustered(n_patients: int, per_patient: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice values dominated by a per-patient effect (slices of one patient are nearly identical)."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.6, 0.15, n_patients)
    values = np.repeat(effect, per_patient) + rng.normal(0, 0.01, n_patients * per_patient)
    return values, np.repeat([f"p{i}" for i in range(n_patients)], per_patient)


def test_cluster_bootstrap_resamples_patients() -> None:
    values, patients = _clustered(12, 8)
    naive = bootstrap_ci(values, n_resamples=1000, seed=0)
    cluster = bootstrap_ci(values, n_resamples=1000, seed=0, groups=patients)
    assert naive.n_units == naive.n_cases == 96 and cluster.n_units == 12 and cluster.n_cases == 96
    assert cluster.estimate == pytest.approx(naive.estimate)
    # 96 slices of 12 patients carry about 12 cases' worth of information: the interval widens accordingly
    assert (cluster.high - cluster.low) > 2 * (naive.high - naive.low)
    # reference: the interval of the 12 patient means, which is what the data can support
    per_patient = bootstrap_ci(values.reshape(12, 8).mean(1), n_resamples=1000, seed=0)
    assert (cluster.high - cluster.low) == pytest.approx(per_patient.high - per_patient.low, rel=0.35)


def test_cluster_bootstrap_with_one_case_per_unit_is_the_case_bootstrap() -> None:
    values = np.random.default_rng(1).normal(size=30)
    a = bootstrap_ci(values, n_resamples=500, seed=3)
    b = bootstrap_ci(values, n_resamples=500, seed=3, groups=[f"id{i}" for i in range(30)])
    assert (a.low, a.high, a.n_units) == (b.low, b.high, b.n_units)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci(values, groups=["a"] * 29)
    with pytest.raises(ValueError, match="independent"):
        bootstrap_ci(values, groups=["a"] * 30)


def test_cluster_bootstrap_keeps_paired_samples_together() -> None:
    y = np.array([0, 1] * 10)
    s = np.where(y == 1, 0.8, 0.2) + np.random.default_rng(0).normal(0, 0.3, 20)
    groups = np.repeat(np.arange(5), 4)
    r = bootstrap_ci((y, s), lambda yy, ss: float(np.corrcoef(yy, ss)[0, 1]), n_resamples=300, seed=0, groups=groups)
    assert r.n_units == 5 and r.low <= r.estimate <= r.high
