"""The report of a study: the results table as CSV, the statistics as JSON, figures, and the same findings as
Markdown and as one self-contained HTML page.

:func:`write_report` takes the results table (one dict per cell, see :mod:`monai_transfer.study.statistics`) and
writes, atomically, into ``out_dir``: ``results.csv``, ``summary.json``, the PNG figures of
:mod:`monai_transfer.study.plots`, ``report.md`` and ``report.html``. The page needs nothing else: inline CSS, the
figures as base64 data URIs, and a few lines of script that mark ``<body data-rendered="sections/images">`` once the
page has loaded (checked by a headless browser in the tests). Both documents are built from one list of sections, so
they always say the same thing.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_transfer import __version__
from monai_transfer.study.plots import (
    challenge_drops,
    plot_challenge_drops,
    plot_comparison_heatmap,
    plot_label_efficiency,
    plot_transferability,
)
from monai_transfer.study.statistics import (
    POWER,
    challenge_sort_key,
    paired_comparisons,
    summarize_cells,
    transferability_correlation,
)
from monai_transfer.utils.atomic import atomic_write_json, atomic_write_text

__all__ = ["write_report", "results_csv"]

BASE_COLUMNS = (
    "cell", "target", "task", "challenge", "challenge_kind", "challenge_value", "start", "backbone", "strategy", "seed",
    "status", "metric", "score", "n_train", "duration_s", "domain_gap", "probe", "precision",
)  # fmt: skip
#: a classification cell's decision (chosen on validation), as results.csv gives it
DECISION_COLUMNS = ("threshold_rule", "threshold", "temperature")
FIGURES = {
    "label_efficiency": "label_efficiency.png",
    "challenge_drops": "challenge_drops.png",
    "comparisons": "comparisons.png",
    "transferability": "transferability.png",
}


@dataclass
class _Section:
    """One section of the report: an anchor id, a heading, and blocks ``("p", text)``, ``("table", header, rows)``
    or ``("img", figure key, alt text)``."""

    id: str
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def img(self, key: str, alt: str) -> None:
        self.blocks.append(("img", key, alt))


def _num(x: Any, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def _p(x: Any) -> str:
    if x is None:
        return "–"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _ci(low: Any, high: Any) -> str:
    return "" if low is None else f" [{low:.3f}, {high:.3f}]"


def _cell_value(v: Any) -> Any:
    return "" if v is None else v


def _sorted_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    key = ("target", "start", "backbone", "strategy")
    return sorted(rows, key=lambda r: (str(r.get("target")), challenge_sort_key(r), *(str(r.get(k)) for k in key[1:]),
                                       str(r.get("seed")), str(r.get("cell"))))  # fmt: skip


def results_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The results table as CSV text: one row per cell, the base columns, ``metric_<name>`` per metric,
    ``transferability_<name>`` per estimator, then ``error``."""
    rows = _sorted_rows(rows)
    metrics = sorted({k for r in rows for k in (r.get("metrics") or {})})
    estimators = sorted({k for r in rows for k in (r.get("transferability") or {})})
    header = [*BASE_COLUMNS, *DECISION_COLUMNS, *(f"metric_{m}" for m in metrics),
              *(f"transferability_{e}" for e in estimators), "error"]  # fmt: skip
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(
            [_cell_value(r.get(c)) for c in BASE_COLUMNS]
            + [_cell_value((r.get("decision") or {}).get(k)) for k in ("rule", "threshold", "temperature")]
            + [_cell_value((r.get("metrics") or {}).get(m)) for m in metrics]
            + [_cell_value((r.get("transferability") or {}).get(e)) for e in estimators]
            + [_cell_value(r.get("error"))]
        )
    return buf.getvalue()


def _several(items: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the table has more than one (backbone, strategy): then the tables name them."""
    return len({(s.get("backbone"), s.get("strategy")) for s in items}) > 1


def _start_label(s: Mapping[str, Any], several: bool) -> str:
    return f"{s['start']} ({s['backbone']}, {s['strategy']})" if several else str(s["start"])


def _case_level(s: Mapping[str, Any], several: bool) -> str:
    if s["case_mean"] is None:
        return "–"
    unit = (
        f" ({s['n_patients']} patients)"
        if s.get("n_patients")
        else f" ({s['n_cases']} cases)" if s.get("n_cases") else ""
    )
    return f"{s['case_mean']:.3f}{_ci(s['case_ci_low'], s['case_ci_high'])}{unit}"


#: The columns of the per-cell summary tables: (header, value of one summary record). A new column is one entry.
SUMMARY_COLUMNS: list[tuple[str, Any]] = [
    ("target", lambda s, several: str(s["target"])),
    ("challenge", lambda s, several: str(s["challenge"])),
    ("start", _start_label),
    ("n", lambda s, several: str(s["n"])),
    ("mean [95% CI]", lambda s, several: f"{_num(s['mean'])}{_ci(s['ci_low'], s['ci_high'])}"),
    ("sd", lambda s, several: _num(s["sd"])),
    ("case-level mean [95% CI]", _case_level),
    ("failed", lambda s, several: str(s["n_failed"])),
    ("note", lambda s, several: s["note"] or ""),
]


def _summary_table(sec: _Section, summaries: Sequence[Mapping[str, Any]], several: bool) -> None:
    sec.table([h for h, _ in SUMMARY_COLUMNS], [[f(s, several) for _, f in SUMMARY_COLUMNS] for s in summaries])


#: threshold-dependent and calibration metrics of the decisions table, in its column order
DECISION_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "accuracy_at_0.5", "ece", "brier")


def _decision_rows(rows: Sequence[Mapping[str, Any]], several: bool) -> list[list[str]]:
    """Per (target, challenge, start, backbone, strategy) of the finished classification cells: the rule, the spread
    of the thresholds the runs chose on validation, and the means over seeds of the metrics decided at them."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in _sorted_rows(rows):
        if r.get("status") == "ok" and r.get("task") == "classification" and isinstance(r.get("decision"), Mapping):
            key = tuple(r.get(k) for k in ("target", "challenge", "start", "backbone", "strategy"))
            groups.setdefault(key, []).append(r)
    table = []
    for (target, challenge, start, backbone, strategy), runs in groups.items():
        rules = sorted({str(r["decision"].get("rule")) for r in runs})
        ts = sorted(float(r["decision"]["threshold"]) for r in runs if r["decision"].get("threshold") is not None)
        temps = [float(r["decision"]["temperature"]) for r in runs if r["decision"].get("temperature")]
        spread = f" [{ts[0]:.3f}, {ts[-1]:.3f}]" if len(ts) > 1 else ""
        threshold = f"{statistics.median(ts):.3f}{spread}" if ts else "–"
        means = []
        for m in DECISION_METRICS:
            v = [float(r["metrics"][m]) for r in runs if isinstance((r.get("metrics") or {}).get(m), (int, float))]
            v = [x for x in v if x == x]
            means.append(_num(sum(v) / len(v)) if v else "–")
        label = _start_label({"start": start, "backbone": backbone, "strategy": strategy}, several)
        table.append([str(target), str(challenge), label, str(len(runs)), ", ".join(rules), threshold,
                      f"{sum(temps) / len(temps):.2f}" if temps else "–", *means])  # fmt: skip
    return table


def _seeds(k: Any, c: Mapping[str, Any]) -> str:
    return "–" if c["mde_80"] is None else (f"> {c['max_seeds']}" if k is None else str(k))


#: The columns of the paired-comparison table: (header, value of one comparison record).
COMPARISON_COLUMNS: list[tuple[str, Any]] = [
    ("start", _start_label),
    ("target", lambda c, several: str(c["target"])),
    ("challenge", lambda c, several: str(c["challenge"])),
    ("n", lambda c, several: str(c["n_pairs"])),
    ("mean diff [95% CI]", lambda c, several: f"{_num(c['mean_diff'], '+.3f')}{_ci(c['diff_ci_low'], c['diff_ci_high'])}"),
    ("p t / p Wilcoxon (Holm)", lambda c, several: f"{_p(c['p_t_holm'])} / {_p(c['p_wilcoxon_holm'])}"),
    ("effect size (d_z / r_rb)", lambda c, several: f"{_num(c['cohens_dz'], '.2f')} / {_num(c['rank_biserial'], '.2f')}"),
    ("detectable at 80% power", lambda c, several: "–" if c["mde_80"] is None else f"±{c['mde_80']:.3f}"),
    ("seeds for the observed diff (one test / Holm)",
     lambda c, several: f"{_seeds(c['seeds_needed'], c)} / {_seeds(c['seeds_needed_family'], c)}"),
    ("verdict", lambda c, several: str(c["verdict"])),
]  # fmt: skip


def _margins(comps: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Metric -> the equivalence margin its comparisons used and where it came from (a relative margin varies)."""
    out: dict[str, dict[str, Any]] = {}
    for c in comps:
        m = out.setdefault(str(c["metric"]), {"margin": c["equivalence_margin"], "source": c["margin_source"]})
        if m["margin"] != c["equivalence_margin"]:
            m["margin"] = None  # a relative margin: one per comparison
    return dict(sorted(out.items()))


def _margin_text(comps: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{metric} {m['source']}" if m["margin"] is None else f"{metric} ±{m['margin']:.3g} ({m['source']})"
        for metric, m in _margins(comps).items()
    )


#: The decision rule after "no significant difference", in words (the report and docs/studies.md say the same).
POWER_RULE = (
    'Every "no significant difference" is followed by which of two it is. "No effect seen": the {conf} CI of the '
    "mean paired difference lies within ± the equivalence margin, or else the smallest difference these seeds detect "
    'with 80% power is at most the margin. "Too few runs to tell": neither; the verdict then gives the seeds that '
    "would detect the observed difference with 80% power, in one test and under the Holm correction over the "
    "{family} comparisons, and the seeds that would detect the margin when the observed difference is smaller. "
    "Power figures: two-sided paired t-test at alpha {alpha} (noncentral t), from the SD of the paired differences "
    "of these seeds, so themselves estimates (with 3 to 5 seeds the SD is uncertain by about a factor of two). "
    "Equivalence margins: {margins}."
)


def _power_rule(comps: Sequence[Mapping[str, Any]], alpha: float) -> str:
    conf = comps[0].get("confidence", 0.95) if comps else 0.95
    family = comps[0]["n_family"] if comps else 0
    return POWER_RULE.format(conf=f"{conf:.0%}", family=family, alpha=alpha, margins=_margin_text(comps) or "none")


def _why_not(c: Mapping[str, Any]) -> str:
    """The part of a "no significant difference" verdict that says which of the two it is, in words."""
    return str(c["verdict"]).split(": ", 1)[-1]


def _why_not_short(c: Mapping[str, Any]) -> str:
    """Which of the two, with the seeds the observed difference needs in one test (the table has the rest)."""
    if c["nonsignificance"] != "too few runs to tell":
        return str(c["nonsignificance"])
    most, m = c["max_seeds"], c["equivalence_margin"]
    need = [f"{c['mean_diff']:+.3f} needs {_seeds_words(c['seeds_needed'], most)} seeds"] if c["mean_diff"] else []
    if m and abs(c["mean_diff"] or 0.0) < m:
        need.append(f"±{m:.3g} needs {_seeds_words(c['seeds_needed_margin'], most)}")
    return ": ".join(["too few runs to tell", ", ".join(need)]) if need else "too few runs to tell"


def _seeds_words(k: int | None, most: int) -> str:
    return f"more than {most}" if k is None else str(k)


def _summary_sentences(summaries: Sequence[Mapping[str, Any]], comps: Sequence[Mapping[str, Any]], reference: str,
                       several: bool) -> list[str]:  # fmt: skip
    """Per target and challenge, in words: the best mean and how it stands against the reference."""
    out = []
    comp = {(c["target"], c["challenge"], c["start"], c["backbone"], c["strategy"]): c for c in comps}
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for s in summaries:
        groups.setdefault((s["target"], s["challenge"]), []).append(s)
    for (target, challenge), group in groups.items():
        done = [s for s in group if s["mean"] is not None]
        head = f"{target}, {challenge}:"
        if not done:
            out.append(f"{head} no finished run.")
            continue
        sign = 1 if done[0]["higher_is_better"] else -1
        best = max(done, key=lambda s: (sign * s["mean"], str(s["start"])))
        what = f"best mean {best['metric']} {best['mean']:.3f} with {_start_label(best, several)} (n={best['n']})"
        c = comp.get((target, challenge, best["start"], best["backbone"], best["strategy"]))
        if best["start"] == reference:
            sentence = f"{head} {what}, the reference itself."
        elif c is None or c["n_pairs"] == 0:
            sentence = f"{head} {what}; no paired runs of {reference} to compare with."
        elif c["p_t"] is None:
            sentence = f"{head} {what}; too few runs to test against {reference} (n={c['n_pairs']} paired seeds)."
        else:
            diff = f"mean difference {c['mean_diff']:+.3f}{_ci(c['diff_ci_low'], c['diff_ci_high'])}"
            p = f"Holm-adjusted p = {_p(c['p_t_holm'])}"
            if c["verdict"] in ("better", "worse"):
                sentence = f"{head} {what}, significantly {c['verdict']} than {reference} ({diff}, {p})."
            else:
                sentence = f"{head} {what}, not significantly different from {reference} ({diff}, {p}): {_why_not(c)}."
        # the other starts that were tested and not found different: which of the two each is
        others = [o for o in comps if (o["target"], o["challenge"]) == (target, challenge) and o is not c
                  and o["nonsignificance"]]  # fmt: skip
        if others:
            sentence += (
                f" Not significantly different from {reference}: "
                + ", ".join(f"{_start_label(o, several)} ({_why_not_short(o)})" for o in others)
                + "."
            )
        out.append(sentence)
    return out


def _sections(
    rows: Sequence[Mapping[str, Any]],
    summaries: list[dict[str, Any]],
    comps: list[dict[str, Any]],
    headline: Sequence[str],
    corr: list[dict[str, Any]],
    drops: list[dict[str, Any]],
    figures: Mapping[str, str],
    reference: str,
    requested_reference: str,
    alpha: float,
    n_resamples: int,
) -> list[_Section]:
    """The report's sections, in the order it shows them."""
    several = _several(summaries)
    return [
        _summary_section(rows, headline, reference),
        _label_section(summaries, figures, several),
        _challenges_section(summaries, drops, figures, several),
        _decisions_section(rows, several),
        _comparisons_section(comps, figures, reference, requested_reference, alpha, several),
        _transferability_section(corr, figures),
        _failed_section(rows),
        _methods_section(rows, comps, reference, alpha, n_resamples),
    ]


def _summary_section(rows: Sequence[Mapping[str, Any]], headline: Sequence[str], reference: str) -> _Section:
    """The cell count and the headline sentences."""
    summary = _Section("summary", "Summary")
    summary.p(
        f"{len(rows)} cells, {sum(1 for r in rows if r.get('status') != 'ok')} failed. "
        f"Each starting point is compared with {reference} on the same seeds."
    )
    for sentence in headline:
        summary.p(sentence)
    return summary


def _label_section(summaries: list[dict[str, Any]], figures: Mapping[str, str], several: bool) -> _Section:
    """Scores against label fraction (full data included)."""
    label = _Section("label-efficiency", "Label efficiency")
    if "label_efficiency" in figures:
        label.img("label_efficiency", "mean score against label fraction per starting point, with 95% t-intervals")
    else:
        label.p("No label-fraction challenge in this study: nothing to plot.")
    _summary_table(label, [s for s in summaries if s["challenge_kind"] in ("full", "label_fraction")], several)
    return label


def _challenges_section(
    summaries: list[dict[str, Any]], drops: list[dict[str, Any]], figures: Mapping[str, str], several: bool
) -> _Section:
    """Drops under imbalance and domain shift, and the summaries of every challenge other than label fraction."""
    chal = _Section("challenges", "Imbalance and domain shift")
    if "challenge_drops" in figures:
        chal.img("challenge_drops", "drop in mean score from full data under imbalance and domain shift")
        chal.table(["target", "challenge", "start", "drop vs full (higher = worse)", "± error"],
                   [[d["target"], d["challenge"], _start_label(d, several), f"{d['drop']:+.3f}", f"{d['error']:.3f}"]
                    for d in drops])  # fmt: skip
    else:
        chal.p("No imbalance or domain-shift challenge with a matching full-data run: nothing to plot.")
    others = [s for s in summaries if s["challenge_kind"] not in ("full", "label_fraction")]
    if others:
        _summary_table(chal, others, several)
    return chal


def _decisions_section(rows: Sequence[Mapping[str, Any]], several: bool) -> _Section:
    """Classification cells' thresholds, temperatures and the metrics read at them."""
    decided = _Section("decisions", "Decisions and calibration (classification)")
    table = _decision_rows(rows, several)
    if table:
        decided.table(["target", "challenge", "start", "n", "rule", "threshold: median [min, max]", "temperature",
                       "accuracy", "balanced accuracy", "sensitivity", "specificity", "accuracy at 0.5", "ECE",
                       "Brier"], table)  # fmt: skip
        decided.p(
            "Means over seeds. Each run chose its threshold on its validation section by the rule (Youden's J unless "
            "the spec's finetune.threshold says otherwise) and applied it unchanged to the test section; accuracy, "
            "balanced accuracy, sensitivity and specificity are taken there. Accuracy at 0.5 is shown for reference "
            "only: a model that ranks well can sit far from 0.5 (a training set's class balance, selection by a "
            "ranking metric), and read at 0.5 it can invert a comparison. ECE (15 equal-width bins) and the Brier "
            "score measure calibration, after the temperature where one was fitted (finetune.calibrate). Each run's "
            "case-level interval for every metric is in results/*.json (metric_ci)."
        )
    else:
        decided.p("No finished classification cell with a recorded decision.")
    return decided


def _comparisons_section(
    comps: list[dict[str, Any]],
    figures: Mapping[str, str],
    reference: str,
    requested_reference: str,
    alpha: float,
    several: bool,
) -> _Section:
    """Each starting point paired with the reference by seed: the table, the power rule and the notes."""
    comp = _Section("comparisons", f"Paired comparisons vs {reference}")
    if requested_reference != reference:
        comp.p(f"The requested reference {requested_reference!r} is not in the table; compared with {reference}.")
    if "comparisons" in figures:
        comp.img("comparisons", f"mean difference with {reference} per start and challenge, * where Holm p < {alpha}")
    if comps:
        comp.table([h for h, _ in COMPARISON_COLUMNS], [[f(c, several) for _, f in COMPARISON_COLUMNS] for c in comps])
        comp.p(_power_rule(comps, alpha))
        for note in dict.fromkeys(c["note"] for c in comps if c["note"]):
            comp.p(f"Note: {note}.")
    else:
        comp.p("No comparison: the table has a single starting point.")
    return comp


def _transferability_section(corr: list[dict[str, Any]], figures: Mapping[str, str]) -> _Section:
    """Rank correlations between transferability estimates and fine-tuned scores."""
    trans = _Section("transferability", "Transferability")
    if "transferability" in figures:
        trans.img("transferability", "transferability estimate against mean fine-tuned score")
    if corr:
        trans.table(
            ["target", "estimator", "n", "scores from", "Kendall tau (p)", "Spearman rho (p)", "note"],
            [[c["target"], c["estimator"], str(c["n"]), c["pooled_over"],
              f"{_num(c['kendall_tau'], '.2f')} ({_p(c['kendall_p'])})",
              f"{_num(c['spearman_rho'], '.2f')} ({_p(c['spearman_p'])})", c["note"] or ""] for c in corr],
        )  # fmt: skip
    else:
        trans.p("No transferability estimates in the table.")
    return trans


def _failed_section(rows: Sequence[Mapping[str, Any]]) -> _Section:
    """One row per failed cell with its error."""
    failed = _Section("failed", "Failed cells")
    bad = [r for r in _sorted_rows(rows) if r.get("status") != "ok"]
    if bad:
        failed.table(["cell", "target", "challenge", "start", "backbone", "strategy", "seed", "error"],
                     [[str(r.get(k)) for k in ("cell", "target", "challenge", "start", "backbone", "strategy", "seed")]
                      + [str(r.get("error") or "")] for r in bad])  # fmt: skip
    else:
        failed.p("No failed cells.")
    return failed


def _methods_section(
    rows: Sequence[Mapping[str, Any]], comps: list[dict[str, Any]], reference: str, alpha: float, n_resamples: int
) -> _Section:
    """How the numbers were made: cells, intervals, tests, power, drops, transferability, the package version."""
    bad = [r for r in rows if r.get("status") != "ok"]
    methods = _Section("methods", "How this was made")
    seeds = sorted({str(r.get("seed")) for r in rows})
    n_family = comps[0]["n_family"] if comps else 0
    methods.p(
        f"{len(rows)} cells ({len(rows) - len(bad)} finished, {len(bad)} failed) over "
        f"{len({r.get('target') for r in rows})} target(s), {len({r.get('challenge') for r in rows})} challenge(s), "
        f"{len({r.get('start') for r in rows})} starting point(s) and {len(seeds)} seed(s) ({', '.join(seeds)}). "
        "Only finished cells enter the statistics; failed cells are listed above."
    )
    methods.p(
        "Per-cell intervals: Student-t 95% interval of the mean over seeds, mean ± t(0.975, n-1)·sd/√n; none with "
        "a single run. Case-level intervals (where per-case scores were recorded): each case's score is averaged over "
        f"seeds, then patients, not cases, are resampled with replacement (cluster bootstrap, BCa, {n_resamples} "
        "resamples, seed 0), since cases of one patient are not independent. It is the interval of the mean per-case "
        "score, which for a dataset-level metric such as AUROC is not the metric itself."
    )
    methods.p(
        f"Paired comparisons: per target, challenge, backbone and strategy, each starting point is paired with "
        f"{reference} by seed (same label subset and split); only seeds where both runs finished count. Tests, "
        "two-sided, with at least 3 pairs: the paired t-test and the Wilcoxon signed-rank test (scipy.stats.wilcoxon; "
        "exact distribution without ties or zero differences, zero differences dropped). The p-values of each test "
        f"are Holm-adjusted over the whole family of {n_family} tested comparisons in this report. Verdict: better or "
        f"worse when the Holm-adjusted t-test p < {alpha}, by the sign of the mean difference and the metric's "
        "direction. The mean difference (start minus reference) has a t-interval over the paired differences. Effect "
        "sizes: Cohen's d_z = mean(d)/sd(d) and the matched-pairs rank-biserial correlation (Kerby 2014). With fewer "
        "than 6 pairs the Wilcoxon test cannot reach p < 0.05."
    )
    if comps:
        methods.p(
            "Power (monai_transfer.metrics.power): for each comparison with at least 3 pairs, the smallest "
            "difference its seeds detect with 80% power and the seeds needed to detect the observed difference, for "
            "the two-sided paired t-test with the SD of the paired differences (noncentral t distribution, as "
            f"statsmodels' TTestPower); 'under Holm' uses alpha / {n_family} (Bonferroni, Holm's first step), the "
            "most the Holm-corrected verdict may need. How a non-significant comparison is read (no effect seen, or "
            "too few runs to tell) is stated under the comparisons table."
        )
    methods.p(
        "Challenge drops: mean under the challenge against mean on full data, per start; the error bars add the two "
        "t-intervals' half-widths in quadrature (an approximation that ignores the pairing by seed)."
    )
    methods.p(
        "Transferability: Kendall's tau-b and Spearman's rho (scipy.stats) between each estimate, computed before "
        "fine-tuning, and the mean fine-tuned score over starting points (x backbones), on the full-data challenge "
        "when present; below 4 points they mean little."
    )
    methods.p(f"Written by monai_transfer {__version__} (monai_transfer.study.report.write_report).")
    return methods


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(title: str, sections: Sequence[_Section], figures: Mapping[str, str]) -> str:
    lines = [f"# {title}", ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        for block in sec.blocks:
            if block[0] == "p":
                lines += [block[1], ""]
            elif block[0] == "img":
                lines += [f"![{block[2]}]({figures[block[1]]})", ""]
            else:
                _, header, rows = block
                lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
                lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; } th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; } img { max-width: 100%; display: block; margin: 1em 0; }
nav a { margin-right: 1em; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var sections = document.querySelectorAll("section").length;
  var images = Array.prototype.filter.call(document.images, function (im) {
    return im.complete && im.naturalWidth > 0;
  }).length;
  document.body.dataset.rendered = sections + "/" + images;
});
"""


def _html(title: str, sections: Sequence[_Section], images: Mapping[str, bytes]) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<nav>" + "".join(f'<a href="#{e(s.id)}">{e(s.title)}</a>' for s in sections) + "</nav>",
    ]
    for sec in sections:
        out.append(f'<section id="{e(sec.id)}"><h2>{e(sec.title)}</h2>')
        for block in sec.blocks:
            if block[0] == "p":
                out.append(f"<p>{e(block[1])}</p>")
            elif block[0] == "img":
                data = base64.b64encode(images[block[1]]).decode("ascii")
                out.append(f'<img src="data:image/png;base64,{data}" alt="{e(block[2])}">')
            else:
                _, header, rows = block
                out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</tbody></table>")
        out.append("</section>")
    out += [f"<script>{_SCRIPT}</script>", "</body></html>", ""]
    return "\n".join(out)


def _title(title: str | None, spec: Any) -> str:
    if title:
        return title
    name = spec.get("name") if isinstance(spec, Mapping) else getattr(spec, "name", None)
    return f"Study report: {name}" if name else "Study report"


def write_report(
    rows: Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    reference: str = "random",
    title: str | None = None,
    spec: Any = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    equivalence_margin: float | Mapping[str, float] | None = None,
) -> dict[str, str]:
    """Write the report of a study's results table into ``out_dir`` (every file atomically).

    Args:
        rows: the results table, one dict per finished or failed cell.
        out_dir: folder of the report (created).
        reference: the starting point every other one is compared with; when the table lacks it, ``"random"`` or
            else the first starting point by name is used, and the report says so.
        title: heading of the report; default from ``spec`` (its ``name``), else "Study report".
        spec: the study spec (a mapping or an object with ``name``), for the title and its ``equivalence_margin``.
        alpha: family-wise error rate of the verdicts.
        confidence: level of the intervals (the report's text speaks of 95%).
        n_resamples: bootstrap resamples of the case-level intervals.
        equivalence_margin: the margin within which a paired difference counts as "no effect" (one number, or
            metric -> number); default the spec's ``equivalence_margin``, else the defaults of
            :data:`monai_transfer.study.statistics.EQUIVALENCE_MARGINS`.

    Returns:
        Name -> path of every file written: ``results_csv``, ``summary_json`` (its ``headline``: the summary in
        sentences, one per target and challenge), ``report_md``, ``report_html`` and one
        entry per figure drawn (``label_efficiency``, ``challenge_drops``, ``comparisons``, ``transferability``).
    """
    rows = list(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    starts = sorted({str(r.get("start")) for r in rows})
    used = (
        reference if reference in starts else ("random" if "random" in starts else (starts[0] if starts else reference))
    )
    summaries = summarize_cells(rows, confidence=confidence, n_resamples=n_resamples)
    if equivalence_margin is None:
        equivalence_margin = (
            spec.get("equivalence_margin") if isinstance(spec, Mapping) else getattr(spec, "equivalence_margin", None)
        )
    comps = (
        paired_comparisons(rows, reference=used, alpha=alpha, confidence=confidence, margins=equivalence_margin)
        if starts
        else []
    )
    corr = transferability_correlation(rows)
    drops = challenge_drops(summaries)
    headline = _summary_sentences(summaries, comps, used, _several(summaries))
    written = {"results_csv": atomic_write_text(out / "results.csv", results_csv(rows))}
    name = _title(title, spec)
    written["summary_json"] = atomic_write_json(
        out / "summary.json",
        {"title": name, "reference": used, "alpha": alpha, "confidence": confidence, "n_cells": len(rows),
         "n_failed": sum(1 for r in rows if r.get("status") != "ok"), "summaries": summaries, "comparisons": comps,
         "transferability": corr, "challenge_drops": drops,
         "power": {"power": POWER, "alpha": alpha, "margins": _margins(comps),
                   "rule": _power_rule(comps, alpha) if comps else None},
         "headline": headline},
    )  # fmt: skip
    plotters = {
        "label_efficiency": lambda p: plot_label_efficiency(summaries, p),
        "challenge_drops": lambda p: plot_challenge_drops(summaries, p),
        "comparisons": lambda p: plot_comparison_heatmap(comps, p, alpha=alpha),
        "transferability": lambda p: plot_transferability(corr, p),
    }
    figures = {}
    for key, plot in plotters.items():
        path = plot(out / FIGURES[key])
        if path is not None:
            figures[key] = FIGURES[key]
            written[key] = os.fspath(path)
    sections = _sections(rows, summaries, comps, headline, corr, drops, figures, used, reference, alpha, n_resamples)
    written["report_md"] = atomic_write_text(out / "report.md", _markdown(name, sections, figures))
    images = {k: (out / f).read_bytes() for k, f in figures.items()}
    written["report_html"] = atomic_write_text(out / "report.html", _html(name, sections, images))
    return written
