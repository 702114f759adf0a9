"""How many seeds a study needs, from the spread of a pilot study (``monai-transfer study plan SPEC --pilot DIR``).

A study's comparisons are paired t-tests over seeds (:func:`monai_transfer.study.statistics.paired_comparisons`), so
what decides how many seeds it needs is the SD of the paired differences ``start - reference`` between seeds: the
spread of the training, not of the test cases. A pilot (the same targets and starts with a few seeds, or a finished
study) estimates that SD per ``(target, challenge, backbone, strategy, start)``; :func:`seed_plan` turns it into the
seeds that detect, with 80 % power in a two-sided paired t-test at ``alpha``:

* the pilot's observed mean difference, and
* a difference worth detecting: ``effect`` (``--effect``), by default the metric's equivalence margin
  (:func:`monai_transfer.study.statistics.equivalence_margin`: 0.01 for AUROC and Dice, or the spec's
  ``equivalence_margin``), the same margin below which the report calls a non-significant difference "no effect seen",

each for one test and under the Holm correction over the design's comparisons (at ``alpha / n_family``, Bonferroni,
Holm's first step: the most it may need). With the seeds the design runs it also gives the smallest difference they
detect and their power for the effect. With the margin as the effect, the seeds for it are also the seeds with which a
non-significant comparison reads "no effect seen" in the report (its smallest detectable difference within the
margin) rather than "too few runs to tell". A pilot comparison with fewer than 3 paired seeds has no usable SD (one
degree of freedom at 2): it is listed as such. The SD from 3 to 5 seeds is itself uncertain by about a factor of two,
and the seeds needed scale with its square: read the figures as an order of magnitude and prefer a pilot of 5 seeds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monai_transfer.metrics.power import DEFAULT_MAX_SEEDS, min_detectable_difference, paired_t_power, seeds_needed
from monai_transfer.study.statistics import POWER, equivalence_margin, paired_comparisons

__all__ = ["MIN_PILOT_SEEDS", "seed_plan", "pilot_plan", "format_seed_plan"]

#: The fewest paired seeds from which a pilot comparison's SD is used.
MIN_PILOT_SEEDS = 3


def seed_plan(
    rows: Iterable[Mapping[str, Any]],
    reference: str = "random",
    design_seeds: int | None = None,
    n_family: int = 1,
    effect: float | None = None,
    margins: float | Mapping[str, float] | None = None,
    alpha: float = 0.05,
    max_seeds: int = DEFAULT_MAX_SEEDS,
) -> list[dict[str, Any]]:
    """The seeds each comparison needs, from a pilot's results table.

    Args:
        rows: the pilot's results table (one dict per cell, as the results store holds them).
        reference: the start every other one is compared with.
        design_seeds: the seeds the planned study runs (for ``mde_design`` and ``power_design``); None: not given.
        n_family: the planned study's number of comparisons, for the Holm figures (``alpha / n_family``).
        effect: the difference to detect, in the metric's units (one for every metric); None: each metric's
            equivalence margin.
        margins: equivalence margins (one number or metric -> number), as in the spec's ``equivalence_margin``.
        alpha: the level of each test.
        max_seeds: the most seeds searched (None in a figure: more than that).

    Returns:
        One dict per pilot comparison, in the order of :func:`paired_comparisons`: ``target``, ``challenge``,
        ``backbone``, ``strategy``, ``start``, ``reference``, ``metric``, ``pilot_n`` (paired seeds), ``usable``
        (``pilot_n >= 3``), ``sd_diff``, ``mean_diff``, ``effect`` and ``effect_source``, ``seeds_observed`` and
        ``seeds_observed_family`` (to detect the observed difference), ``seeds_effect`` and ``seeds_effect_family``
        (to detect ``effect``), ``design_seeds``, ``mde_design`` (smallest difference the design's seeds detect),
        ``power_design`` (their power for ``effect``), ``note``. Figures are None where not usable.

    Raises:
        ValueError: the pilot has no runs of ``reference``, ``effect`` <= 0, or ``n_family`` < 1.
    """
    if effect is not None and not effect > 0:
        raise ValueError(f"the effect to detect must be > 0, got {effect}")
    if n_family < 1:
        raise ValueError(f"n_family must be at least 1, got {n_family}")
    rows = list(rows)
    out = []
    for c in paired_comparisons(rows, reference=reference, alpha=alpha, margins=margins, max_seeds=max_seeds):
        n, sd, diff = c["n_pairs"], c["sd_diff"], c["mean_diff"]
        if effect is not None:
            eff, source = float(effect), "--effect"
        else:
            eff, src = equivalence_margin(c["metric"], margins, c["mean_reference"])
            source = f"equivalence margin ({src})"
        rec: dict[str, Any] = {
            **{k: c[k] for k in ("target", "challenge", "backbone", "strategy", "start", "reference", "metric")},
            "pilot_n": n,
            "usable": n >= MIN_PILOT_SEEDS and sd is not None,
            "sd_diff": sd,
            "mean_diff": c["mean_diff"],
            "effect": eff,
            "effect_source": source,
            "power": POWER,
            "alpha": alpha,
            "n_family": n_family,
            "max_seeds": max_seeds,
            "design_seeds": design_seeds,
            "seeds_observed": None,
            "seeds_observed_family": None,
            "seeds_effect": None,
            "seeds_effect_family": None,
            "mde_design": None,
            "power_design": None,
            "note": None,
        }
        if not rec["usable"]:
            rec["note"] = (
                f"too few seeds in the pilot (n={n} paired) to estimate the SD of the paired differences "
                f"(at least {MIN_PILOT_SEEDS})"
            )
            out.append(rec)
            continue
        rec.update(
            seeds_observed=_need(diff, sd, alpha, max_seeds),
            seeds_observed_family=_need(diff, sd, alpha / n_family, max_seeds),
            seeds_effect=_need(eff, sd, alpha, max_seeds),
            seeds_effect_family=_need(eff, sd, alpha / n_family, max_seeds),
        )
        if design_seeds is not None and design_seeds >= 2:
            rec["mde_design"] = min_detectable_difference(design_seeds, sd, alpha, POWER)
            rec["power_design"] = paired_t_power(design_seeds, eff, sd, alpha) if eff else None
        if sd == 0:
            rec["note"] = "the pilot's paired differences do not vary: its SD of 0 is surely an underestimate"
        out.append(rec)
    return out


def _need(difference: float | None, sd: float, alpha: float, max_seeds: int) -> int | None:
    if not difference:
        return None
    return seeds_needed(difference, sd, alpha, POWER, max_n=max_seeds, min_n=3)


def _design_family(spec: Any) -> int:
    """The planned study's comparisons: targets x challenges x (starts - 1) x backbones x strategies."""
    return max(
        len(spec.targets) * len(spec.challenges) * (len(spec.starts) - 1) * len(spec.backbones) * len(spec.strategies),
        1,
    )


def pilot_plan(
    pilot: str | os.PathLike,
    spec: Any,
    raw: Mapping[str, Any] | None = None,
    effect: float | None = None,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """:func:`seed_plan` for a study spec from a pilot study's folder.

    Args:
        pilot: the pilot study's folder (its ``results/*.json`` rows, read with
            :class:`~monai_transfer.study.store.ResultsStore`).
        spec: the planned study (:class:`~monai_transfer.study.spec.StudySpec`): its reference, seeds and the size of
            its family of comparisons.
        raw: the spec as written, for its ``equivalence_margin``.
        effect: the difference to detect (default: each metric's equivalence margin).
        alpha: the level of each test.

    Returns:
        ``pilot`` (the folder), ``n_rows``, ``pilot_seeds``, ``reference``, ``design_seeds``, ``n_family``,
        ``comparisons`` (:func:`seed_plan`'s records, each with ``in_spec``: whether the spec has that target,
        challenge, start, backbone and strategy) and ``not_in_pilot`` (the spec's ``(target, challenge, start)`` the
        pilot has no comparison for).

    Raises:
        FileNotFoundError: the folder has no results.
        ValueError: the pilot has no runs of the spec's reference.
    """
    from monai_transfer.study.store import ResultsStore

    rows = ResultsStore(pilot).rows() if (Path(pilot) / "results").is_dir() else []
    if not rows:
        raise FileNotFoundError(f"{Path(pilot) / 'results'}: no results of a pilot study (run it first)")
    margins = (raw or {}).get("equivalence_margin") if isinstance(raw, Mapping) else None
    n_family = _design_family(spec)
    starts = {str(r.get("start")) for r in rows}
    if spec.reference not in starts:
        raise ValueError(f"the pilot {pilot} has no runs of the spec's reference {spec.reference!r} "
                         f"(its starts: {sorted(starts)})")  # fmt: skip
    comps = seed_plan(rows, reference=spec.reference, design_seeds=len(spec.seeds), n_family=n_family,
                      effect=effect, margins=margins, alpha=alpha)  # fmt: skip
    wanted = {
        (t.name, c.label, s.name, b, st)
        for t in spec.targets for c in spec.challenges for s in spec.starts if s.name != spec.reference
        for b in spec.backbones for st in spec.strategies
    }  # fmt: skip
    for c in comps:
        c["in_spec"] = (c["target"], c["challenge"], c["start"], c["backbone"], c["strategy"]) in wanted
    have = {(c["target"], c["challenge"], c["start"]) for c in comps}
    missing = sorted({w[:3] for w in wanted} - have)
    return {
        "pilot": os.fspath(pilot),
        "n_rows": len(rows),
        "pilot_seeds": sorted({r.get("seed") for r in rows if r.get("status") == "ok"}, key=str),
        "reference": spec.reference,
        "design_seeds": len(spec.seeds),
        "n_family": n_family,
        "alpha": alpha,
        "comparisons": comps,
        "not_in_pilot": [list(m) for m in missing],
    }


def _k(k: int | None, most: int) -> str:
    return f">{most}" if k is None else str(k)


def format_seed_plan(plan: Mapping[str, Any]) -> list[str]:
    """:func:`pilot_plan`'s answer as lines for the console."""
    # the spec's comparisons; every pilot comparison, marked, when the pilot shares none with the spec
    comps = [c for c in plan["comparisons"] if c["in_spec"]] or plan["comparisons"]
    left_out = len(plan["comparisons"]) - len(comps)
    n_design, family, alpha = plan["design_seeds"], plan["n_family"], plan["alpha"]
    lines = [
        f"seeds for {POWER:.0%} power, from the pilot {plan['pilot']} ({plan['n_rows']} rows, seeds "
        f"{', '.join(str(s) for s in plan['pilot_seeds'])}): two-sided paired t-test at alpha {alpha}, one test / "
        f"under Holm over this spec's {family} comparisons (alpha/{family}); the spec runs {n_design} seeds",
    ]
    several = len({(c["backbone"], c["strategy"]) for c in comps}) > 1
    header = ("target", "challenge", f"start vs {plan['reference']}", "pilot n", "sd(diff)", "observed",
              "seeds: observed", "effect", "seeds: effect", f"detectable with {n_design}")  # fmt: skip
    table = []
    for c in comps:
        start = f"{c['start']} ({c['backbone']}, {c['strategy']})" if several else str(c["start"])
        if not c["in_spec"]:
            start += " [not in spec]"
        most = c["max_seeds"]
        if not c["usable"]:
            table.append((c["target"], c["challenge"], start, str(c["pilot_n"]), "–", "–", "too few pilot seeds",
                          f"±{c['effect']:.3g}" if c["effect"] else "–", "–", "–"))  # fmt: skip
            continue
        table.append((
            c["target"], c["challenge"], start, str(c["pilot_n"]), f"{c['sd_diff']:.4f}", f"{c['mean_diff']:+.4f}",
            f"{_k(c['seeds_observed'], most)} / {_k(c['seeds_observed_family'], most)}",
            f"±{c['effect']:.3g}" if c["effect"] else "–",
            f"{_k(c['seeds_effect'], most)} / {_k(c['seeds_effect_family'], most)}" if c["effect"] else "–",
            "–" if c["mde_design"] is None else f"±{c['mde_design']:.4f}",
        ))  # fmt: skip
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        lines.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if left_out:
        lines.append(f"({left_out} pilot comparison(s) of targets, challenges or starts outside this spec not shown)")
    sources = sorted({c["effect_source"] for c in comps})
    lines.append(f"effect: {'; '.join(sources)}")
    few = [c for c in comps if not c["usable"]]
    if few:
        lines.append(f"{len(few)} comparison(s) with fewer than {MIN_PILOT_SEEDS} paired pilot seeds: too few to "
                     "estimate the SD of the paired differences; run the pilot with at least 3 (better 5) seeds")  # fmt: skip
    usable = [c for c in comps if c["usable"] and c["in_spec"] and c["effect"]]
    if usable:
        worst = [c["seeds_effect"] for c in usable]
        worst_family = [c["seeds_effect_family"] for c in usable]
        most = usable[0]["max_seeds"]
        top = _k(None if None in worst else max(worst), most)
        top_family = _k(None if None in worst_family else max(worst_family), most)
        short = [c for c in usable if c["seeds_effect"] is None or c["seeds_effect"] > n_design]
        lines.append(f"to detect the effect in every comparison of the spec: {top} seeds ({top_family} under Holm); "
                     f"the spec's {n_design} seeds fall short in {len(short)} of {len(usable)}")  # fmt: skip
    for c in comps:
        if c["note"] and c["usable"]:
            lines.append(f"note: {c['target']}, {c['challenge']}, {c['start']}: {c['note']}")
    if plan["not_in_pilot"]:
        lines.append("no pilot data for: " + "; ".join(", ".join(m) for m in plan["not_in_pilot"]))
    lines.append("the SD from a few pilot seeds is itself uncertain (about a factor of two from 3 to 5 seeds) and the "
                 "seeds needed scale with its square: read these as an order of magnitude")  # fmt: skip
    return lines
