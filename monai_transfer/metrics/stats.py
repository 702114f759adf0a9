"""Statistics for comparing starting points: bootstrap confidence intervals, paired tests, Holm correction,
effect sizes.

* :func:`bootstrap_ci` — percentile and BCa intervals (Efron and Tibshirani 1993, "An Introduction to the Bootstrap",
  ch. 13-14) for any statistic of one or several paired per-case arrays, resampling cases with a seeded
  :class:`numpy.random.Generator`; with ``groups`` (e.g. the patient of each slice) whole groups are resampled
  (cluster bootstrap, Davison and Hinkley 1997, "Bootstrap Methods and their Application", sec. 3.8), since cases of
  one patient are not independent.
* :func:`bootstrap_paired_difference` — CI of ``metric(model A) - metric(model B)`` on the same resampled cases.
* :func:`paired_test` — paired t-test (with Cohen's ``d_z``) or Wilcoxon signed-rank test (with the matched-pairs
  rank-biserial correlation, Kerby 2014), e.g. across seeds or cases.
* :func:`holm` — Holm-Bonferroni step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple
  test procedure").
* Effect sizes: :func:`cohens_dz`, :func:`hedges_g` (Hedges 1981), :func:`cliffs_delta` (Cliff 1993),
  :func:`rank_biserial`.
* :func:`compare_to_baseline` — one call for a results table: every model against a baseline, paired test, effect
  size, Holm-adjusted p.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr, ndtri

__all__ = [
    "BootstrapResult",
    "PairedTestResult",
    "bootstrap_ci",
    "bootstrap_paired_difference",
    "paired_test",
    "holm",
    "cohens_dz",
    "hedges_g",
    "cliffs_delta",
    "rank_biserial",
    "compare_to_baseline",
]


@dataclass
class BootstrapResult:
    """A bootstrap confidence interval.

    Attributes:
        estimate: the statistic on the original cases.
        low: lower confidence limit.
        high: upper confidence limit.
        standard_error: standard deviation of the bootstrap distribution.
        confidence_level: e.g. 0.95.
        method: ``"percentile"`` or ``"bca"``.
        n_resamples: number of bootstrap resamples.
        n_cases: number of cases.
        n_units: number of independent units resampled (groups with ``groups``, else the cases): what the interval
            rests on.
    """

    estimate: float
    low: float
    high: float
    standard_error: float
    confidence_level: float
    method: str
    n_resamples: int
    n_cases: int
    n_units: int = 0

    def __post_init__(self) -> None:
        if not self.n_units:
            self.n_units = self.n_cases

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairedTestResult:
    """A paired comparison.

    Attributes:
        test: ``"t"`` (paired t-test) or ``"wilcoxon"`` (signed-rank).
        statistic: t, or Wilcoxon's W (the smaller of the positive/negative rank sums, as scipy reports it).
        pvalue: p-value for ``alternative``.
        effect_size: Cohen's ``d_z`` (t-test) or the matched-pairs rank-biserial correlation (Wilcoxon).
        effect_size_name: ``"cohens_dz"`` or ``"rank_biserial"``.
        mean_difference: mean of ``a - b``.
        n: number of pairs.
        alternative: ``"two-sided"``, ``"greater"`` (a > b) or ``"less"``.
    """

    test: str
    statistic: float
    pvalue: float
    effect_size: float
    effect_size_name: str
    mean_difference: float
    n: int
    alternative: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_samples(data: Any) -> tuple[np.ndarray, ...]:
    samples = tuple(np.asarray(d) for d in data) if isinstance(data, tuple) else (np.asarray(data),)
    n = len(samples[0])
    if n < 2:
        raise ValueError(f"need at least 2 cases to bootstrap, got {n}")
    for s in samples:
        if len(s) != n:
            raise ValueError(
                f"all samples must have the same number of cases (paired), got {[len(x) for x in samples]}"
            )
    return samples


def _stat(statistic: Callable[..., Any], samples: Sequence[np.ndarray]) -> float:
    return float(statistic(*samples))


def _units(groups: Any, n: int) -> list[np.ndarray] | None:
    """Case indices per independent unit, or None when every case is its own unit (plain case resampling)."""
    if groups is None:
        return None
    g = [str(v) for v in np.asarray(groups, dtype=object).ravel()]
    if len(g) != n:
        raise ValueError(f"groups must give one unit per case: {len(g)} groups for {n} cases")
    _, inverse = np.unique(np.asarray(g), return_inverse=True)
    n_units = int(inverse.max()) + 1
    if n_units < 2:
        raise ValueError(f"all {n} cases belong to one unit: no independent units to resample")
    if n_units == n:
        return None
    return [np.flatnonzero(inverse == u) for u in range(n_units)]


def bootstrap_ci(
    data: Any,
    statistic: Callable[..., Any] | None = None,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    method: str = "bca",
    seed: int | np.random.Generator = 0,
    return_distribution: bool = False,
    groups: Any = None,
) -> BootstrapResult | tuple[BootstrapResult, np.ndarray]:
    """Bootstrap confidence interval of ``statistic`` over cases.

    Cases (axis 0) are resampled with replacement; when ``data`` is a tuple of arrays the same case indices are used
    for every array (paired resampling: ``(y_true, y_score)`` for AUROC, or two models' scores). With ``groups``,
    whole groups are drawn with replacement (as many as there are groups) and the BCa acceleration comes from a
    leave-one-group-out jackknife; when every group holds one case this is the plain case bootstrap.

    Args:
        data: per-case values ``(N, ...)``, or a tuple of such arrays with the same ``N``.
        statistic: ``f(*samples) -> float``; default: the mean of the single sample (NaN-aware).
        n_resamples: number of bootstrap resamples.
        confidence_level: e.g. 0.95.
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated; jackknife acceleration).
        seed: an int or a :class:`numpy.random.Generator`.
        return_distribution: also return the bootstrap values.
        groups: the independent unit of each case (e.g. ``patient_id`` of 2D slices), or None: cases are independent.

    Returns:
        A :class:`BootstrapResult` (and the bootstrap values when asked). Resamples where the statistic is undefined
        (NaN, e.g. AUROC of a resample with one class) are dropped from the interval.
    """
    samples = _as_samples(data)
    if statistic is None:
        if len(samples) != 1:
            raise ValueError("give a statistic for several samples")
        statistic = np.nanmean
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = len(samples[0])
    units = _units(groups, n)
    theta_hat = _stat(statistic, samples)
    if units is None:
        idx = rng.integers(0, n, (n_resamples, n))
    else:
        draws = rng.integers(0, len(units), (n_resamples, len(units)))
        idx = [np.concatenate([units[u] for u in d]) for d in draws]
    theta_b = np.array([_stat(statistic, [s[i] for s in samples]) for i in idx], dtype=np.float64)
    valid = theta_b[np.isfinite(theta_b)]
    alpha = (1 - confidence_level) / 2
    if valid.size == 0 or not np.isfinite(theta_hat):
        low = high = float("nan")
    elif method == "percentile":
        low, high = (float(v) for v in np.percentile(valid, [100 * alpha, 100 * (1 - alpha)]))
    else:
        # bias correction: share of bootstrap values below the estimate (ties count half), as scipy does
        p0 = (np.sum(valid < theta_hat) + 0.5 * np.sum(valid == theta_hat)) / valid.size
        z0 = ndtri(np.clip(p0, 1e-12, 1 - 1e-12))
        # acceleration from the jackknife (leave one case out)
        left_out = [np.array([i]) for i in range(n)] if units is None else units
        theta_j = np.array([_stat(statistic, [np.delete(s, i, axis=0) for s in samples]) for i in left_out])
        theta_j = theta_j[np.isfinite(theta_j)]
        u = theta_j.mean() - theta_j
        den = 6.0 * np.sum(u**2) ** 1.5
        a = float(np.sum(u**3) / den) if den > 0 else 0.0
        zs = ndtri(np.array([alpha, 1 - alpha]))
        adj = ndtr(z0 + (z0 + zs) / (1 - a * (z0 + zs)))
        if not np.all(np.isfinite(adj)):
            adj = np.array([alpha, 1 - alpha])
        low, high = (float(v) for v in np.percentile(valid, 100 * adj))
    res = BootstrapResult(
        estimate=theta_hat,
        low=low,
        high=high,
        standard_error=float(np.std(valid, ddof=1)) if valid.size > 1 else float("nan"),
        confidence_level=confidence_level,
        method=method,
        n_resamples=n_resamples,
        n_cases=n,
        n_units=n if units is None else len(units),
    )
    return (res, theta_b) if return_distribution else res


def bootstrap_paired_difference(
    metric_fn: Callable[..., Any],
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    method: str = "bca",
    seed: int | np.random.Generator = 0,
    groups: Any = None,
) -> BootstrapResult:
    """CI of ``metric_fn(y_true, pred_a) - metric_fn(y_true, pred_b)``, both models scored on the same resampled cases.

    Args:
        metric_fn: ``f(y_true, y_pred) -> float`` over cases (e.g. :func:`~monai_transfer.metrics.classification.auroc`).
            For values that are already per case (Dice per case) use
            ``bootstrap_ci((dice_a, dice_b), lambda a, b: a.mean() - b.mean())`` instead.
        y_true: targets ``(N, ...)``.
        pred_a: model A's predictions ``(N, ...)``.
        pred_b: model B's predictions on the same cases ``(N, ...)``.
        n_resamples: number of bootstrap resamples.
        confidence_level: e.g. 0.95.
        method: ``"percentile"`` or ``"bca"``.
        seed: an int or a Generator.
        groups: the independent unit of each case (patients of slices), as in :func:`bootstrap_ci`.

    Returns:
        A :class:`BootstrapResult`; an interval that excludes 0 indicates a difference at that level.
    """

    def diff(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float(metric_fn(y, a)) - float(metric_fn(y, b))

    out = bootstrap_ci(
        (np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)),
        diff,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        method=method,
        seed=seed,
        groups=groups,
    )
    assert isinstance(out, BootstrapResult)
    return out


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples need the same length, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError("need at least 2 pairs")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("paired samples contain NaN or infinite values")
    return x, y


def cohens_dz(a: Any, b: Any) -> float:
    """Cohen's ``d_z`` for paired samples: ``mean(a - b) / sd(a - b)`` (sd with ddof=1)."""
    x, y = _paired(a, b)
    d = x - y
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
    return float(d.mean() / sd)


def hedges_g(a: Any, b: Any) -> float:
    """Hedges' g for two independent samples: Cohen's d with the pooled SD times ``J = 1 - 3 / (4 (n1 + n2) - 9)``
    (Hedges 1981, "Distribution theory for Glass's estimator of effect size and related estimators")."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    n1, n2 = x.size, y.size
    if n1 < 2 or n2 < 2:
        raise ValueError("Hedges' g needs at least 2 values per group")
    sp = np.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2))
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    diff = x.mean() - y.mean()
    if sp == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(j * diff / sp)


def cliffs_delta(a: Any, b: Any) -> float:
    """Cliff's delta for two independent samples: ``P(a > b) - P(a < b)`` over all pairs (Cliff 1993), in [-1, 1].
    Equals the (Glass) rank-biserial correlation of the Mann-Whitney U test."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("Cliff's delta needs non-empty samples")
    s = np.sign(x[:, None] - y[None, :])
    return float(s.mean())


def rank_biserial(a: Any, b: Any) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014): ``(R+ - R-) / (R+ + R-)`` over the signed ranks of the
    non-zero differences ``a - b``, in [-1, 1]; the effect size of the Wilcoxon signed-rank test."""
    x, y = _paired(a, b)
    d = x - y
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    r = sps.rankdata(np.abs(d))
    rp, rm = r[d > 0].sum(), r[d < 0].sum()
    return float((rp - rm) / (rp + rm))


def paired_test(a: Any, b: Any, test: str = "t", alternative: str = "two-sided") -> PairedTestResult:
    """Paired comparison of two models on the same seeds (or cases).

    Args:
        a: model A's metric per seed/case.
        b: model B's metric on the same seeds/cases.
        test: ``"t"`` (paired t-test: ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1`` degrees of freedom) or
            ``"wilcoxon"`` (signed-rank test via :func:`scipy.stats.wilcoxon`, zero differences dropped; exact
            distribution for small samples without ties).
        alternative: ``"two-sided"``, ``"greater"`` (A better when higher is better) or ``"less"``.

    Returns:
        A :class:`PairedTestResult` with the statistic, p-value and effect size.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    x, y = _paired(a, b)
    d = x - y
    n = d.size
    if test == "t":
        sd = d.std(ddof=1)
        if sd == 0:
            t = 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
        else:
            t = float(d.mean() / (sd / np.sqrt(n)))
        dist = sps.t(df=n - 1)
        if alternative == "two-sided":
            p = float(2 * dist.sf(abs(t))) if np.isfinite(t) or t == 0 else 0.0
        elif alternative == "greater":
            p = float(dist.sf(t))
        else:
            p = float(dist.cdf(t))
        return PairedTestResult("t", t, min(p, 1.0), cohens_dz(x, y), "cohens_dz", float(d.mean()), n, alternative)
    if test == "wilcoxon":
        if np.all(d == 0):
            return PairedTestResult("wilcoxon", 0.0, 1.0, 0.0, "rank_biserial", 0.0, n, alternative)
        r = sps.wilcoxon(x, y, alternative=alternative, zero_method="wilcox")
        return PairedTestResult(
            "wilcoxon", float(r.statistic), float(r.pvalue), rank_biserial(x, y), "rank_biserial", float(d.mean()), n,
            alternative,
        )  # fmt: skip
    raise ValueError(f"test must be 't' or 'wilcoxon', got {test!r}")


def holm(pvalues: Any, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm-Bonferroni step-down correction (Holm 1979).

    With the p-values sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted value is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a hypothesis is rejected when its adjusted p-value is ``<= alpha``.

    Args:
        pvalues: ``m`` p-values (any order).
        alpha: family-wise error rate.

    Returns:
        ``(reject, adjusted)`` arrays in the input order (same as ``statsmodels.stats.multitest.multipletests(...,
        method="holm")[:2]``).
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    if np.any(~np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adj_sorted
    return adjusted <= alpha, adjusted


def compare_to_baseline(
    results: Mapping[str, Sequence[float]],
    baseline: str,
    test: str = "t",
    alternative: str = "two-sided",
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Compare every model with ``baseline`` on paired results (per seed or per case), Holm-corrected.

    Args:
        results: model name -> metric per seed (the same seeds, in the same order, for every model).
        baseline: the reference model's name (e.g. ``"random_init"``).
        test: ``"t"`` or ``"wilcoxon"``.
        alternative: passed to :func:`paired_test`.
        alpha: family-wise error rate for Holm.

    Returns:
        One row per other model: ``model``, ``baseline``, ``mean``, ``baseline_mean``, ``mean_difference``, ``test``,
        ``statistic``, ``pvalue``, ``pvalue_holm``, ``reject``, ``effect_size``, ``effect_size_name``, ``n``.
    """
    if baseline not in results:
        raise ValueError(f"baseline {baseline!r} not among the results: {sorted(results)}")
    rows = []
    for name, vals in results.items():
        if name == baseline:
            continue
        r = paired_test(vals, results[baseline], test=test, alternative=alternative)
        rows.append(
            {
                "model": name,
                "baseline": baseline,
                "mean": float(np.mean(vals)),
                "baseline_mean": float(np.mean(results[baseline])),
                **{k: v for k, v in r.to_dict().items() if k != "alternative"},
            }
        )
    reject, adj = holm([r["pvalue"] for r in rows], alpha)
    for r, rej, a in zip(rows, reject, adj):
        r["pvalue_holm"], r["reject"] = float(a), bool(rej)
    return rows
