"""Figures of a study report, one function per figure, from the outputs of :mod:`monai_transfer.study.statistics`.

Each function takes the statistics (summaries, comparisons or correlations) and an output path, writes a PNG
atomically with matplotlib's Agg backend, and returns the path, or None when there is nothing to plot (or matplotlib
is missing).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_transfer.study.statistics import challenge_sort_key
from monai_transfer.utils.atomic import atomic_save

plt, has_matplotlib = optional_import("matplotlib.pyplot")

__all__ = ["plot_label_efficiency", "plot_challenge_drops", "plot_comparison_heatmap", "plot_transferability"]

Rows = Sequence[Mapping[str, Any]]

#: metrics that live in [0, 1] (the interval bands are drawn clipped to it)
BOUNDED_01 = frozenset({"auroc", "accuracy", "balanced_accuracy", "mean_dice", "dice"})


def _figure(n_panels: int, width: float = 5.0, height: float = 4.0, ncols: int | None = None) -> tuple[Any, list]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    ncols = ncols or n_panels
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _save(fig: Any, path: str | os.PathLike) -> str:
    fig.tight_layout()
    out = atomic_save(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return out


def _targets(rows: Rows) -> list[str]:
    return sorted({str(r["target"]) for r in rows})


def _starts(rows: Rows) -> list[str]:
    return sorted({str(r["start"]) for r in rows})


def plot_label_efficiency(summaries: Rows, path: str | os.PathLike) -> str | None:
    """Label-efficiency curves: per target, mean score against the label fraction (log scale; "full" = 1.0) with
    the t-interval over seeds as a band, one line per starting point (and backbone/strategy when several)."""
    if not has_matplotlib:
        return None
    pts = [s for s in summaries if s.get("mean") is not None and s.get("challenge_kind") in ("label_fraction", "full")]
    targets = [
        t for t in _targets(pts) if any(s["challenge_kind"] == "label_fraction" for s in pts if s["target"] == t)
    ]
    if not targets:
        return None
    fig, axes = _figure(len(targets))
    for ax, target in zip(axes, targets):
        rows = [s for s in pts if s["target"] == target]
        lines = sorted({(s["start"], s["backbone"], s["strategy"]) for s in rows})
        several = len({(b, st) for _, b, st in lines}) > 1
        for start, backbone, strategy in lines:
            line = [s for s in rows if (s["start"], s["backbone"], s["strategy"]) == (start, backbone, strategy)]
            line.sort(key=lambda s: 1.0 if s["challenge_kind"] == "full" else float(s["challenge_value"]))
            x = np.array([1.0 if s["challenge_kind"] == "full" else float(s["challenge_value"]) for s in line])
            y = np.array([s["mean"] for s in line])
            label = f"{start} ({backbone}, {strategy})" if several else start
            (h,) = ax.plot(x, y, marker="o", label=label)
            lo = np.array([np.nan if s["ci_low"] is None else s["ci_low"] for s in line])
            hi = np.array([np.nan if s["ci_high"] is None else s["ci_high"] for s in line])
            if str(rows[0]["metric"]) in BOUNDED_01:  # a t-interval knows no bounds; the metric does
                lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
            ax.fill_between(x, lo, hi, color=h.get_color(), alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("label fraction (1.0 = full)")
        ax.set_ylabel(str(rows[0]["metric"]))
        ax.set_title(target)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _half_width(s: Mapping[str, Any]) -> float:
    return 0.0 if s.get("ci_low") is None else (s["ci_high"] - s["ci_low"]) / 2


def challenge_drops(summaries: Rows) -> list[dict[str, Any]]:
    """The drop of the mean score from "full" under each imbalance and domain-shift challenge, per start (positive =
    worse, whatever the metric's direction); ``error`` is the two t-intervals' half-widths added in quadrature (an
    approximation that ignores the pairing by seed)."""
    out = []
    full = {
        (s["target"], s["start"], s["backbone"], s["strategy"]): s
        for s in summaries
        if s.get("challenge_kind") == "full" and s.get("mean") is not None
    }
    for s in sorted(summaries, key=lambda s: (str(s["target"]), challenge_sort_key(s), str(s["start"]))):
        ref = full.get((s["target"], s["start"], s["backbone"], s["strategy"]))
        if s.get("challenge_kind") not in ("imbalance", "domain") or s.get("mean") is None or ref is None:
            continue
        sign = 1.0 if s.get("higher_is_better", True) else -1.0
        out.append(
            {
                "target": s["target"],
                "challenge": s["challenge"],
                "start": s["start"],
                "backbone": s["backbone"],
                "strategy": s["strategy"],
                "metric": s["metric"],
                "drop": sign * (ref["mean"] - s["mean"]),
                "error": math.hypot(_half_width(ref), _half_width(s)),
            }
        )
    return out


def plot_challenge_drops(summaries: Rows, path: str | os.PathLike) -> str | None:
    """Per target, grouped bars: the drop in mean score from "full" under imbalance and domain shift, per start,
    with error bars (see :func:`challenge_drops`)."""
    drops = challenge_drops(summaries)
    if not has_matplotlib or not drops:
        return None
    targets = _targets(drops)
    fig, axes = _figure(len(targets), width=6.0)
    for ax, target in zip(axes, targets):
        rows = [d for d in drops if d["target"] == target]
        challenges = list(dict.fromkeys(d["challenge"] for d in rows))
        starts = _starts(rows)
        width = 0.8 / len(starts)
        for i, start in enumerate(starts):
            vals = {d["challenge"]: d for d in rows if d["start"] == start}
            x = np.arange(len(challenges)) + (i - (len(starts) - 1) / 2) * width
            y = [vals[c]["drop"] if c in vals else np.nan for c in challenges]
            err = [vals[c]["error"] if c in vals else 0.0 for c in challenges]
            ax.bar(x, y, width, yerr=err, capsize=3, label=start)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(challenges)))
        ax.set_xticklabels(challenges, fontsize=8)
        ax.set_ylabel(f"drop in {rows[0]['metric']} vs full (higher = worse)")
        ax.set_title(target)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_comparison_heatmap(comparisons: Rows, path: str | os.PathLike, alpha: float = 0.05) -> str | None:
    """Per target, a start x challenge grid coloured by the mean difference with the reference (blue = better,
    whatever the metric's direction), annotated with the difference and ``*`` where the Holm-adjusted t-test
    p < ``alpha``; ``n/a`` marks comparisons with too few runs to test."""
    comps = [c for c in comparisons if c.get("mean_diff") is not None]
    if not has_matplotlib or not comps:
        return None
    targets = _targets(comps)
    span = max(abs(c["mean_diff"]) for c in comps) or 1.0
    fig, axes = _figure(len(targets), width=8.0, height=3.5, ncols=1)
    image = None
    for ax, target in zip(axes, targets):
        rows = [c for c in comps if c["target"] == target]
        cols = list(dict.fromkeys(c["challenge"] for c in sorted(rows, key=challenge_sort_key)))
        ylabels = sorted({(c["start"], c["backbone"], c["strategy"]) for c in rows})
        grid = np.full((len(ylabels), len(cols)), np.nan)
        for c in rows:
            i, j = ylabels.index((c["start"], c["backbone"], c["strategy"])), cols.index(c["challenge"])
            grid[i, j] = c["mean_diff"] * (1 if c.get("higher_is_better", True) else -1)
            mark = " (n/a)" if c.get("p_t_holm") is None else ("*" if c["p_t_holm"] < alpha else "")
            ax.text(j, i, f"{c['mean_diff']:+.3f}{mark}", ha="center", va="center", fontsize=8)
        image = ax.imshow(grid, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, fontsize=7, rotation=20, ha="right")
        ax.set_yticks(range(len(ylabels)))
        ax.set_yticklabels([s for s, _, _ in ylabels] if len({lab[1:] for lab in ylabels}) == 1 else
                           [f"{s} ({b}, {st})" for s, b, st in ylabels], fontsize=8)  # fmt: skip
        ax.set_title(f"{target}: {rows[0]['metric']} minus {rows[0]['reference']} (* Holm p < {alpha:g})", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="improvement over the reference")
    out = atomic_save(path, lambda p: fig.savefig(p, dpi=100, format="png", bbox_inches="tight"))
    plt.close(fig)
    return out


def plot_transferability(correlations: Rows, path: str | os.PathLike) -> str | None:
    """Per target (rows) and estimator (columns): estimate against mean fine-tuned score, one labelled point per
    start (x backbone), Kendall's tau in the title."""
    corr = [c for c in correlations if c.get("points")]
    if not has_matplotlib or not corr:
        return None
    estimators = sorted({c["estimator"] for c in corr})
    targets = _targets(corr)
    fig, axes = _figure(len(targets) * len(estimators), width=4.0, height=3.5, ncols=len(estimators))
    by_key = {(c["target"], c["estimator"]): c for c in corr}
    for k, ax in enumerate(axes):
        c = by_key.get((targets[k // len(estimators)], estimators[k % len(estimators)]))
        if c is None:
            ax.set_visible(False)
            continue
        x = [p["estimate"] for p in c["points"]]
        y = [p["score"] for p in c["points"]]
        ax.scatter(x, y)
        for p in c["points"]:
            ax.annotate(p["start"], (p["estimate"], p["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        tau = "n/a" if c["kendall_tau"] is None else f"{c['kendall_tau']:.2f}"
        ax.set_title(f"{c['target']}: {c['estimator']} (tau = {tau}, n = {c['n']})", fontsize=9)
        ax.set_xlabel(c["estimator"])
        ax.set_ylabel(f"mean {c['metric']} ({c['pooled_over']})", fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)
