"""An evaluation's settings: a fine-tuned run's best weights scored on one datalist section, its classifier deciding
as the run chose or by a rule chosen on held-out cases (``monai-transfer evaluate``,
:func:`monai_transfer.finetune.evaluate_run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from monai_transfer.engines.specs.base import BaseRunSpec, SpecFieldError, setting
from monai_transfer.metrics.thresholds import check_threshold_rule

__all__ = ["EvaluateSpec"]


def _rule(value: str) -> None:
    """``run`` (the run's own decision) or a threshold rule."""
    if value != "run":
        check_threshold_rule(value)


@dataclass
class EvaluateSpec(BaseRunSpec):
    """Everything an evaluation needs (the shared fields of :class:`~monai_transfer.engines.specs.base.BaseRunSpec`
    first)."""

    kind: ClassVar[str] = "evaluation"

    out_dir: str = setting("", "write the metrics and per-case records to this JSON file", flag="--out", metavar="FILE")
    seed: int = setting(0, "seed of the bootstrap confidence intervals")
    checkpoint: str = setting("", "the folder 'monai-transfer finetune' wrote (or its models/model.pt)",
                              positional=True)  # fmt: skip
    datalist: str = setting("", "datalist JSON (or a MedMNIST .npz)", flag="--data")
    section: str = setting("test", "datalist section to evaluate")
    batch_size: int = setting(8, "evaluation batch size", minimum=1)
    threshold: str = setting(
        "run", "how a binary classifier decides: 'run' (default: the threshold the run chose on its validation set, "
        "models/decision.json; runs without one choose Youden's J on --threshold-section), or a rule applied on "
        "--threshold-section: youden, f1, sensitivity:X, argmax (0.5) or a number in (0, 1). Accuracy at 0.5 is "
        "reported beside it as accuracy_at_0.5", metavar="RULE", check=_rule)  # fmt: skip
    threshold_section: str = setting(
        "validation", "datalist section the threshold is chosen on (default: validation); never the evaluated section"
    )
    calibrate: str = setting(
        "run", "probability calibration: 'run' (default: the temperature the run fitted, if any), 'none', or "
        "'temperature' (fitted on --threshold-section, Guo et al. 2017; it changes ECE and Brier, not AUROC)",
        choices=("run", "none", "temperature"))  # fmt: skip
    one_vs_rest: bool = setting(
        False, "multi-class: also choose each class's threshold against the rest on --threshold-section by the rule "
        "and report its sensitivity, specificity, F1 and balanced accuracy (class<k>_*; the predicted class stays the "
        "argmax)")  # fmt: skip
    overrides: list[str] | None = setting(
        None, "change a value of the run's saved config (configs/train.json) for this evaluation, e.g. "
        "validate#inferer#overlap=0.5 (--set, repeatable)", cli=False)  # fmt: skip

    def check(self) -> None:
        if not self.checkpoint or not self.datalist:
            raise SpecFieldError("give the run folder (checkpoint) and its datalist")
