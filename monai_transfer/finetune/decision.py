"""A fine-tuned classifier's decision rule, chosen on validation, and its test metrics as a reviewer reads them.

The checkpoint kept for the best validation AUROC ranks cases well but can sit far from 0.5 (a pretrained encoder's
features move the logits a long way in few epochs while the head is young), so accuracy at a fixed 0.5 can call most
cases positive at a high AUROC. The threshold is therefore chosen on the validation section (Youden's J by default;
``f1``, ``sensitivity:X``, ``argmax`` or a number as asked) and applied unchanged to the test section; accuracy at 0.5
stays beside it, labelled. Optionally a temperature is fitted on validation (``calibrate="temperature"``; Guo et al.
2017). Every test metric carries a case-level 95 % bootstrap interval (patients resampled where they repeat).

Written into the run folder: ``models/decision.json`` (rule, threshold, temperature: what inference applies),
``test_cases.json`` (per-case records) and ``calibration.png`` (the test set's reliability diagram).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monai_transfer.metrics.calibration import apply_temperature, fit_temperature, reliability_curve
from monai_transfer.metrics.case_summary import summarize_cases
from monai_transfer.metrics.thresholds import check_threshold_rule, choose_class_thresholds, choose_threshold
from monai_transfer.utils.atomic import atomic_write_json

__all__ = [
    "DECISION_FILE",
    "CALIBRATIONS",
    "DECISION_DEFAULTS",
    "decision_settings",
    "decide",
    "decided_metrics",
    "read_decision",
    "write_decision",
    "row_metrics",
]

logger = logging.getLogger(__name__)

DECISION_FILE = "models/decision.json"
CALIBRATIONS = ("none", "temperature")
#: how a classifier decides unless asked otherwise (also its config ids' defaults: threshold, calibrate, one_vs_rest)
DECISION_DEFAULTS = {"rule": "youden", "calibrate": "none", "one_vs_rest": False}
#: test fields kept out of a run's metric list (settings and the interval records, not scores)
NOT_METRICS = ("threshold", "temperature", "n", "n_validation")


def _probs(cases: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray([int(c["label"]) for c in cases]), np.asarray([c["prob"] for c in cases], dtype=np.float64)


def decision_settings(rule: Any = None, calibrate: Any = None, one_vs_rest: Any = None) -> dict[str, Any]:
    """``{"rule", "calibrate", "one_vs_rest"}`` checked, :data:`DECISION_DEFAULTS` where ``None``.

    Raises:
        ValueError: naming the bad rule or calibration.
    """
    d = DECISION_DEFAULTS
    out = {"rule": check_threshold_rule(d["rule"] if rule is None else rule),
           "calibrate": d["calibrate"] if calibrate is None else calibrate,
           "one_vs_rest": bool(d["one_vs_rest"] if one_vs_rest is None else one_vs_rest)}  # fmt: skip
    if out["calibrate"] not in CALIBRATIONS:
        raise ValueError(f"calibrate must be one of {CALIBRATIONS}, got {out['calibrate']!r}")
    return out


def decide(
    val_cases: list[Mapping[str, Any]], rule: Any = "youden", calibrate: str = "none", one_vs_rest: bool = False
) -> dict[str, Any]:
    """The decision of a classifier from its validation cases: ``{"rule", "threshold", "temperature", ...}``.

    Multi-class tasks take the argmax (``threshold`` None); with ``one_vs_rest`` each class also gets its own
    threshold against the rest by ``rule`` (``class_thresholds``), at which its test sensitivity, specificity, F1 and
    balanced accuracy are reported. A binary rule that cannot be applied on these cases (one class only) falls back
    to 0.5, and ``note`` says so.
    """
    settings = decision_settings(rule, calibrate, one_vs_rest)
    rule, calibrate, one_vs_rest = settings["rule"], settings["calibrate"], settings["one_vs_rest"]
    y, p = _probs(val_cases)
    out: dict[str, Any] = {"rule": rule, "threshold": None, "temperature": None, "n_validation": int(len(y))}
    if calibrate == "temperature":
        try:
            out["temperature"] = fit_temperature(y, p)
            p = apply_temperature(p, out["temperature"])
        except ValueError as e:  # too few validation cases: the run keeps its result, uncalibrated, and says so
            out["note"] = f"no temperature: {e}"
            logger.warning("calibrate temperature: %s; probabilities left as they are", e)
    if p.ndim == 2 and p.shape[1] > 2:
        out["rule"] = "argmax"
        if one_vs_rest:
            out.update(class_rule=rule, class_thresholds=choose_class_thresholds(y, p, rule))
        return out
    try:
        out["threshold"] = choose_threshold(y, p, rule)
    except ValueError as e:
        out.update(threshold=0.5, note="; ".join(filter(None, [out.get("note"), f"{e}; 0.5 used"])))
        logger.warning("threshold rule %s: %s; deciding at 0.5", rule, e)
    return out


def decided_metrics(
    test_cases: list[Mapping[str, Any]],
    decision: Mapping[str, Any],
    out: str | os.PathLike | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Test metrics at the validation-chosen decision, each with a case-level interval; the reliability diagram to
    ``out/calibration.png`` when ``out`` is given (classification)."""
    cases = [dict(c) for c in test_cases]
    if cases and "prob" in cases[0] and decision.get("temperature"):
        for c in cases:
            c["prob"] = apply_temperature(np.asarray(c["prob"], dtype=np.float64), decision["temperature"]).tolist()
    summary = summarize_cases(
        cases, seed=seed, threshold=decision.get("threshold"), class_thresholds=decision.get("class_thresholds")
    )
    if out is not None and cases and "prob" in cases[0]:
        _reliability_png(cases, Path(out) / "calibration.png", decision)
    keep = {k: v for k, v in summary.items() if not isinstance(v, list) or k == "warnings"}
    keep.update(threshold_rule=str(decision.get("rule")), temperature=decision.get("temperature"))
    return keep


def read_decision(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's recorded decision (``None``: none was recorded, as for segmentation or older runs)."""
    import json

    try:
        return json.loads((Path(run_dir) / DECISION_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_decision(run_dir: str | os.PathLike, decision: Mapping[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / DECISION_FILE, dict(decision))


def _reliability_png(cases: list[Mapping[str, Any]], path: Path, decision: Mapping[str, Any]) -> None:
    """Predicted probability against observed frequency per bin, with the case counts (binary: positive class;
    multi-class: top-label confidence against accuracy)."""
    from monai.utils import optional_import

    plt, ok = optional_import("matplotlib.pyplot")
    if not ok:
        return
    import matplotlib

    matplotlib.use("Agg", force=False)
    y, p = _probs(list(cases))
    if p.ndim == 2 and p.shape[1] > 2:
        conf, hit, what = p.max(1), (p.argmax(1) == y).astype(float), "top-label confidence"
    else:
        conf, hit, what = (p[:, 1] if p.ndim == 2 else p), (y == 1).astype(float), "predicted P(positive)"
    r = reliability_curve(conf, hit, n_bins=10)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    keep = r["count"] > 0
    ax.plot(r["confidence"][keep], r["accuracy"][keep], "o-", label="test cases per bin")
    for x, v, n in zip(r["confidence"][keep], r["accuracy"][keep], r["count"][keep]):
        ax.annotate(str(int(n)), (x, v), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if decision.get("threshold") is not None:
        ax.axvline(float(decision["threshold"]), c="C3", lw=1, label=f"threshold {decision['threshold']:.3f}")
    temp = decision.get("temperature")
    ax.set(xlabel=what, ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title="Reliability (test)" + (f", temperature {temp:.2f}" if temp else ""))  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def row_metrics(test: Mapping[str, Any]) -> dict[str, Any]:
    """A run's test result as a row keeps it: the scores (``metrics``) and each one's case-level 95 % interval
    (``metric_ci``: ``[low, high]``, the test cases resampled); settings such as the threshold stay out of both."""
    metrics = {k: v for k, v in test.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_METRICS
               and not k.endswith("_threshold")}  # fmt: skip
    ci = {k[: -len("_ci95")]: [v.get("low"), v.get("high")] for k, v in test.items()
          if k.endswith("_ci95") and isinstance(v, Mapping)}  # fmt: skip
    return {"metrics": metrics, "metric_ci": ci}
