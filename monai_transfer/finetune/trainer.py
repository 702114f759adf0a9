"""The parts of fine-tuning that its bundle config names and ``evaluate`` builds: metrics, post-processing, the best
checkpoint, early stopping, per-case records (the trainer itself is the config's ``SupervisedTrainer``).

The evaluator runs every epoch (``ValidationHandler``), computes the key metric (mean Dice for segmentation with
MONAI's ``MeanDice``; AUROC with MONAI's ``ROCAUC`` and accuracy with ignite's ``Accuracy`` for classification), keeps
the best checkpoint (``AtomicBestCheckpoint``) and stops early (MONAI's ``EarlyStopHandler`` over ignite's
``EarlyStopping``). MONAI's ``CheckpointSaver`` builds ignite's ``DiskSaver`` with ``atomic=False`` (it writes the
final file in place), so a crash while saving can leave a truncated "best" checkpoint; ``AtomicBestCheckpoint``
writes through ``monai_transfer.utils.atomic.atomic_write`` instead.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from ignite.engine import Engine, Events
from ignite.metrics import Accuracy
from monai.engines import SupervisedEvaluator
from monai.handlers import (
    ROCAUC,
    EarlyStopHandler,
    MeanDice,
    from_engine,
    stopping_fn_from_metric,
)
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from monai.transforms import Activationsd, AsDiscreted, Compose
from monai.utils import optional_import

from monai_transfer.engines.device import default_device
from monai_transfer.utils.atomic import atomic_write, atomic_write_json

SummaryWriter, has_tensorboard = optional_import("torch.utils.tensorboard", name="SummaryWriter")

__all__ = [
    "AtomicBestCheckpoint",
    "CaseCollector",
    "default_device",
    "make_inferer",
    "make_postprocessing",
    "make_evaluator",
    "stack_for_accuracy",
    "EarlyStopOnMetric",
    "KEY_METRICS",
]

logger = logging.getLogger(__name__)

KEY_METRICS = {"classification": ("auroc", "accuracy"), "segmentation": ("mean_dice",)}


def make_inferer(
    task: str, spatial_dims: int, roi_size: Sequence[int] | int | None = None, overlap: float = 0.25
) -> Inferer:
    """Sliding-window inference for 3D segmentation with a ``roi_size``; a plain forward pass otherwise."""
    if task == "segmentation" and spatial_dims == 3 and roi_size is not None:
        roi = [roi_size] * 3 if isinstance(roi_size, int) else list(roi_size)
        return SlidingWindowInferer(roi_size=roi, sw_batch_size=4, overlap=overlap, mode="gaussian")
    return SimpleInferer()


def make_postprocessing(task: str, num_classes: int) -> Compose:
    """Per-item post transforms: probabilities (classification) or one-hot argmax masks (segmentation); one-hot labels."""
    if task == "segmentation":
        return Compose(
            [
                Activationsd(keys="pred", softmax=True),
                AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=[num_classes, num_classes]),
            ]
        )
    return Compose([Activationsd(keys="pred", softmax=True), AsDiscreted(keys="label", to_onehot=num_classes)])


def stack_for_accuracy(output: Sequence[Mapping[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """ignite ``Accuracy``'s input from a decollated batch: stacked probabilities and class indices."""
    preds = torch.stack([torch.as_tensor(o["pred"]) for o in output])
    labels = torch.stack([torch.as_tensor(o["label"]) for o in output]).argmax(1)
    return preds, labels


class AtomicBestCheckpoint:
    """Keep the checkpoint of the best key metric, written atomically (temporary file, fsync, ``os.replace``).

    Attached to the evaluator; at each ``EPOCH_COMPLETED`` the key metric is compared with the best so far, and on
    improvement ``{"network": state_dict, "epoch", "metric", "metric_name", **extra}`` is saved to ``path``.
    NaN metrics never count as an improvement.

    Args:
        path: checkpoint file (e.g. ``out_dir/best_model.pt``).
        network: the module whose ``state_dict`` is saved.
        metric_name: the evaluator metric to compare.
        mode: ``"max"`` or ``"min"``.
        epoch_fn: returns the training epoch to record (default: the evaluator's own epoch).
        extra: plain data stored beside the weights (e.g. the network's build config).
        weights_only: save the bare ``state_dict`` (a bundle's ``models/model.pt``, read by MONAI's
            ``CheckpointLoader``, ``ckpt_export`` and MONAI Label); ``extra`` is then not saved.
        decision: classification: ``{"rule", "calibrate", "one_vs_rest", "section"}``: with every best checkpoint,
            the decision chosen on that validation epoch's cases (:func:`monai_transfer.finetune.decision.decide`) is
            written beside it as ``decision.json``, so that a run of the bundle's own ``train.json`` ships the
            threshold its inference applies. Not under DDP, where each rank sees a shard of the validation cases
            (``finetune`` then chooses it after training, on the whole section).
    """

    #: it only writes outputs: under DDP, ``engines.main_process_handlers`` keeps it on rank 0 only
    main_process_only: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike,
        network: torch.nn.Module,
        metric_name: str,
        mode: str = "max",
        epoch_fn: Callable[[], int] | None = None,
        extra: Mapping[str, Any] | None = None,
        weights_only: bool = False,
        decision: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path = os.fspath(path)
        self.network = network
        self.metric_name = metric_name
        self.mode = mode
        self.epoch_fn = epoch_fn
        self.extra = dict(extra or {})
        self.weights_only = bool(weights_only)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.decision = dict(decision) if decision else None
        self.cases = CaseCollector("classification") if self.decision else None

    def attach(self, engine: Engine) -> None:
        if self.cases is not None:
            self.cases.attach(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def state_dict(self) -> dict[str, Any]:
        """The best metric and its epoch, so that a resumed run (``RunCheckpoint`` objects) compares with them."""
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "metric_name": self.metric_name}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the metric name must match)."""
        if state.get("metric_name", self.metric_name) != self.metric_name:
            raise ValueError(
                f"best-checkpoint state is for {state['metric_name']!r}, this one tracks {self.metric_name!r}"
            )
        best, epoch = state.get("best_metric"), state.get("best_epoch")
        self.best_metric = None if best is None else float(best)
        self.best_epoch = None if epoch is None else int(epoch)

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if self.mode == "max" else value < self.best_metric

    def __call__(self, engine: Engine) -> None:
        value = float(engine.state.metrics[self.metric_name])
        if not self._better(value):
            return
        epoch = int(self.epoch_fn() if self.epoch_fn is not None else engine.state.epoch)
        self.best_metric, self.best_epoch = value, epoch
        net = getattr(self.network, "module", self.network)  # the bare network under DistributedDataParallel
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        payload = {"network": state, "epoch": epoch, "metric": value, "metric_name": self.metric_name, **self.extra}
        if self.weights_only:
            payload = state
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with atomic_write(self.path) as tmp:
            torch.save(payload, tmp)
        logger.info("best %s %.4f at epoch %d -> %s", self.metric_name, value, epoch, self.path)
        if self.cases is not None:
            self._write_decision(epoch)

    def _write_decision(self, epoch: int) -> None:
        from monai_transfer.engines.distributed import is_distributed
        from monai_transfer.finetune.decision import decide, decision_settings

        if is_distributed() and torch.distributed.get_world_size() > 1:
            return  # a shard of the cases: finetune decides after training, on the whole section
        d = dict(self.decision or {})
        section = d.pop("section", "validation")
        chosen = decide(self.cases.cases, **decision_settings(**d))
        chosen.update(validation_section=section, epoch=epoch)
        atomic_write_json(os.path.join(os.path.dirname(os.path.abspath(self.path)), "decision.json"), chosen)


class CaseCollector:
    """Collect one record per evaluated case (for per-case statistics and confidence intervals).

    Classification: ``{"label", "prob"}``; segmentation: ``{"dice", "hd95_voxels", "surface_dice_1voxel"}`` per
    foreground class (HD95 and normalised surface Dice at a 1-voxel tolerance, in voxels of the network's input grid,
    which the pipeline does not resample; NaN where a class is absent from both). Records carry a running index.
    """

    def __init__(self, task: str) -> None:
        self.task = task
        self.cases: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.cases.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        for item in engine.state.output:
            pred, label = torch.as_tensor(item["pred"]), torch.as_tensor(item["label"])
            rec: dict[str, Any] = {"index": len(self.cases)}
            if self.task == "classification":
                rec.update(label=int(label.argmax()), prob=[float(v) for v in pred])
            else:
                p, y = pred[None].float(), label[None].float()
                d = compute_dice(p, y, include_background=False, ignore_empty=True)[0]
                hd = compute_hausdorff_distance(p, y, include_background=False, percentile=95)[0]
                nsd = compute_surface_dice(p, y, class_thresholds=[1.0] * d.numel(), include_background=False)[0]
                rec["dice"] = [float(v) for v in d]
                rec["hd95_voxels"] = [float(v) if torch.isfinite(v) else float("nan") for v in hd]
                rec["surface_dice_1voxel"] = [float(v) for v in nsd]
            self.cases.append(rec)


def make_evaluator(
    network: torch.nn.Module,
    loader: Any,
    task: str,
    num_classes: int,
    device: torch.device,
    inferer: Inferer | None = None,
    amp: bool = False,
    key_metric: str | None = None,
    collect_cases: bool = False,
) -> SupervisedEvaluator:
    """A ``SupervisedEvaluator`` with the task's metrics.

    Args:
        network, loader, device, amp: as in MONAI's ``SupervisedEvaluator``.
        task: ``"classification"`` (metrics ``auroc``, ``accuracy``) or ``"segmentation"`` (``mean_dice``).
        num_classes: classes (background included).
        inferer: default ``SimpleInferer``; use ``make_inferer`` for sliding windows.
        key_metric: the key metric (default: ``auroc`` / ``mean_dice``).
        collect_cases: attach a ``CaseCollector`` as ``evaluator.case_collector``.
    """
    names = KEY_METRICS[task]
    key = key_metric or names[0]
    if key not in names:
        raise ValueError(f"key_metric for {task} must be one of {names}, got {key!r}")
    out = from_engine(["pred", "label"])
    if task == "segmentation":
        metrics: dict[str, Any] = {"mean_dice": MeanDice(include_background=False, output_transform=out)}
    else:
        metrics = {"auroc": ROCAUC(output_transform=out), "accuracy": Accuracy(output_transform=stack_for_accuracy)}
    key_metrics = {key: metrics.pop(key)}
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=loader,
        network=network,
        inferer=inferer or SimpleInferer(),
        postprocessing=make_postprocessing(task, num_classes),
        key_val_metric=key_metrics,
        additional_metrics=metrics or None,
        amp=amp,
    )
    if collect_cases:
        collector = CaseCollector(task)
        collector.attach(evaluator)
        evaluator.case_collector = collector
    return evaluator


class EarlyStopOnMetric:
    """Stop training when the evaluator's ``metric_name`` has not improved for ``patience`` validations.

    MONAI's ``EarlyStopHandler`` (ignite ``EarlyStopping``) with a NaN-safe score; ``patience=None`` disables it, so
    that a bundle config can hold the handler and switch it with one value. Attach to the evaluator; give the trainer
    at construction or later with :meth:`set_trainer` (a config cannot reference the trainer from the evaluator's
    handlers without a cycle).
    """

    def __init__(self, patience: int | None, metric_name: str, trainer: Engine | None = None) -> None:
        self.patience = None if patience is None else int(patience)
        self.metric_name = metric_name
        self._handler: EarlyStopHandler | None = None
        if self.patience is not None:
            self._handler = EarlyStopHandler(
                patience=self.patience, score_function=_nan_safe(stopping_fn_from_metric(metric_name)), trainer=trainer
            )

    def set_trainer(self, trainer: Engine) -> None:
        if self._handler is not None:
            self._handler.set_trainer(trainer)

    def attach(self, engine: Engine) -> None:
        if self._handler is not None:
            self._handler.attach(engine)

    def state_dict(self) -> dict[str, Any]:
        stopper = getattr(self._handler, "_handler", None)
        return stopper.state_dict() if stopper is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        stopper = getattr(self._handler, "_handler", None)
        if stopper is not None and state:
            stopper.load_state_dict(dict(state))


def _nan_safe(fn: Callable[[Engine], float]) -> Callable[[Engine], float]:
    def score(engine: Engine) -> float:
        v = float(fn(engine))
        return -math.inf if math.isnan(v) else v

    return score
