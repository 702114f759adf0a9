"""Score a fine-tuned run's best weights on one datalist section the way a reviewer would accept: every metric with a
95% interval over patients, and a classifier deciding as its run chose on validation (or by a rule chosen now on
held-out cases, never on the cases it is scored on). What ``monai-transfer evaluate`` runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from monai_transfer.data.case_ids import class_names, name_cases
from monai_transfer.engines.specs import EvaluateSpec
from monai_transfer.engines.threads import cpu_threads
from monai_transfer.finetune.decision import decide, decided_metrics, read_decision
from monai_transfer.finetune.evaluate import evaluate
from monai_transfer.metrics.case_summary import summarize_cases
from monai_transfer.metrics.thresholds import check_threshold_rule, majority_baseline
from monai_transfer.utils.atomic import atomic_write_json

__all__ = ["evaluate_run", "DECIDED"]


def _section_rows(datalist: str, section: str) -> tuple[list[dict[str, Any]], Any]:
    """The section's rows in the order ``evaluate`` reads them, and the datalist's ``labels`` property."""
    from monai_transfer.data.datalist import load_datalist, load_datalist_file

    props = load_datalist_file(datalist)
    return load_datalist(datalist, section, required_keys=("image", "label")), props.get("labels")


#: summary values copied to the top level of ``evaluate``'s output
DECIDED = ("accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "accuracy_at_0.5", "auprc", "brier")


def _decision_plan(rule: Any, calibrate: str, one_vs_rest: bool, recorded: dict) -> dict | None:
    """How ``evaluate`` decides: ``None`` to apply the run's recorded decision unchanged, else the rule, calibration
    and one-vs-rest choice to make, and whether that needs the validation section's cases."""
    if rule == "run" and calibrate == "run" and not one_vs_rest and recorded:
        return None
    if rule == "run":  # the run's own rule (Youden's J for a run that recorded none), re-chosen with the new options
        rule = recorded.get("class_rule") or recorded.get("rule") or "youden"
        rule = "youden" if rule == "argmax" and one_vs_rest else rule
    if calibrate == "run":
        calibrate = "temperature" if recorded.get("temperature") else "none"
    fixed = rule == "argmax" or isinstance(rule, float)
    return {"rule": rule, "calibrate": calibrate, "one_vs_rest": one_vs_rest,
            "chosen_on_validation": not fixed or calibrate == "temperature" or one_vs_rest}  # fmt: skip


def evaluate_run(spec: EvaluateSpec) -> dict[str, Any]:
    """The metrics of ``spec.checkpoint`` on ``spec.section`` with intervals (``summary``), the decision behind the
    threshold-dependent ones, and per-case records named by case id (``cases``; also written to ``spec.out_dir``, a
    JSON file, when given), on ``spec.threads`` CPU threads.

    Raises:
        ValueError: a bad rule, or a threshold to be chosen on the evaluated section itself.
    """
    with cpu_threads(spec.threads):
        return _evaluate(spec)


def _evaluate(spec: EvaluateSpec) -> dict[str, Any]:
    rule = spec.threshold if spec.threshold == "run" else check_threshold_rule(spec.threshold)
    run_dir = Path(spec.checkpoint).parent.parent if Path(spec.checkpoint).is_file() else Path(spec.checkpoint)
    plan = _decision_plan(rule, spec.calibrate, spec.one_vs_rest, read_decision(run_dir) or {})
    if plan is not None and plan["chosen_on_validation"] and spec.threshold_section == spec.section:
        raise ValueError(
            f"--threshold-section {spec.threshold_section!r} is the evaluated section: choose the threshold "
            "(and any temperature) on held-out validation data, not on the cases it is scored on"
        )
    rows, labels = _section_rows(spec.datalist, spec.section)
    run = {"batch_size": spec.batch_size, "device": spec.device, "amp": spec.amp, "overrides": spec.overrides}
    metrics = evaluate(spec.checkpoint, spec.datalist, section=spec.section, **run)
    # each record names its case (the row's id, else its image's file name) and patient, so that intervals resample
    # patients rather than the slices of one patient as if they were independent
    cases = name_cases(metrics.pop("cases"), rows, labels)
    if class_names(labels):
        metrics["class_names"] = [name for _, name in sorted(class_names(labels).items())]
    decision: dict = {}
    if cases and "prob" in cases[0]:  # classification: the decision rule behind accuracy, and its baseline
        if plan is None:
            decision = read_decision(run_dir) or {}
        elif plan["chosen_on_validation"]:
            val = evaluate(spec.checkpoint, spec.datalist, section=spec.threshold_section, **run)
            decision = decide(val["cases"], plan["rule"], plan["calibrate"], plan["one_vs_rest"])
        else:
            decision = decide(cases, plan["rule"])  # a fixed threshold (or argmax): nothing is chosen on these cases
        metrics.update(threshold=decision.get("threshold"), threshold_rule=decision.get("rule"),
                       majority_baseline=majority_baseline([c["label"] for c in cases]))  # fmt: skip
    with warnings.catch_warnings():  # the command prints them as warning: lines, once each
        warnings.filterwarnings("ignore", message=r".*independent units", category=UserWarning)
        metrics["summary"] = (
            decided_metrics(cases, decision, seed=spec.seed) if decision else summarize_cases(cases, seed=spec.seed)
        )
    # the top-level threshold-dependent values are the decided ones too (the evaluator's own accuracy is argmax)
    metrics.update({k: metrics["summary"][k] for k in DECIDED if k in metrics["summary"]})
    if spec.out_dir:
        atomic_write_json(spec.out_dir, {**metrics, "cases": cases})
    return {**metrics, "cases": cases}
