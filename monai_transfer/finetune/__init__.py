"""Fine-tuning: strategies (linear probe, full, partial freeze, layer-wise LR decay, gradual unfreeze, LP-FT),
parameter groups, MONAI ``SupervisedTrainer``/``SupervisedEvaluator`` wiring, task pipelines and whole runs.
"""

from __future__ import annotations

from monai_transfer.finetune.cases import datalist_cases
from monai_transfer.finetune.evaluate import evaluate, load_run
from monai_transfer.finetune.evaluate_run import evaluate_run
from monai_transfer.finetune.param_groups import (
    backbone_stage_names,
    get_param_stages,
    no_weight_decay_names,
    stage_param_groups,
    trainable_parameter_names,
)
from monai_transfer.finetune.run import finetune, finetune_config_run, finetune_spec
from monai_transfer.finetune.strategies import (
    STRATEGIES,
    FinetuneStrategy,
    FullFinetune,
    GradualUnfreeze,
    LayerwiseLRDecay,
    LinearProbe,
    LinearProbeThenFinetune,
    PartialFreeze,
    StageUnfreezeHandler,
    StrategyHandlers,
    create_strategy,
    freeze_stages,
    list_strategies,
    unfreeze_stages,
)

__all__ = [
    "STRATEGIES",
    "FinetuneStrategy",
    "FullFinetune",
    "GradualUnfreeze",
    "LayerwiseLRDecay",
    "LinearProbe",
    "LinearProbeThenFinetune",
    "PartialFreeze",
    "StageUnfreezeHandler",
    "StrategyHandlers",
    "datalist_cases",
    "backbone_stage_names",
    "create_strategy",
    "evaluate",
    "evaluate_run",
    "finetune_spec",
    "load_run",
    "finetune",
    "finetune_config_run",
    "freeze_stages",
    "get_param_stages",
    "list_strategies",
    "no_weight_decay_names",
    "stage_param_groups",
    "trainable_parameter_names",
    "unfreeze_stages",
]
