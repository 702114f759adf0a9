"""Fine-tuning strategies: which stages train, at which learning rate, and when that changes.

A strategy is a small object built from keyword arguments (bundle-native)::

    "strategy": {"_target_": "monai_transfer.finetune.LayerwiseLRDecay", "lr": 1e-3, "decay": 0.75},
    "optimizer": {"_target_": "torch.optim.AdamW", "params": "$@strategy.apply(@network)"},
    "train#handlers": "$@strategy.handlers(@optimizer)"

``apply(net)`` sets ``requires_grad`` (frozen stages also keep their normalisation statistics and dropout in eval
mode) and returns the optimizer's parameter groups; ``handlers(optimizer)`` returns ignite handlers (objects with
``attach(engine)``) for strategies that change the trainable set during training. Every strategy takes ``lr``,
``weight_decay`` (never applied to norms and biases) and ``head_lr_mult`` (a higher learning rate for the newly
initialised head).

Strategies (``create_strategy(name, **kwargs)``, names in ``STRATEGIES``):

* ``"full"``: everything trains (Kornblith et al. 2019, arXiv:1805.08974).
* ``"linear-probe"``: the backbone is frozen, batch-norm statistics included; only the head trains.
* ``"freeze-k"``: the first ``k`` backbone stages are frozen (Yosinski et al. 2014, arXiv:1411.1792);
  ``"freeze-2"`` is shorthand for ``k=2``.
* ``"llrd"``: layer-wise learning-rate decay, ``lr_stage = lr * decay ** (n_stages - stage_index)`` with stages
  indexed 0 (shallowest) .. n_stages - 1, head at ``lr`` (Clark et al. 2020 ELECTRA, arXiv:2003.10555; Bao et al.
  2022 BEiT, arXiv:2106.08254).
* ``"gradual-unfreeze"``: the head first, then one more backbone stage every ``every_n_epochs`` epochs from the
  deepest down (Howard & Ruder 2018 ULMFiT, arXiv:1801.06146).
* ``"lp-ft"``: linear probe for ``lp_epochs`` epochs, then full fine-tuning at ``lr * ft_lr_scale``
  (Kumar et al. 2022, arXiv:2202.10054).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from monai_transfer.finetune.param_groups import backbone_stage_names, get_param_stages, stage_param_groups
from monai_transfer.networks.base import stage_of_key
from monai_transfer.utils.registry import Registry

__all__ = [
    "FinetuneStrategy",
    "FullFinetune",
    "LinearProbe",
    "PartialFreeze",
    "LayerwiseLRDecay",
    "GradualUnfreeze",
    "LinearProbeThenFinetune",
    "StageUnfreezeHandler",
    "StrategyHandlers",
    "STRATEGIES",
    "create_strategy",
    "list_strategies",
    "freeze_stages",
    "unfreeze_stages",
]

logger = logging.getLogger(__name__)


def _force_eval(module: nn.Module, args: Any) -> None:
    # a forward pre-hook: SupervisedTrainer calls network.train() every iteration, so frozen modules are put back
    # into eval mode right before they run (batch-norm statistics stay fixed, dropout stays off)
    module.training = False


def _modules_of(net: nn.Module, stages: Mapping[str, tuple[str, ...]], names: set[str]) -> list[nn.Module]:
    """Leaf modules whose names fall in the given stages."""
    out = []
    for mod_name, module in net.named_modules():
        if mod_name and not any(True for _ in module.children()) and stage_of_key(mod_name, stages) in names:
            out.append(module)
    return out


def freeze_stages(net: nn.Module, names: list[str] | set[str], hooks: dict[str, list] | None = None) -> None:
    """Set ``requires_grad=False`` on the given stages and keep their modules in eval mode.

    Args:
        net: a network with ``param_stages()``.
        names: stage names to freeze.
        hooks: a dict (kept by the caller, e.g. a strategy) that receives the forward pre-hook handles per stage, so
            that ``unfreeze_stages`` can remove them again.
    """
    stages = get_param_stages(net)
    unknown = set(names) - set(stages)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; the network has {list(stages)}")
    for pname, p in net.named_parameters():
        if stage_of_key(pname, stages) in names:
            p.requires_grad_(False)
    for name in names:
        handles = [m.register_forward_pre_hook(_force_eval) for m in _modules_of(net, stages, {name})]
        if hooks is not None:
            hooks.setdefault(name, []).extend(handles)


def unfreeze_stages(net: nn.Module, names: list[str] | set[str], hooks: dict[str, list] | None = None) -> None:
    """Set ``requires_grad=True`` on the given stages and remove their eval-mode hooks (from ``hooks``)."""
    stages = get_param_stages(net)
    for pname, p in net.named_parameters():
        if stage_of_key(pname, stages) in names:
            p.requires_grad_(True)
    for name in names:
        for h in (hooks or {}).pop(name, []):
            h.remove()


class FinetuneStrategy:
    """Base class: every parameter trains at ``lr`` (head at ``lr * head_lr_mult``).

    Args:
        lr: base learning rate.
        weight_decay: weight decay of weights (never of norms, biases, embeddings).
        head_lr_mult: learning-rate multiplier of the head (new heads often learn faster at a higher rate).
    """

    name = "full"

    def __init__(self, lr: float = 1e-3, weight_decay: float = 1e-4, head_lr_mult: float = 1.0) -> None:
        if lr <= 0 or head_lr_mult <= 0 or weight_decay < 0:
            raise ValueError(
                f"need lr > 0, head_lr_mult > 0, weight_decay >= 0; got {lr}, {head_lr_mult}, {weight_decay}"
            )
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.head_lr_mult = float(head_lr_mult)
        self.net: nn.Module | None = None
        self._hooks: dict[str, list] = {}

    # subclasses override these two
    def frozen_stages(self, net: nn.Module) -> list[str]:
        """Backbone stages frozen at the start of training."""
        return []

    def stage_lr(self, net: nn.Module, stage: str) -> float:
        """Learning rate of a stage (``"head"`` included) once it trains."""
        return self.lr * self.head_lr_mult if stage == "head" else self.lr

    def apply(self, net: nn.Module) -> list[dict]:
        """Freeze what the strategy freezes and return the optimizer's parameter groups (trainable stages only)."""
        self.reset(net)
        self.net = net
        frozen = self.frozen_stages(net)
        freeze_stages(net, frozen, self._hooks)
        stages = get_param_stages(net)
        lrs = {s: self.stage_lr(net, s) for s in stages if s not in frozen}
        if any(stage_of_key(n, stages) == "other" for n, _ in net.named_parameters()):
            lrs["other"] = self.lr
        return stage_param_groups(net, lrs, self.weight_decay, stages)

    def reset(self, net: nn.Module) -> None:
        """Undo this strategy's freezing: every parameter trainable, eval-mode hooks removed."""
        for handles in self._hooks.values():
            for h in handles:
                h.remove()
        self._hooks.clear()
        for p in net.parameters():
            p.requires_grad_(True)

    def handlers(self, optimizer: Any) -> list:
        """Ignite handlers to attach to the trainer (none for static strategies)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this strategy, with its registry name."""
        return {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay, "head_lr_mult": self.head_lr_mult}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({args})"


class FullFinetune(FinetuneStrategy):
    """Everything trains (the ``"full"`` strategy)."""

    name = "full"


class LinearProbe(FinetuneStrategy):
    """Only the head trains; the whole backbone is frozen and kept in eval mode (BN statistics fixed)."""

    name = "linear-probe"

    def frozen_stages(self, net: nn.Module) -> list[str]:
        return backbone_stage_names(net)


class PartialFreeze(FinetuneStrategy):
    """The first ``k`` backbone stages (shallowest) are frozen; the rest and the head train.

    Args:
        k: number of stages frozen, ``0 <= k <= n_stages`` (``k = n_stages`` is a linear probe).
        lr, weight_decay, head_lr_mult: as in ``FinetuneStrategy``.
    """

    name = "freeze-k"

    def __init__(self, k: int = 1, lr: float = 1e-3, weight_decay: float = 1e-4, head_lr_mult: float = 1.0) -> None:
        super().__init__(lr, weight_decay, head_lr_mult)
        if int(k) != k or k < 0:
            raise ValueError(f"freeze-k needs an integer k >= 0, got {k!r}")
        self.k = int(k)

    def frozen_stages(self, net: nn.Module) -> list[str]:
        stages = backbone_stage_names(net)
        if self.k > len(stages):
            raise ValueError(f"freeze-k: k={self.k} but the backbone has {len(stages)} stages {stages}")
        return stages[: self.k]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "k": self.k}


class LayerwiseLRDecay(FinetuneStrategy):
    """Layer-wise learning-rate decay: ``lr_stage = lr * decay ** (n_stages - stage_index)``, head at ``lr``.

    Stages are the backbone's ``param_stages()`` indexed 0 (shallowest) to ``n_stages - 1`` (deepest), so the deepest
    stage trains at ``lr * decay`` and the stem at ``lr * decay ** n_stages`` (ELECTRA, Clark et al. 2020,
    arXiv:2003.10555; BEiT, Bao et al. 2022, arXiv:2106.08254).

    Args:
        decay: factor in ``(0, 1]`` (1 is full fine-tuning).
        lr, weight_decay, head_lr_mult: as in ``FinetuneStrategy`` (the head trains at ``lr * head_lr_mult``).
    """

    name = "llrd"

    def __init__(
        self, decay: float = 0.75, lr: float = 1e-3, weight_decay: float = 1e-4, head_lr_mult: float = 1.0
    ) -> None:
        super().__init__(lr, weight_decay, head_lr_mult)
        if not 0 < decay <= 1:
            raise ValueError(f"llrd decay must lie in (0, 1], got {decay}")
        self.decay = float(decay)

    def stage_lr(self, net: nn.Module, stage: str) -> float:
        if stage == "head":
            return self.lr * self.head_lr_mult
        stages = backbone_stage_names(net)
        return self.lr * self.decay ** (len(stages) - stages.index(stage))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "decay": self.decay}


class StageUnfreezeHandler:
    """Ignite handler that unfreezes backbone stages at given epochs and adds their parameter groups.

    At ``Events.EPOCH_STARTED`` of epoch ``e`` (1-based) every stage whose unfreeze epoch is ``<= e`` is made
    trainable (``requires_grad``, eval-mode hooks removed) and its groups are added to the optimizer with
    ``add_param_group``; it is computed from the epoch number alone, so a resumed run gets the same trainable set.

    Args:
        strategy: the strategy that froze the stages (holds the network and hooks).
        optimizer: the optimizer built from ``strategy.apply(net)``.
        schedule: stage name -> epoch (1-based) at which it starts training.
        lr_scale_after: optional ``(epoch, scale)``: from that epoch on every group's learning rate is the strategy's
            stage learning rate times ``scale`` (LP-FT's lower fine-tuning rate).
    """

    def __init__(
        self,
        strategy: FinetuneStrategy,
        optimizer: Any,
        schedule: Mapping[str, int],
        lr_scale_after: tuple[int, float] | None = None,
    ) -> None:
        if strategy.net is None:
            raise RuntimeError("call strategy.apply(net) before strategy.handlers(optimizer)")
        self.strategy = strategy
        self.optimizer = optimizer
        self.schedule = dict(schedule)
        self.lr_scale_after = lr_scale_after
        self.unfrozen: list[str] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def _scale(self, epoch: int) -> float:
        if self.lr_scale_after is not None and epoch >= self.lr_scale_after[0]:
            return self.lr_scale_after[1]
        return 1.0

    def __call__(self, engine: Any) -> None:
        self.step(int(engine.state.epoch))

    def step(self, epoch: int) -> list[str]:
        """Apply the schedule for ``epoch``; return the stages unfrozen now."""
        net = self.strategy.net
        assert net is not None
        due = [s for s, e in self.schedule.items() if e <= epoch and s not in self.unfrozen]
        # deepest first, so that groups are added in the order stages start training
        order = backbone_stage_names(net)
        due.sort(key=order.index, reverse=True)
        scale = self._scale(epoch)
        if due:
            unfreeze_stages(net, due, self.strategy._hooks)
            lrs = {s: self.strategy.stage_lr(net, s) for s in due}
            for group in stage_param_groups(net, lrs, self.strategy.weight_decay):
                self.optimizer.add_param_group(group)
            self.unfrozen.extend(due)
            logger.info("epoch %d: unfroze %s", epoch, due)
        if self.lr_scale_after is None:
            return due
        for group in self.optimizer.param_groups:
            stage = group.get("stage")
            if stage is not None and stage != "other":
                # base_lr: what a learning-rate schedule (engines.WarmupCosineHandler) multiplies
                group["lr"] = group["base_lr"] = self.strategy.stage_lr(net, stage) * scale
        return due


class GradualUnfreeze(FinetuneStrategy):
    """ULMFiT gradual unfreezing: the head first, then one more backbone stage every ``every_n_epochs`` epochs.

    Epochs ``1..N`` train the head only, epochs ``N+1..2N`` add the deepest stage, and so on down to the stem
    (Howard & Ruder 2018, arXiv:1801.06146). Optional discriminative rates: a newly trainable stage gets
    ``lr * decay ** (n_stages - stage_index)`` as in ``"llrd"`` (``decay=1`` keeps ``lr``).

    Args:
        every_n_epochs: epochs between two unfreezings.
        decay: layer-wise decay of the unfrozen stages' learning rates, in ``(0, 1]``.
        lr, weight_decay, head_lr_mult: as in ``FinetuneStrategy``.
    """

    name = "gradual-unfreeze"

    def __init__(
        self,
        every_n_epochs: int = 1,
        decay: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        head_lr_mult: float = 1.0,
    ) -> None:
        super().__init__(lr, weight_decay, head_lr_mult)
        if int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(f"gradual-unfreeze needs an integer every_n_epochs >= 1, got {every_n_epochs!r}")
        if not 0 < decay <= 1:
            raise ValueError(f"gradual-unfreeze decay must lie in (0, 1], got {decay}")
        self.every_n_epochs = int(every_n_epochs)
        self.decay = float(decay)

    def frozen_stages(self, net: nn.Module) -> list[str]:
        return backbone_stage_names(net)

    def stage_lr(self, net: nn.Module, stage: str) -> float:
        if stage == "head":
            return self.lr * self.head_lr_mult
        stages = backbone_stage_names(net)
        return self.lr * self.decay ** (len(stages) - stages.index(stage))

    def unfreeze_schedule(self, net: nn.Module) -> dict[str, int]:
        """Stage -> first epoch (1-based) it trains: the deepest at ``N + 1``, the next at ``2N + 1``, ..."""
        stages = backbone_stage_names(net)
        return {s: 1 + self.every_n_epochs * (i + 1) for i, s in enumerate(reversed(stages))}

    def handlers(self, optimizer: Any) -> list:
        assert self.net is not None, "call apply(net) first"
        return [StageUnfreezeHandler(self, optimizer, self.unfreeze_schedule(self.net))]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "every_n_epochs": self.every_n_epochs, "decay": self.decay}


class LinearProbeThenFinetune(FinetuneStrategy):
    """LP-FT: a linear probe for ``lp_epochs`` epochs, then everything trains at ``lr * ft_lr_scale``.

    Fitting the head first keeps the pretrained features from being distorted by a random head's gradients
    (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features", arXiv:2202.10054).

    Args:
        lp_epochs: epochs of linear probing (E1); full fine-tuning starts at epoch ``lp_epochs + 1``.
        ft_lr_scale: learning-rate factor of the fine-tuning phase (head included), in ``(0, 1]``.
        lr, weight_decay, head_lr_mult: as in ``FinetuneStrategy``.
    """

    name = "lp-ft"

    def __init__(
        self,
        lp_epochs: int = 1,
        ft_lr_scale: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        head_lr_mult: float = 1.0,
    ) -> None:
        super().__init__(lr, weight_decay, head_lr_mult)
        if int(lp_epochs) != lp_epochs or lp_epochs < 0:
            raise ValueError(f"lp-ft needs an integer lp_epochs >= 0, got {lp_epochs!r}")
        if not 0 < ft_lr_scale <= 1:
            raise ValueError(f"lp-ft ft_lr_scale must lie in (0, 1], got {ft_lr_scale}")
        self.lp_epochs = int(lp_epochs)
        self.ft_lr_scale = float(ft_lr_scale)

    def frozen_stages(self, net: nn.Module) -> list[str]:
        return backbone_stage_names(net)

    def handlers(self, optimizer: Any) -> list:
        assert self.net is not None, "call apply(net) first"
        start = self.lp_epochs + 1
        schedule = dict.fromkeys(backbone_stage_names(self.net), start)
        return [StageUnfreezeHandler(self, optimizer, schedule, lr_scale_after=(start, self.ft_lr_scale))]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "lp_epochs": self.lp_epochs, "ft_lr_scale": self.ft_lr_scale}


class StrategyHandlers:
    """One handler for a bundle config's ``train#handlers``: attaches the strategy's own handlers (unfreezing
    schedules) for ``optimizer`` to the trainer.

    Args:
        strategy: the built strategy (``@finetune_strategy``).
        optimizer: the optimizer over ``strategy.apply(network)``'s groups.
    """

    def __init__(self, strategy: FinetuneStrategy, optimizer: Any) -> None:
        self.handlers = list(strategy.handlers(optimizer))
        import torch.distributed as dist

        if self.handlers and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # DistributedDataParallel syncs only the parameters that trained when it was built: stages unfrozen later
            # would drift apart between ranks without an error
            raise ValueError(
                f"strategy {strategy.name!r} unfreezes stages during training, which DistributedDataParallel does not "
                "follow; under torchrun use full, linear-probe, freeze-k or llrd (or run it in one process)"
            )

    def attach(self, engine: Any) -> None:
        for h in self.handlers:
            h.attach(engine)


def _strategy_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


STRATEGIES: Registry[type[FinetuneStrategy]] = Registry(
    "fine-tuning strategy", normalize=_strategy_key, error=ValueError, note=" (and 'freeze-<k>')"
)
for _cls in (FullFinetune, LinearProbe, PartialFreeze, LayerwiseLRDecay, GradualUnfreeze, LinearProbeThenFinetune):
    STRATEGIES.register(_cls, name=_cls.name)


def list_strategies() -> list[str]:
    """Names accepted by ``create_strategy`` (``"freeze-<k>"`` also works, e.g. ``"freeze-2"``)."""
    return STRATEGIES.names()


def create_strategy(name: str | FinetuneStrategy, **kwargs: Any) -> FinetuneStrategy:
    """Build a strategy by registry name (``list_strategies()``) with its keyword arguments.

    ``"freeze-2"`` means ``create_strategy("freeze-k", k=2)``; underscores are accepted for hyphens
    (``"linear_probe"``). A strategy instance is returned unchanged (``kwargs`` must then be empty).

    Raises:
        ValueError: unknown name (the message lists the known ones) or a keyword the strategy does not take.
    """
    if isinstance(name, FinetuneStrategy):
        if kwargs:
            raise ValueError("keyword arguments apply to a strategy name, not to a built strategy")
        return name
    key = STRATEGIES.key(name)
    m = re.fullmatch(r"freeze-(\d+)", key)
    if m:
        if "k" in kwargs and int(kwargs["k"]) != int(m.group(1)):
            raise ValueError(f"strategy {name!r} and k={kwargs['k']} disagree")
        key, kwargs = "freeze-k", {**kwargs, "k": int(m.group(1))}
    if key not in STRATEGIES:
        raise ValueError(STRATEGIES.unknown_message(name))
    cls = STRATEGIES[key]
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"strategy {key!r} ({cls.__name__}) does not accept {sorted(kwargs)}: {e}") from e
