"""The study statistics against numpy/scipy (and statsmodels) computed directly on the same synthetic table."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from scipy import stats as sps

from monai_transfer.metrics.power import seeds_needed
from monai_transfer.metrics.stats import bootstrap_ci
from monai_transfer.study.statistics import (
    EQUIVALENCE_MARGINS,
    UNIT_RANGE,
    equivalence_margin,
    higher_is_better,
    paired_comparisons,
    summarize_cells,
    transferability_correlation,
)

from .conftest import FAILED, N_PATIENTS


def _ok_scores(rows, **where) -> dict:
    """Seed -> score of the finished rows matching ``where``."""
    return {r["seed"]: r["score"] for r in rows if r["status"] == "ok" and all(r[k] == v for k, v in where.items())}


def _group(rec: dict) -> dict:
    return {k: rec[k] for k in ("target", "challenge", "start", "backbone", "strategy")}


def test_summaries_match_numpy_and_scipy(study_rows):
    summaries = summarize_cells(study_rows)
    assert len(summaries) == 2 * 5 * 4
    for s in summaries:
        x = np.array(list(_ok_scores(study_rows, **_group(s)).values()))
        assert s["n"] == x.size
        assert s["mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert s["sd"] == pytest.approx(x.std(ddof=1), rel=1e-12)
        low, high = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
        clipped = s["metric"] in UNIT_RANGE and (low < 0 or high > 1)
        if clipped:
            low, high = max(low, 0.0), min(high, 1.0)
        assert (s["ci_low"], s["ci_high"]) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
        assert s["note"] == ("interval clipped to [0, 1]" if clipped else None)


def test_failed_cells_excluded_and_counted(study_rows):
    target, challenge, start, seed = FAILED
    (s,) = [s for s in summarize_cells(study_rows) if (s["target"], s["challenge"], s["start"]) == FAILED[:3]]
    assert (s["n"], s["n_failed"]) == (4, 1)
    assert seed not in s["seeds"]
    assert sum(x["n_failed"] for x in summarize_cells(study_rows)) == 1
    (c,) = [c for c in paired_comparisons(study_rows) if (c["target"], c["challenge"], c["start"]) == FAILED[:3]]
    assert c["n_pairs"] == 4 and seed not in c["seeds"]


def test_one_run_has_no_interval(study_rows):
    rows = [r for r in study_rows if not (r["target"] == "lesion_cls_3d" and r["challenge"] == "full" and r["seed"])]
    s = [s for s in summarize_cells(rows) if s["target"] == "lesion_cls_3d" and s["challenge"] == "full"]
    assert all(x["n"] == 1 and x["ci_low"] is None and x["sd"] is None for x in s)
    assert all(x["note"] == "1 run: no interval" for x in s)


def test_paired_tests_match_scipy(study_rows):
    comps = paired_comparisons(study_rows)
    assert len(comps) == 2 * 5 * 3
    tested = 0
    for c in comps:
        where = {k: c[k] for k in ("target", "challenge", "backbone", "strategy")}
        a, b = _ok_scores(study_rows, start=c["start"], **where), _ok_scores(study_rows, start="random", **where)
        seeds = sorted(set(a) & set(b))
        assert c["seeds"] == seeds and c["n_pairs"] == len(seeds)
        x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
        assert c["mean_diff"] == pytest.approx((x - y).mean(), rel=1e-12)
        if len(seeds) < 3:
            continue
        tested += 1
        assert c["p_t"] == pytest.approx(sps.ttest_rel(x, y).pvalue, rel=1e-9)
        assert c["p_wilcoxon"] == pytest.approx(sps.wilcoxon(x, y).pvalue, rel=1e-9)
        low, high = sps.t.interval(0.95, len(seeds) - 1, loc=(x - y).mean(), scale=sps.sem(x - y))
        assert (c["diff_ci_low"], c["diff_ci_high"]) == (pytest.approx(low), pytest.approx(high))
        d = x - y
        assert c["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert tested == 27


def test_holm_over_the_whole_family(study_rows):
    comps = [c for c in paired_comparisons(study_rows) if c["p_t"] is not None]
    assert all(c["n_family"] == 27 for c in comps)
    for key in ("p_t", "p_wilcoxon"):
        p = np.array([c[key] for c in comps])
        order = np.argsort(p)
        m = p.size
        hand = np.empty(m)
        running = 0.0
        for rank, i in enumerate(order):  # step-down: (m - rank) * p, made monotone, capped at 1
            running = max(running, min(1.0, (m - rank) * p[i]))
            hand[i] = running
        np.testing.assert_allclose([c[f"{key}_holm"] for c in comps], hand, rtol=1e-12)
        multitest = pytest.importorskip("statsmodels.stats.multitest")
        np.testing.assert_allclose(hand, multitest.multipletests(p, method="holm")[1], rtol=1e-12)


def test_verdicts(study_rows):
    comps = paired_comparisons(study_rows)
    full_seeds = [c for c in comps if c["n_pairs"] == 5]
    assert all(c["verdict"] == "better" for c in full_seeds if c["start"] == "ssl_same_pool")
    null = [c for c in full_seeds if c["start"] == "imagenet"]
    assert null and all(c["verdict"].startswith("no significant difference: ") for c in null)
    few = [c for c in comps if c["challenge_kind"] == "domain" and c["target"] == "tissue_seg_3d"]
    assert len(few) == 3
    for c in few:
        assert c["verdict"] == "too few runs (n=2): no test"
        assert c["p_t"] is None and c["p_wilcoxon"] is None and c["p_t_holm"] is None
        assert c["mde_80"] is None and c["seeds_needed"] is None and c["nonsignificance"] is None
    assert all("Wilcoxon" in c["note"] and "cannot reach p < 0.05" in c["note"] for c in full_seeds)


def test_worse_and_lower_is_better(study_rows):
    # the same effects on a loss: lower is better, so ssl_same_pool (now lower) is still "better"
    for r in study_rows:
        r["metric"] = "val_loss"
        r["score"] = None if r["score"] is None else 1 - r["score"]
    assert not higher_is_better("val_loss") and not higher_is_better("hd95") and higher_is_better("mean_dice")
    comps = paired_comparisons(study_rows)
    strong = [c for c in comps if c["start"] == "ssl_same_pool" and c["n_pairs"] == 5]
    assert all(c["mean_diff"] < 0 and c["verdict"] == "better" for c in strong)
    # and with the reference swapped, random is "worse" than ssl_same_pool
    back = paired_comparisons(study_rows, reference="ssl_same_pool")
    assert all(c["verdict"] == "worse" for c in back if c["start"] == "random" and c["n_pairs"] == 5)


def test_all_zero_differences(study_rows):
    rows = [r for r in study_rows if r["start"] in ("random", "imagenet")]
    for r in rows:
        if r["start"] == "imagenet":
            r["score"] = _ok_scores(rows, **{**_group(r), "start": "random"}).get(r["seed"])
            r["status"] = "ok" if r["score"] is not None else "failed"
    comps = paired_comparisons(rows)
    tested = [c for c in comps if c["n_pairs"] >= 3]
    assert tested and all(c["p_t"] == 1.0 and c["p_wilcoxon"] == 1.0 and c["mean_diff"] == 0 for c in tested)
    assert all(c["rank_biserial"] == 0 and c["sd_diff"] == 0 and c["mde_80"] == 0 for c in tested)
    assert all(c["seeds_needed"] is None for c in tested)  # a zero difference is never detected
    # the interval is [0, 0]: within any margin
    assert all(c["verdict"] == "no significant difference: no effect seen (95% CI within ±0.01)" for c in tested)


def test_case_interval_resamples_patients(study_rows):
    seg_full = [s for s in summarize_cells(study_rows) if s["target"] == "tissue_seg_3d" and s["challenge"] == "full"]
    assert len(seg_full) == 4
    for s in seg_full:
        assert (s["n_patients"], s["n_cases"]) == (N_PATIENTS, 2 * N_PATIENTS)
        rows = [r for r in study_rows if r["status"] == "ok" and all(r[k] == v for k, v in _group(s).items())]
        cases = sorted({c["case"] for r in rows for c in r["case_scores"]})
        per_case = np.array(
            [np.mean([c["score"] for r in rows for c in r["case_scores"] if c["case"] == k]) for k in cases]
        )
        patients = [k.split("_")[0] for k in cases]
        assert s["case_mean"] == pytest.approx(per_case.mean())
        assert s["case_ci_low"] < s["case_mean"] < s["case_ci_high"]
        by_patient = bootstrap_ci(per_case, seed=0, groups=patients)
        by_case = bootstrap_ci(per_case, seed=0)
        assert (s["case_ci_low"], s["case_ci_high"]) == (pytest.approx(by_patient.low), pytest.approx(by_patient.high))
        # cases of one patient are correlated: resampling cases would give another (narrower) interval
        assert s["case_ci_high"] - s["case_ci_low"] > by_case.high - by_case.low
    others = [s for s in summarize_cells(study_rows) if s not in seg_full]
    assert all(s["case_ci_low"] is None and s["n_patients"] == 0 for s in others)


def test_transferability_matches_scipy(study_rows):
    corr = transferability_correlation(study_rows)
    assert [(c["target"], c["estimator"]) for c in corr] == [
        (t, e) for t in ("lesion_cls_3d", "tissue_seg_3d") for e in ("knn", "linear_probe", "logme")
    ]
    for c in corr:
        assert c["pooled_over"] == "full" and c["n"] == 4 and c["note"] is None
        starts = sorted({r["start"] for r in study_rows})
        est = [next(r["transferability"][c["estimator"]] for r in study_rows if r["start"] == s) for s in starts]
        score = [
            np.mean(list(_ok_scores(study_rows, target=c["target"], challenge="full", start=s).values()))
            for s in starts
        ]
        assert [p["start"] for p in c["points"]] == starts
        assert c["kendall_tau"] == pytest.approx(sps.kendalltau(est, score).statistic)
        assert c["kendall_p"] == pytest.approx(sps.kendalltau(est, score).pvalue)
        assert c["spearman_rho"] == pytest.approx(sps.spearmanr(est, score).statistic)
        assert c["spearman_p"] == pytest.approx(sps.spearmanr(est, score).pvalue)
    three = transferability_correlation([r for r in study_rows if r["start"] != "imagenet"])
    assert all(c["n"] == 3 and "too few starting points" in c["note"] for c in three)
    pooled = transferability_correlation([r for r in study_rows if r["challenge_kind"] != "full"])
    assert all(c["pooled_over"] == "all challenges" for c in pooled)


def test_outputs_are_json_and_independent_of_row_order(study_rows):
    def run(rows):
        return [summarize_cells(rows, n_resamples=200), paired_comparisons(rows), transferability_correlation(rows)]

    first = json.dumps(run(study_rows), allow_nan=False)
    shuffled = list(study_rows)
    random.Random(0).shuffle(shuffled)
    assert json.dumps(run(shuffled), allow_nan=False) == first


def test_errors(study_rows):
    with pytest.raises(ValueError, match="reference 'scratch'"):
        paired_comparisons(study_rows, reference="scratch")
    with pytest.raises(ValueError, match="duplicates"):
        summarize_cells(study_rows + [dict(study_rows[0], cell="dup")])


def test_interval_of_a_bounded_metric_is_clipped_to_its_range():
    """Three AUROCs near 1 give a t-interval past 1: it is clipped to [0, 1] and the note says so; an unbounded
    metric's interval is left as it is."""
    base = {"target": "t", "challenge": "full", "challenge_kind": "full", "start": "random", "backbone": "r",
            "strategy": "full", "status": "ok", "task": "classification"}  # fmt: skip
    scores = [0.99, 0.80, 0.97]
    rows = [{**base, "metric": "auroc", "seed": i, "score": v} for i, v in enumerate(scores)]
    (s,) = summarize_cells(rows)
    low, high = sps.t.interval(0.95, 2, loc=np.mean(scores), scale=sps.sem(scores))
    assert high > 1 and s["ci_high"] == 1.0 and s["ci_low"] == pytest.approx(low)
    assert s["note"] == "interval clipped to [0, 1]"
    (u,) = summarize_cells([{**r, "metric": "hd95"} for r in rows])
    assert u["ci_high"] == pytest.approx(high) and u["note"] is None


def test_power_figures(study_rows):
    """mde_80 and the seeds needed: the paired t-test's, from the SD of the paired differences (statsmodels too)."""
    ttest_power = pytest.importorskip("statsmodels.stats.power").TTestPower()
    comps = paired_comparisons(study_rows)
    tested = [c for c in comps if c["n_pairs"] >= 3]
    assert len(tested) == 27
    for c in tested:
        a = _ok_scores(study_rows, **{**_group(c), "start": c["start"]})
        b = _ok_scores(study_rows, **{**_group(c), "start": "random"})
        d = np.array([a[s] - b[s] for s in c["seeds"]])
        assert c["sd_diff"] == pytest.approx(d.std(ddof=1), rel=1e-12)
        assert c["power"] == 0.8 and c["equivalence_margin"] == 0.01 and c["margin_source"] == "default"
        effect = ttest_power.solve_power(effect_size=None, nobs=d.size, alpha=0.05, power=0.8)
        assert c["mde_80"] == pytest.approx(effect * d.std(ddof=1), rel=1e-5)
        assert c["seeds_needed"] == seeds_needed(d.mean(), d.std(ddof=1), 0.05, 0.8, min_n=3)
        assert c["seeds_needed_family"] == seeds_needed(d.mean(), d.std(ddof=1), 0.05 / 27, 0.8, min_n=3)
        assert c["seeds_needed_margin"] == seeds_needed(0.01, d.std(ddof=1), 0.05, 0.8, min_n=3)
        if c["seeds_needed"] is not None and c["seeds_needed"] > 3:
            n = ttest_power.solve_power(effect_size=abs(d.mean()) / d.std(ddof=1), nobs=None, alpha=0.05, power=0.8)
            assert c["seeds_needed"] == int(np.ceil(n))
    # a strong effect is detected with fewer seeds than the study ran
    strong = [c for c in tested if c["start"] == "ssl_same_pool"]
    assert all(c["verdict"] == "better" and c["seeds_needed"] <= c["n_pairs"] for c in strong)
    assert all(c["nonsignificance"] is None and c["no_effect_by"] is None for c in strong)


def _rule(c: dict) -> tuple[str, str]:
    """The documented rule, written out again."""
    m = c["equivalence_margin"]
    if -m <= c["diff_ci_low"] and c["diff_ci_high"] <= m:
        return "no effect seen", "ci_within_margin"
    if c["mde_80"] <= m:
        return "no effect seen", "mde_within_margin"
    return "too few runs to tell", "mde_above_margin"


@pytest.mark.parametrize("margins", [None, 0.03, {"auroc": 0.05, "mean_dice": 0.002}])
def test_not_significant_always_says_which(study_rows, margins):
    comps = paired_comparisons(study_rows, margins=margins)
    nonsig = [c for c in comps if c["n_pairs"] >= 3 and c["verdict"] not in ("better", "worse")]
    assert nonsig
    for c in nonsig:
        kind, by = _rule(c)
        assert (c["nonsignificance"], c["no_effect_by"]) == (kind, by)
        assert c["verdict"].startswith(f"no significant difference: {kind}")
        if kind == "too few runs to tell":
            # the seeds it would take to detect the observed difference are in the verdict
            assert f"{c['mean_diff']:+.3g} needs {c['seeds_needed'] or 'more than 1000'} seeds" in c["verdict"]
            if abs(c["mean_diff"]) < c["equivalence_margin"]:
                assert f"±{c['equivalence_margin']:.3g} needs {c['seeds_needed_margin']}" in c["verdict"]


def test_no_effect_seen_by_the_interval(study_rows):
    """A start that is the reference plus tiny noise: its interval lies within ±0.01."""
    rng = np.random.default_rng(0)
    rows = [r for r in study_rows if r["start"] in ("random", "imagenet")]
    for r in rows:
        if r["start"] == "imagenet":
            ref = _ok_scores(rows, **{**_group(r), "start": "random"}).get(r["seed"])
            r["score"] = None if ref is None else ref + float(rng.normal(0, 0.001))
            r["status"] = "ok" if r["score"] is not None else "failed"
    comps = [c for c in paired_comparisons(rows) if c["n_pairs"] >= 3]
    assert comps and all(c["no_effect_by"] == "ci_within_margin" for c in comps)
    assert all(c["verdict"] == "no significant difference: no effect seen (95% CI within ±0.01)" for c in comps)


def test_no_effect_seen_by_the_smallest_detectable_difference(study_rows):
    """A margin between a comparison's mde_80 and the far end of its interval: "no effect seen" by the second
    criterion, and with a margin below its mde_80: "too few runs to tell"."""
    comps = paired_comparisons(study_rows)
    c = next(
        c for c in comps
        if c["nonsignificance"] and c["metric"] == "auroc" and max(-c["diff_ci_low"], c["diff_ci_high"]) > c["mde_80"]
    )  # fmt: skip
    key = {k: c[k] for k in ("target", "challenge", "start")}
    margin = (c["mde_80"] + max(-c["diff_ci_low"], c["diff_ci_high"])) / 2
    again = next(
        x for x in paired_comparisons(study_rows, margins={"auroc": margin}) if all(x[k] == v for k, v in key.items())
    )
    assert again["no_effect_by"] == "mde_within_margin" and again["margin_source"] == "spec"
    assert again["verdict"] == (
        f"no significant difference: no effect seen (5 seeds detect ±{c['mde_80']:.3g} ≤ margin {margin:.3g})"
    )
    small = c["mde_80"] * 0.9
    again = next(x for x in paired_comparisons(study_rows, margins=small) if all(x[k] == v for k, v in key.items()))
    assert again["nonsignificance"] == "too few runs to tell" and again["seeds_needed_margin"] > 5


def test_equivalence_margins():
    assert EQUIVALENCE_MARGINS["auroc"] == EQUIVALENCE_MARGINS["mean_dice"] == 0.01
    assert equivalence_margin("AUROC") == (0.01, "default")
    assert equivalence_margin("auroc", 0.02) == (0.02, "spec")
    assert equivalence_margin("auroc", {"mean_dice": 0.02}) == (0.01, "default")
    assert equivalence_margin("mean_dice", {"mean_dice": 0.02}) == (0.02, "spec")
    assert equivalence_margin("val_loss", reference_mean=-2.0) == (pytest.approx(0.02), "1% of the reference mean")
    assert equivalence_margin("val_loss") == (None, "none")
    for bad in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="equivalence margin"):
            equivalence_margin("auroc", bad)


def test_relative_margin_for_a_metric_without_a_default(study_rows):
    for r in study_rows:
        r["metric"] = "val_loss"
    comps = [c for c in paired_comparisons(study_rows) if c["n_pairs"] >= 3]
    for c in comps:
        assert c["margin_source"] == "1% of the reference mean"
        assert c["equivalence_margin"] == pytest.approx(0.01 * abs(c["mean_reference"]))
        assert c["verdict"] in ("better", "worse") or c["nonsignificance"] in ("no effect seen", "too few runs to tell")


def test_classification_groups_carry_the_runs_test_case_interval(study_rows):
    # AUROC has no per-case value: each run's own test-case interval (score_ci), averaged over its seeds, is the
    # group's test-set interval, apart from the interval over seeds
    rows = [dict(r) for r in study_rows if r["target"] == "lesion_cls_3d" and r["challenge"] == "full"]
    for r in rows:
        r["score_ci"] = [r["score"] - 0.05, r["score"] + 0.03]
    summary = next(s for s in summarize_cells(rows) if s["start"] == "random")
    ok = [r for r in rows if r["start"] == "random" and r["status"] == "ok"]
    assert summary["case_ci_low"] == pytest.approx(np.mean([r["score"] - 0.05 for r in ok]))
    assert summary["case_ci_high"] == pytest.approx(np.mean([r["score"] + 0.03 for r in ok]))
    assert "test-case interval" in summary["case_note"]
    assert summary["ci_low"] != summary["case_ci_low"]  # the two sources of variation stay apart
