"""One typed specification per run kind: the fields every run shares (:class:`BaseRunSpec`), those every training run
adds (:class:`TrainingRunSpec`) and each kind's own (:class:`FinetuneSpec`, :class:`PretrainSpec`, :class:`EvaluateSpec`, :class:`InferSpec`). The command line, the Python API and a study spec all build and check one; the registry
:data:`RUN_SPECS` is where the entry points look the class up (so a test, or a plugin, can extend one)."""

from __future__ import annotations

from monai_transfer.engines.specs.base import (
    BaseRunSpec,
    RunSpec,
    SpecFieldError,
    TrainingRunSpec,
    check_values,
    setting,
    spec_fields,
)
from monai_transfer.engines.specs.evaluate import EvaluateSpec
from monai_transfer.engines.specs.finetune import FINETUNE_TASKS, FinetuneSpec, value_ids
from monai_transfer.engines.specs.infer import InferSpec
from monai_transfer.engines.specs.pretrain import PretrainSpec, load_pretrain_spec

__all__ = ["RunSpec", "BaseRunSpec", "TrainingRunSpec", "FinetuneSpec", "PretrainSpec", "EvaluateSpec", "InferSpec", "load_pretrain_spec", "SpecFieldError", "setting", "spec_fields", "check_values",
           "value_ids", "RUN_SPECS", "spec_class", "FINETUNE_TASKS"]  # fmt: skip

#: run kind -> its spec class
RUN_SPECS: dict[str, type[RunSpec]] = {
    "finetune": FinetuneSpec,
    "pretrain": PretrainSpec,
    "evaluate": EvaluateSpec,
    "infer": InferSpec,
}


def spec_class(kind: str) -> type:
    """The spec class of a run kind (``"finetune"``)."""
    return RUN_SPECS[kind]
