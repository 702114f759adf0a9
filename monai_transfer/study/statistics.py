"""Statistics of a study's results table: per-cell summaries over seeds, paired comparisons with a reference starting
point, and how well transferability estimates rank the fine-tuned results.

The input is the results table of a study: one dict per finished or failed cell (``target``, ``challenge``,
``start``, ``backbone``, ``strategy``, ``seed``, ``status``, ``metric``, ``score``, optional ``case_scores`` and
``transferability``; see ``docs/study.md``). The design is paired: for one ``(target, challenge, backbone, strategy,
seed)`` every starting point saw the same labelled subset and split, so starting points are compared seed by seed.

* :func:`summarize_cells` — mean, SD and t-interval over seeds per cell group; a patient-level cluster bootstrap
  interval of the mean case score when rows carry ``case_scores``.
* :func:`paired_comparisons` — every starting point against the reference: mean paired difference with its t-interval,
  paired t-test and Wilcoxon signed-rank test, Holm-adjusted over the whole table, effect sizes, the smallest
  difference the seeds could detect and the seeds the observed difference needs (80 % power), a verdict in words
  that says of every non-significant result whether it is "no effect seen" or "too few runs to tell".
* :func:`transferability_correlation` — Kendall's tau and Spearman's rho between each transferability estimate and
  the mean fine-tuned score, over starting points (x backbones), per target.

Everything returns plain, JSON-serialisable dicts (floats or None, never NaN) in a deterministic order, whatever the
order of the input rows. The tests themselves are those of :mod:`monai_transfer.metrics.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from monai_transfer.metrics.power import DEFAULT_MAX_SEEDS, min_detectable_difference, seeds_needed
from monai_transfer.metrics.stats import bootstrap_ci, cohens_dz, holm, paired_test, rank_biserial

__all__ = [
    "LOWER_IS_BETTER",
    "EQUIVALENCE_MARGINS",
    "RELATIVE_MARGIN",
    "POWER",
    "higher_is_better",
    "equivalence_margin",
    "challenge_sort_key",
    "summarize_cells",
    "paired_comparisons",
    "transferability_correlation",
]

#: Metric names where a lower value is better; any name ending with ``loss`` is lower-is-better too.
LOWER_IS_BETTER: frozenset[str] = frozenset({"hd95", "hausdorff", "hausdorff95", "assd", "asd", "ece", "brier", "nll"})

#: Metrics bounded to [0, 1]: their intervals over seeds are clipped to that range (a t-interval of a few AUROCs
#: near 1 reaches past it), and the record says so.
UNIT_RANGE: frozenset[str] = frozenset({"auroc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity",
                                        "precision", "recall", "mean_dice", "dice", "iou", "ap"})  # fmt: skip

#: Default equivalence margins: a paired difference smaller than this is "no effect" for the purpose of the verdict
#: (see :func:`paired_comparisons`). 0.01 for scores in [0, 1] (one point of AUROC or Dice: below what papers
#: report as a gain), 1 for surface distances (in mm where the images carry a spacing). A spec sets its own with
#: ``equivalence_margin``.
EQUIVALENCE_MARGINS: dict[str, float] = {
    **{m: 0.01 for m in ("auroc", "ap", "auprc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity",
                         "precision", "recall", "mean_dice", "dice", "iou", "ece", "brier")},
    **{m: 1.0 for m in ("hd95", "hausdorff", "hausdorff95", "assd", "asd")},
}  # fmt: skip
#: For a metric without a default margin: this fraction of the reference's mean score (|mean|).
RELATIVE_MARGIN = 0.01
#: The power of the power figures (``mde_80``, ``seeds_needed``): the conventional 80 % (Cohen 1988).
POWER = 0.8

_KIND_ORDER = {"full": 0, "label_fraction": 1, "imbalance": 2, "domain": 3}
#: The Wilcoxon signed-rank test's smallest two-sided exact p-value is 2 / 2**n: below 0.05 only from n = 6.
_WILCOXON_MIN_N = 6
_GROUP = ("target", "challenge", "start", "backbone", "strategy")
_PAIR_GROUP = ("target", "challenge", "backbone", "strategy")


def higher_is_better(metric: str, lower_is_better: Iterable[str] | None = None) -> bool:
    """Whether a higher ``metric`` is better: False for names in ``lower_is_better`` (default
    :data:`LOWER_IS_BETTER`) and for names ending with ``loss``."""
    lower = LOWER_IS_BETTER if lower_is_better is None else frozenset(lower_is_better)
    name = str(metric).lower()
    return not (name in lower or name.endswith("loss"))


def equivalence_margin(
    metric: str, margins: float | Mapping[str, float] | None = None, reference_mean: float | None = None
) -> tuple[float | None, str]:
    """The equivalence margin of ``metric`` and where it comes from.

    Args:
        metric: the metric's name.
        margins: one margin for every metric, or metric name -> margin (the spec's ``equivalence_margin``); a metric
            it does not name falls back to the defaults.
        reference_mean: the reference's mean score, for a metric with neither (:data:`RELATIVE_MARGIN` of it).

    Raises:
        ValueError: a given margin is negative, NaN or infinite.

    Returns:
        ``(margin, source)``: source ``"spec"``, ``"default"`` (:data:`EQUIVALENCE_MARGINS`) or ``"1% of the
        reference mean"``; ``(None, "none")`` when there is nothing to take it from.
    """
    name = str(metric).lower()
    given = margins if isinstance(margins, Mapping) else {} if margins is None else {name: margins}
    given = {str(k).lower(): v for k, v in given.items()}
    if name in given:
        m = float(given[name])
        if not 0 <= m < math.inf:
            raise ValueError(f"the equivalence margin of {metric!r} must be a finite number >= 0, got {given[name]!r}")
        return m, "spec"
    if name in EQUIVALENCE_MARGINS:
        return EQUIVALENCE_MARGINS[name], "default"
    if reference_mean is not None:
        return RELATIVE_MARGIN * abs(float(reference_mean)), f"{RELATIVE_MARGIN:.0%} of the reference mean"
    return None, "none"


def _f(x: Any) -> float | None:
    """A plain float, or None for None/NaN (so the output stays valid JSON)."""
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


def _value_key(v: Any) -> tuple[int, float, str]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, "" if v is None else str(v))


def challenge_sort_key(row: Mapping[str, Any]) -> tuple:
    """Order of challenges in every output: full, label fractions ascending, imbalance, domain shift, others."""
    kind = row.get("challenge_kind")
    return (_KIND_ORDER.get(kind, len(_KIND_ORDER)), _value_key(row.get("challenge_value")), str(row.get("challenge")))


def _group_sort_key(row: Mapping[str, Any], fields: Sequence[str]) -> tuple:
    return tuple(challenge_sort_key(row) if f == "challenge" else str(row.get(f)) for f in fields)


def _is_ok(row: Mapping[str, Any]) -> bool:
    score = row.get("score")
    return row.get("status") == "ok" and score is not None and not math.isnan(float(score))


def _grouped(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> list[tuple[tuple, list[Mapping[str, Any]]]]:
    """Rows grouped by ``fields``, groups in :func:`_group_sort_key` order, rows in each group sorted by seed."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(f) for f in fields), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: _group_sort_key(groups[k][0], fields)):
        out.append((key, sorted(groups[key], key=lambda r: (_value_key(r.get("seed")), str(r.get("cell"))))))
    return out


def _ok_scores_by_seed(rows: Sequence[Mapping[str, Any]]) -> dict[Any, float]:
    """Seed -> score of the rows with status ok; two ok rows of one seed in one group are an error in the table."""
    out: dict[Any, float] = {}
    for r in rows:
        if not _is_ok(r):
            continue
        if r.get("seed") in out:
            raise ValueError(
                f"two finished runs for seed {r.get('seed')!r} of "
                f"{ {f: r.get(f) for f in _GROUP} } (cell {r.get('cell')!r}): the results table has duplicates"
            )
        out[r.get("seed")] = float(r["score"])
    return out


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Student-t interval of the mean, ``mean +- t_{(1+c)/2, n-1} sd / sqrt(n)``; (None, None) with fewer than 2."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None, None
    half = float(sps.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return float(x.mean() - half), float(x.mean() + half)


def _case_interval(
    rows: Sequence[Mapping[str, Any]], confidence: float, n_resamples: int, seed: int
) -> dict[str, Any] | None:
    """Cluster-bootstrap interval of the mean case score: each case's score is first averaged over the seeds that
    scored it, then patients (not cases: cases of one patient are not independent) are resampled."""
    per_case: dict[str, list[float]] = {}
    patient: dict[str, str] = {}
    for r in rows:
        for c in r.get("case_scores") or ():
            if c.get("score") is None or math.isnan(float(c["score"])):
                continue
            case = str(c.get("case"))
            per_case.setdefault(case, []).append(float(c["score"]))
            patient[case] = str(c.get("patient", case))
    if not per_case:
        return _run_intervals(rows)
    cases = sorted(per_case)
    values = np.array([np.mean(per_case[c]) for c in cases])
    groups = [patient[c] for c in cases]
    n_patients = len(set(groups))
    out: dict[str, Any] = {"case_mean": float(values.mean()), "n_cases": len(cases), "n_patients": n_patients}
    if n_patients < 2:
        return {**out, "case_ci_low": None, "case_ci_high": None, "case_note": "1 patient: no case-level interval"}
    res = bootstrap_ci(values, n_resamples=n_resamples, confidence_level=confidence, seed=seed, groups=groups)
    return {**out, "case_ci_low": _f(res.low), "case_ci_high": _f(res.high), "case_note": None}


def _run_intervals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Where a metric has no per-case value (AUROC), each run's own test-case interval (its test cases resampled, the
    metric recomputed: ``score_ci`` of the row), averaged over the seeds: the spread that the test set alone gives,
    kept apart from the spread over seeds (training)."""
    cis = [r["score_ci"] for r in rows if r.get("score_ci") and None not in r["score_ci"]]
    if not cis:
        return None
    low, high = (float(np.mean([c[i] for c in cis])) for i in (0, 1))
    return {"case_mean": float(np.mean([r["score"] for r in rows if r.get("score_ci")])), "case_ci_low": low,
            "case_ci_high": high, "n_cases": rows[0].get("n_test"), "n_patients": None,
            "case_note": f"test-case interval of each run, averaged over {len(cis)} run(s)"}  # fmt: skip


def summarize_cells(
    rows: Iterable[Mapping[str, Any]],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per ``(target, challenge, start, backbone, strategy)``: the finished runs over seeds, summarised.

    Args:
        rows: the results table.
        confidence: level of both intervals.
        n_resamples: bootstrap resamples of the case-level interval.
        seed: seed of the bootstrap (a fresh :func:`numpy.random.default_rng` per group: results do not depend on
            the order of groups).

    Returns:
        One dict per group: the group fields, ``task``, ``challenge_kind``, ``challenge_value``, ``metric``,
        ``higher_is_better``, ``n`` (finished seeds), ``seeds``, ``n_failed``, ``mean``, ``sd``, ``ci_low``/``ci_high``
        (t-interval over seeds; None with n < 2, said in ``note``; clipped to [0, 1] for the metrics in
        :data:`UNIT_RANGE`, also said in ``note``), ``confidence``, ``transferability`` and
        ``domain_gap`` of the group, and, when runs carry ``case_scores``: ``case_mean``, ``case_ci_low``,
        ``case_ci_high`` (BCa cluster bootstrap over patients of the per-case score averaged over seeds), ``n_cases``,
        ``n_patients``.
    """
    out = []
    for key, group in _grouped(rows, _GROUP):
        first = group[0]
        scores = _ok_scores_by_seed(group)
        ok = [r for r in group if _is_ok(r)]
        x = np.array(list(scores.values()), dtype=np.float64)
        n = int(x.size)
        low, high = t_interval(x, confidence)
        note = {0: "no finished run", 1: "1 run: no interval"}.get(n)
        if low is not None and str(first.get("metric", "")).lower() in UNIT_RANGE and (low < 0 or high > 1):
            low, high = max(low, 0.0), min(high, 1.0)
            note = "interval clipped to [0, 1]"
        trans = next((dict(r["transferability"]) for r in group if r.get("transferability")), {})
        gaps = [float(r["domain_gap"]) for r in ok if r.get("domain_gap") is not None]
        rec: dict[str, Any] = {
            **dict(zip(_GROUP, key)),
            "task": first.get("task"),
            "challenge_kind": first.get("challenge_kind"),
            "challenge_value": first.get("challenge_value"),
            "metric": first.get("metric"),
            "higher_is_better": higher_is_better(first.get("metric", "")),
            "n": n,
            "seeds": list(scores),
            "n_failed": sum(1 for r in group if not _is_ok(r)),
            "mean": _f(x.mean()) if n else None,
            "sd": _f(x.std(ddof=1)) if n > 1 else None,
            "ci_low": low,
            "ci_high": high,
            "confidence": confidence,
            "note": note,
            "transferability": {k: _f(v) for k, v in sorted(trans.items())},
            "domain_gap": _f(np.mean(gaps)) if gaps else None,
            "case_mean": None,
            "case_ci_low": None,
            "case_ci_high": None,
            "n_cases": 0,
            "n_patients": 0,
        }
        case = _case_interval(ok, confidence, n_resamples, seed)
        if case is not None:
            rec.update(case)
        out.append(rec)
    return out


def _compare(start_scores: Mapping[Any, float], ref_scores: Mapping[Any, float], confidence: float) -> dict[str, Any]:
    """One start against the reference on their common seeds (no multiplicity correction yet)."""
    seeds = sorted(set(start_scores) & set(ref_scores), key=_value_key)
    a = np.array([start_scores[s] for s in seeds], dtype=np.float64)
    b = np.array([ref_scores[s] for s in seeds], dtype=np.float64)
    n = len(seeds)
    d = a - b
    low, high = t_interval(d, confidence)
    rec: dict[str, Any] = {
        "seeds": seeds,
        "n_pairs": n,
        "mean_start": _f(a.mean()) if n else None,
        "mean_reference": _f(b.mean()) if n else None,
        "mean_diff": _f(d.mean()) if n else None,
        "diff_ci_low": low,
        "diff_ci_high": high,
        "sd_diff": _f(d.std(ddof=1)) if n > 1 else None,
        "t_statistic": None,
        "p_t": None,
        "wilcoxon_statistic": None,
        "p_wilcoxon": None,
        "cohens_dz": None,
        "rank_biserial": None,
    }
    if n < 3:
        return rec
    t = paired_test(a, b, test="t")
    w = paired_test(a, b, test="wilcoxon")
    rec.update(
        t_statistic=_f(t.statistic) if np.isfinite(t.statistic) else None,
        p_t=_f(t.pvalue),
        wilcoxon_statistic=_f(w.statistic),
        p_wilcoxon=_f(w.pvalue),
        cohens_dz=_f(cohens_dz(a, b)) if np.isfinite(cohens_dz(a, b)) else None,
        rank_biserial=_f(rank_biserial(a, b)),
    )
    return rec


def _holm_into(recs: list[dict[str, Any]], key: str, alpha: float) -> None:
    """Holm-adjust ``recs[*][key]`` over the records that have a p-value; write ``<key>_holm``."""
    idx = [i for i, r in enumerate(recs) if r[key] is not None]
    _, adj = holm([recs[i][key] for i in idx], alpha)
    for r in recs:
        r[f"{key}_holm"] = None
    for i, a in zip(idx, adj):
        recs[i][f"{key}_holm"] = float(a)


def _power_into(rec: dict[str, Any], alpha: float, margin: float | None, source: str, max_seeds: int) -> None:
    """The power figures of one comparison (n >= 3 pairs; None below: no test, and no SD worth the name)."""
    n, sd, diff = rec["n_pairs"], rec["sd_diff"], rec["mean_diff"]
    family = max(int(rec["n_family"]), 1)
    tested = n >= 3 and sd is not None
    rec.update(
        equivalence_margin=margin,
        margin_source=source,
        power=POWER,
        mde_80=_f(min_detectable_difference(n, sd, alpha, POWER)) if tested else None,
        seeds_needed=seeds_needed(diff, sd, alpha, POWER, max_n=max_seeds, min_n=3) if tested else None,
        seeds_needed_family=(
            seeds_needed(diff, sd, alpha / family, POWER, max_n=max_seeds, min_n=3) if tested else None
        ),
        seeds_needed_margin=(
            seeds_needed(margin, sd, alpha, POWER, max_n=max_seeds, min_n=3) if tested and margin else None
        ),
        max_seeds=max_seeds,
    )


def _nonsignificance(rec: Mapping[str, Any]) -> tuple[str, str]:
    """Which of the two a non-significant comparison is, and by which criterion (the rule of
    :func:`paired_comparisons`)."""
    m = rec["equivalence_margin"]
    low, high, mde = rec["diff_ci_low"], rec["diff_ci_high"], rec["mde_80"]
    if m is not None and low is not None and -m <= low and high <= m:
        return "no effect seen", "ci_within_margin"
    if m is not None and mde is not None and mde <= m:
        return "no effect seen", "mde_within_margin"
    return "too few runs to tell", "mde_above_margin"


def _seeds_text(k: int | None, max_seeds: int) -> str:
    return f"more than {max_seeds}" if k is None else str(k)


def _verdict(rec: Mapping[str, Any], alpha: float) -> str:
    n = rec["n_pairs"]
    if n < 3:
        return f"too few runs (n={n}): no test"
    if rec["p_t_holm"] is not None and rec["p_t_holm"] < alpha and rec["mean_diff"]:
        improves = rec["mean_diff"] > 0 if rec["higher_is_better"] else rec["mean_diff"] < 0
        return "better" if improves else "worse"
    kind = rec["nonsignificance"]
    m = rec["equivalence_margin"]
    if kind == "no effect seen":
        if rec["no_effect_by"] == "ci_within_margin":
            return f"no significant difference: no effect seen ({rec['confidence']:.0%} CI within ±{m:.3g})"
        return f"no significant difference: no effect seen ({n} seeds detect ±{rec['mde_80']:.3g} ≤ margin {m:.3g})"
    diff, family, most = rec["mean_diff"], rec["n_family"], rec["max_seeds"]
    if diff:
        need = f"{diff:+.3g} needs {_seeds_text(rec['seeds_needed'], most)} seeds"
        if family > 1 and rec["seeds_needed"] is not None:
            need += f" ({_seeds_text(rec['seeds_needed_family'], most)} under Holm over {family} comparisons)"
    else:
        need = "a zero difference is never detected"
    if m and abs(diff or 0.0) < m:  # detecting less than the margin matters little: say what the margin needs
        need += f"; ±{m:.3g} needs {_seeds_text(rec['seeds_needed_margin'], most)}"
    return f"no significant difference: too few runs to tell; {need}"


def _note(rec: Mapping[str, Any]) -> str | None:
    n = rec["n_pairs"]
    if n < 3:
        return f"{n} paired run(s): at least 3 are needed for a test, so no p-values"
    if n < _WILCOXON_MIN_N:
        return (
            f"with n={n} pairs the Wilcoxon signed-rank test cannot reach p < 0.05 two-sided "
            f"(smallest exact p = 2/2^{n} = {2 / 2**n:.3g})"
        )
    return None


def paired_comparisons(
    rows: Iterable[Mapping[str, Any]],
    reference: str = "random",
    alpha: float = 0.05,
    confidence: float = 0.95,
    lower_is_better: Iterable[str] | None = None,
    margins: float | Mapping[str, float] | None = None,
    max_seeds: int = DEFAULT_MAX_SEEDS,
) -> list[dict[str, Any]]:
    """Every starting point against ``reference``, per ``(target, challenge, backbone, strategy)``, paired by seed.

    Only seeds where both runs finished are paired. For ``n_pairs >= 3``: the paired t-test and the Wilcoxon
    signed-rank test (:func:`scipy.stats.wilcoxon`, exact distribution when there are no ties or zero differences,
    zero differences dropped; all-zero differences give p = 1), two-sided; Cohen's ``d_z`` and the matched-pairs
    rank-biserial correlation. The p-values of each test are Holm-adjusted over the WHOLE family of comparisons in
    the table (every target, challenge, backbone, strategy and start), not per target, so the verdicts control the
    family-wise error rate of the whole study.

    The ``verdict``: ``"better"`` / ``"worse"`` when the Holm-adjusted t-test p < ``alpha`` (direction from the sign
    of the mean difference and whether the metric is higher-is-better), ``"too few runs (n=2): no test"`` with fewer
    than 3 pairs (p-values None), and otherwise ``"no significant difference: "`` followed, always, by which of two
    it is (``nonsignificance``), by this rule with the metric's equivalence margin ``m`` (:func:`equivalence_margin`):

    1. ``"no effect seen"`` when the 95 % t-interval of the mean paired difference lies within ``[-m, m]``
       (``no_effect_by = "ci_within_margin"``: an equivalence test, two one-sided tests at 2.5 % each);
    2. else ``"no effect seen"`` when the smallest difference the seeds detect with 80 % power, ``mde_80``, is at most
       ``m`` (``"mde_within_margin"``: an effect as large as the margin would probably have been seen);
    3. else ``"too few runs to tell"`` (``"mde_above_margin"``), with the seeds it would take to detect the observed
       difference at 80 % power (``seeds_needed``) in the verdict.

    Power figures (:mod:`monai_transfer.metrics.power`), for ``n_pairs >= 3``, from the SD of the paired
    differences: ``mde_80`` (smallest detectable ``|difference|`` with these seeds), ``seeds_needed`` (seeds that
    detect the observed mean difference; None: more than ``max_seeds``, or a zero difference), both for one two-sided
    paired t-test at ``alpha``; ``seeds_needed_family`` at ``alpha / n_family`` (Bonferroni, the first step of Holm:
    what the Holm-corrected verdict may need at most) and ``seeds_needed_margin`` (seeds that detect a difference of
    the margin). They rest on the SD estimated from these few seeds, so they are estimates. ``note`` says when the
    Wilcoxon test cannot reach p < 0.05 at all (n < 6).

    Args:
        rows: the results table.
        reference: the starting point compared against (e.g. ``"random"``).
        alpha: family-wise error rate for the verdict.
        confidence: level of the t-interval of the mean difference.
        lower_is_better: metric names where lower is better (default :data:`LOWER_IS_BETTER`; ``*loss`` always).
        margins: the equivalence margin, one for every metric or metric name -> margin; default
            :data:`EQUIVALENCE_MARGINS`, else :data:`RELATIVE_MARGIN` of the reference's mean.
        max_seeds: the most seeds the power figures search.

    Returns:
        One dict per comparison: ``target``, ``task``, ``challenge``, ``challenge_kind``, ``challenge_value``,
        ``backbone``, ``strategy``, ``start``, ``reference``, ``metric``, ``higher_is_better``, ``seeds``,
        ``n_pairs``, ``mean_start``, ``mean_reference``, ``mean_diff`` (start - reference), ``diff_ci_low``,
        ``diff_ci_high``, ``t_statistic``, ``p_t``, ``p_t_holm``, ``wilcoxon_statistic``, ``p_wilcoxon``,
        ``p_wilcoxon_holm``, ``cohens_dz``, ``rank_biserial``, ``n_family``, ``sd_diff``, ``equivalence_margin``,
        ``margin_source``, ``power``, ``mde_80``, ``seeds_needed``, ``seeds_needed_family``, ``seeds_needed_margin``,
        ``max_seeds``, ``nonsignificance`` (None unless the verdict is "no significant difference"),
        ``no_effect_by``, ``verdict``, ``note``.

    Raises:
        ValueError: ``reference`` is not a starting point of the table, or a seed has two finished runs.
    """
    rows = list(rows)
    starts = sorted({str(r.get("start")) for r in rows})
    if reference not in starts:
        raise ValueError(f"reference {reference!r} is not among the starting points of the table: {starts}")
    recs = _pair_records(rows, reference, confidence, lower_is_better)
    # Holm over the whole family (every target, challenge, backbone, strategy and start), not per target
    _holm_into(recs, "p_t", alpha)
    _holm_into(recs, "p_wilcoxon", alpha)
    n_family = sum(1 for r in recs if r["p_t"] is not None)
    for r in recs:
        _judge_into(r, n_family, alpha, confidence, margins, max_seeds)
    return recs


def _pair_records(
    rows: list[Mapping[str, Any]],
    reference: str,
    confidence: float,
    lower_is_better: Iterable[str] | None,
) -> list[dict[str, Any]]:
    """One record per start other than ``reference`` in each ``_PAIR_GROUP`` group: its finished runs paired with the
    reference's by seed and tested (:func:`_compare`); p-values not yet adjusted."""
    recs: list[dict[str, Any]] = []
    for key, group in _grouped(rows, _PAIR_GROUP):
        by_start = {s: [r for r in group if r.get("start") == s] for s in sorted({str(r.get("start")) for r in group})}
        ref_scores = _ok_scores_by_seed(by_start.get(reference, []))
        for start, srows in by_start.items():
            if start == reference:
                continue
            first = srows[0]
            metric = first.get("metric", "")
            recs.append(
                {
                    **dict(zip(_PAIR_GROUP, key)),
                    "task": first.get("task"),
                    "challenge_kind": first.get("challenge_kind"),
                    "challenge_value": first.get("challenge_value"),
                    "start": start,
                    "reference": reference,
                    "metric": metric,
                    "higher_is_better": higher_is_better(metric, lower_is_better),
                    **_compare(_ok_scores_by_seed(srows), ref_scores, confidence),
                }
            )
    return recs


def _judge_into(
    r: dict[str, Any],
    n_family: int,
    alpha: float,
    confidence: float,
    margins: float | Mapping[str, float] | None,
    max_seeds: int,
) -> None:
    """Add to one Holm-adjusted record its power figures, which kind of non-significance it is, verdict and note."""
    r["n_family"] = n_family
    r["alpha"] = alpha
    r["confidence"] = confidence
    _power_into(r, alpha, *equivalence_margin(r["metric"], margins, r["mean_reference"]), max_seeds)
    significant = r["p_t_holm"] is not None and r["p_t_holm"] < alpha and bool(r["mean_diff"])
    tested = r["n_pairs"] >= 3
    r["nonsignificance"], r["no_effect_by"] = _nonsignificance(r) if tested and not significant else (None, None)
    r["verdict"] = _verdict(r, alpha)
    r["note"] = _note(r)


def _corr(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Kendall's tau-b and Spearman's rho with two-sided p-values; None where undefined (n < 2 or a constant)."""
    nothing = {"kendall_tau": None, "kendall_p": None, "spearman_rho": None, "spearman_p": None}
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nothing
    k = sps.kendalltau(x, y)
    s = sps.spearmanr(x, y)
    return {
        "kendall_tau": _f(k.statistic),
        "kendall_p": _f(k.pvalue),
        "spearman_rho": _f(s.statistic),
        "spearman_p": _f(s.pvalue),
    }


def transferability_correlation(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """How well each transferability estimate ranks the starting points, per target.

    A point is one ``(start, backbone)``: its estimate (computed once before fine-tuning) against its mean fine-tuned
    score over the finished runs of the "full" challenge, or over all challenges pooled when the target has no
    "full" run (``pooled_over`` says which). Runs of every strategy are pooled. Kendall's tau-b and Spearman's rho
    with two-sided p-values (:func:`scipy.stats.kendalltau`, :func:`scipy.stats.spearmanr`); with fewer than 4
    points ``note`` says they mean little. The sign is as computed: for a lower-is-better metric a good estimator
    correlates negatively.

    Returns:
        One dict per ``(target, estimator)`` sorted by both: ``target``, ``estimator``, ``metric``, ``pooled_over``,
        ``n``, ``kendall_tau``, ``kendall_p``, ``spearman_rho``, ``spearman_p``, ``note``, ``points`` (``start``,
        ``backbone``, ``estimate``, ``score``, ``n_runs``).
    """
    # a fixed row order: means are then bit-identical whatever the order of the table
    ok = sorted((r for r in rows if _is_ok(r)), key=lambda r: (_group_sort_key(r, _GROUP), _value_key(r.get("seed"))))
    out = []
    for target in sorted({str(r.get("target")) for r in ok}):
        trows = [r for r in ok if str(r.get("target")) == target]
        full = [r for r in trows if r.get("challenge_kind") == "full"]
        used, pooled = (full, "full") if full else (trows, "all challenges")
        points: dict[tuple[str, str], dict[str, Any]] = {}
        for r in used:
            p = points.setdefault((str(r.get("start")), str(r.get("backbone"))), {"scores": [], "estimates": {}})
            p["scores"].append(float(r["score"]))
            for name, v in (r.get("transferability") or {}).items():
                if v is not None and not math.isnan(float(v)):
                    p["estimates"].setdefault(name, float(v))
        estimators = sorted({name for p in points.values() for name in p["estimates"]})
        for est in estimators:
            pts = [
                {"start": s, "backbone": b, "estimate": p["estimates"][est], "score": float(np.mean(p["scores"])),
                 "n_runs": len(p["scores"])}
                for (s, b), p in sorted(points.items()) if est in p["estimates"]
            ]  # fmt: skip
            x = np.array([p["estimate"] for p in pts])
            y = np.array([p["score"] for p in pts])
            n = len(pts)
            note = f"{n} starting point(s): too few starting points to mean anything" if n < 4 else None
            out.append(
                {
                    "target": target,
                    "estimator": est,
                    "metric": used[0].get("metric"),
                    "pooled_over": pooled,
                    "n": n,
                    **_corr(x, y),
                    "note": note,
                    "points": pts,
                }
            )
    return out
