"""A fine-tuning run's settings: one typed record that ``monai-transfer finetune``, :func:`monai_transfer.finetune.finetune`,
a study spec's ``finetune:`` section and a study's cells all build and check the same way.

Fields with a ``config_id`` are the run's values its bundle config holds under that id (``--set lr=1e-4`` reaches
them, ``result.json`` reports them as they ran); the others shape the config itself (see
:func:`monai_transfer.finetune.plan.plan_finetune`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from monai_transfer.engines.specs.base import SpecFieldError, TrainingRunSpec, setting
from monai_transfer.metrics.thresholds import check_threshold_rule

__all__ = ["FinetuneSpec", "FINETUNE_TASKS", "value_ids"]

FINETUNE_TASKS = ("classification", "segmentation")


@dataclass
class FinetuneSpec(TrainingRunSpec):
    """Everything a fine-tuning run needs (the shared fields of :class:`~monai_transfer.engines.specs.base.TrainingRunSpec`
    first). A study's cells set the fields marked ``study=False``; its ``finetune:`` section may set the others."""

    kind: ClassVar[str] = "fine-tuning"

    backbone: str = setting("resnet18", "registry name ('monai-transfer backbones'); the command needs it without "
                            "--config (the Python API's default: resnet18)", study=False)  # fmt: skip
    pretrained: str | None = setting(None, "checkpoint path, bundle folder or source name (default: random)",
                                     study=False)  # fmt: skip
    task: str = setting("classification", "the command needs it without --config (the Python API's default: "
                        "classification)", choices=FINETUNE_TASKS, study=False)  # fmt: skip
    strategy: Any = setting("full", "full, linear-probe, freeze-k (or freeze-<k>), llrd, gradual-unfreeze or lp-ft; "
                            "see docs/finetune.md", study=False)  # fmt: skip
    strategy_kwargs: dict[str, Any] = setting(
        factory=dict, help="strategy options, e.g. decay=0.75 (llrd), k=2 (freeze-k), lp_epochs=3 (lp-ft)",
        flag="--strategy-arg", nargs="*", metavar="KEY=VALUE")  # fmt: skip
    label_fraction: float = setting(
        1.0, "fraction of labelled training cases, nested and class-stratified", minimum=0.0, maximum=1.0,
        open_minimum=True, study=False, config_id="label_fraction")  # fmt: skip
    datalist: str = setting("", "MSD-style datalist JSON (training/validation/test sections) or a MedMNIST .npz; "
                            "required without --config", flag="--data", study=False)  # fmt: skip
    epochs: int = setting(10, "maximum epochs", minimum=1, config_id="train#trainer#max_epochs")
    batch_size: int = setting(8, "batch size", minimum=1, config_id="batch_size")
    lr: float = setting(1e-3, "base learning rate; strategies derive per-stage rates", minimum=0.0, config_id="lr")
    weight_decay: float = setting(1e-4, "not applied to norms and biases", minimum=0.0, config_id="weight_decay")
    head_lr_mult: float = setting(
        1.0, "learning-rate multiplier of the new head", minimum=0.0, config_id="head_lr_mult"
    )
    warmup_epochs: float = setting(0.0, "linear warm-up before the cosine decay", minimum=0.0,
                                   config_id="warmup_epochs")  # fmt: skip
    patience: int | None = setting(None, "early-stopping patience in epochs (default: off)", minimum=1,
                                   config_id="patience")  # fmt: skip
    optimizer: str = setting("adamw", "the optimizer", choices=("adamw", "sgd"))
    loss: str = setting("auto", "auto: ce for classification, dice-ce for segmentation",
                        choices=("auto", "ce", "focal", "dice-ce"))  # fmt: skip
    class_weights: str | list[float] | None = setting(
        None, "'balanced' for inverse-frequency class weights of the training subset, or one weight per class "
        "(default: none)", nargs="+", metavar="W")  # fmt: skip
    focal_gamma: float = setting(2.0, "focusing parameter of the focal loss", minimum=0.0)
    key_metric: str | None = setting(None, "validation metric that picks the best epoch (default: auroc or mean_dice)",
                                     choices=("auroc", "accuracy", "mean_dice"))  # fmt: skip
    num_classes: int | None = setting(None, "default: the datalist's labels", minimum=1, study=False)
    spatial_dims: int | None = setting(None, "default: from the images", choices=(2, 3), study=False)
    in_channels: int = setting(1, "image channels", minimum=1, study=False)
    spatial_size: list[int] | int | None = setting(
        None, "classification: resize images to this size (default: keep)", nargs="+"
    )
    patch_size: list[int] | int | None = setting(
        None, "segmentation: training crop; 3D: also the sliding window (default: whole images)", nargs="+"
    )
    intensity: dict[str, Any] | None = setting(
        None, "intensity mapping (default: the starting point's recorded one, else zscore)", cli=False
    )
    augment: bool = setting(True, "random flips in training (--no-augment: none)")
    backbone_kwargs: dict[str, Any] = setting(factory=dict, help="backbone options", flag="--backbone-arg",
                                              nargs="*", metavar="KEY=VALUE")  # fmt: skip
    head_kwargs: dict[str, Any] = setting(factory=dict, help="head options", flag="--head-arg", nargs="*",
                                          metavar="KEY=VALUE")  # fmt: skip
    strict: bool = setting(True, "load the starting weights strictly", cli=False, study=False)
    train_section: str = setting("training", "the datalist section trained on", study=False)
    val_section: str = setting("validation", "the datalist section that picks the best epoch", study=False)
    test_section: str | None = setting("test", "section the best weights are evaluated on; '' for none",
                                       study=False)  # fmt: skip
    threshold: str | float | None = setting(
        None, "how a binary classifier decides, chosen on the validation section and applied to the test section and "
        "by the inference bundle: youden (default; Youden's J), f1, sensitivity:X (the highest threshold with "
        "validation sensitivity >= X), argmax (0.5) or a number in (0, 1); accuracy at 0.5 is reported beside it as "
        "accuracy_at_0.5", metavar="RULE", check=check_threshold_rule)  # fmt: skip
    calibrate: str | None = setting(
        None, "fit a temperature on the validation section (Guo et al. 2017), applied to test metrics and by the "
        "inference bundle (default: none)", choices=("none", "temperature"))  # fmt: skip
    one_vs_rest: bool = setting(
        False,
        "multi-class: also choose each class's threshold against the rest by --threshold's rule on validation "
        "and report its test sensitivity, specificity, F1 and balanced accuracy (the predicted class stays the argmax)",
    )
    overrides: list[str] | dict[str, Any] | None = setting(
        None, "id=value strings or a mapping applied to the bundle config last (--set)", cli=False
    )

    def check(self) -> None:
        if self.test_section == "":
            self.test_section = None
        if isinstance(self.strategy, str) and not self.strategy:
            raise SpecFieldError("strategy: give a strategy name")


def value_ids(spec_class: type[FinetuneSpec]) -> dict[str, str]:
    """Field -> the config id that holds its value (``epochs`` -> ``train#trainer#max_epochs``)."""
    from dataclasses import fields

    return {f.name: f.metadata["config_id"] for f in fields(spec_class) if f.metadata.get("config_id")}
