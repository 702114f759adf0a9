"""The SSL trainer: a MONAI ``Trainer`` whose iteration is ``method(batch) -> {"loss", terms}`` and one step.

Because it is a ``monai.engines.Trainer`` (an ignite ``Engine``), MONAI and ignite handlers attach unchanged:
``StatsHandler(output_transform=from_engine(["loss"], first=True))``, ``TensorBoardStatsHandler``, ``MLFlowHandler``,
``CheckpointSaver(save_dict={"method": trainer.method, ...})``, ``LrScheduleHandler``, ``EarlyStopHandler``,
ignite's ``ProgressBar``, and this package's ``ScheduleHandler``, ``RunCheckpoint`` and ``KNNMonitor``.

One iteration: move the tensors of the dict batch to the device; forward under ``torch.autocast`` when the run's
precision decision (``monai_transfer.engines.resolve_precision``, the one fine-tuning's trainer gets) asks for it;
check that the loss is finite (one host synchronisation per step; a non-finite loss raises
:class:`NonFiniteLossError` before any weight changes); backward (through a ``GradScaler`` for CUDA fp16 only);
optionally unscale and clip the gradient norm of the trainable parameters; step; ``update_teacher()`` on the
unwrapped method. The output (``engine.state.output``) is a :class:`StepOutput` of
``{"loss": detached loss, <terms>..., ["grad_norm"]}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.engines.workflow import Workflow
from torch.utils.data import DataLoader

from monai_transfer.engines.distributed import is_distributed, unwrap
from monai_transfer.engines.precision import training_autocast

__all__ = ["SSLTrainer", "NonFiniteLossError", "StepOutput", "to_device"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss of a training step is NaN or infinite; the run stops before that step changes any weight.

    Attributes:
        epoch: the epoch of the failing step (1-based, as ``engine.state.epoch``).
        iteration: the global step (1-based, as ``engine.state.iteration``).
        terms: the loss and its terms at that step, as floats.
    """

    def __init__(self, message: str, epoch: int = 0, iteration: int = 0, terms: Mapping[str, float] | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.iteration = iteration
        self.terms = dict(terms or {})


class StepOutput(list):
    """The output of one SSL step: reads like its dict, and is MONAI's one-item list of decollated outputs.

    ``output["loss"]``, ``output.get("ntxent")``, ``"loss" in output``, ``output.keys()/items()/values()`` read the
    dict of the loss and its terms; ``output[0]`` is that dict. Being a list of one dict is what makes MONAI's idiom
    ``from_engine(["loss"], first=True)`` (``StatsHandler``, ``TensorBoardStatsHandler``, ``MLFlowHandler``, ignite's
    ``ProgressBar``) return the scalar loss: on a plain dict it returns a 1-tuple, which those handlers ignore.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__([dict(values)])

    @property
    def data(self) -> dict[str, Any]:
        """The dict of the loss and its terms."""
        return list.__getitem__(self, 0)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self.data[key]
        return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:  # type: ignore[override]
        if isinstance(key, str):
            self.data[key] = value
        else:
            super().__setitem__(key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.data if isinstance(key, str) else super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def keys(self) -> Any:
        return self.data.keys()

    def items(self) -> Any:
        return self.data.items()

    def values(self) -> Any:
        return self.data.values()

    def __repr__(self) -> str:
        return f"StepOutput({self.data!r})"


def to_device(
    batch: Any, device: torch.device, non_blocking: bool = False, keep_meta: bool = False, **to_kwargs: Any
) -> Any:
    """Move the tensor values of a dict batch (or a tensor, list or tuple) to ``device``; other values are kept.

    ``MetaTensor`` values become plain tensors unless ``keep_meta`` (SSL methods do not read the metadata, and
    plain tensors avoid MetaTensor's per-operation overhead).
    """
    if isinstance(batch, torch.Tensor):
        if isinstance(batch, MetaTensor) and not keep_meta:
            batch = batch.as_tensor()
        return batch.to(device, non_blocking=non_blocking, **to_kwargs)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking, keep_meta, **to_kwargs) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking, keep_meta, **to_kwargs) for v in batch)
    return batch


class SSLTrainer(Trainer):
    """Self-supervised pretraining on MONAI's engine.

    Args:
        device: the device to train on.
        max_epochs: epochs to run.
        train_data_loader: batches of views (``make_ssl_dataloader`` for exact, resumable data).
        method: an ``SSLMethod`` (``forward(batch) -> {"loss", terms}``), possibly wrapped in
            ``DistributedDataParallel``.
        optimizer: the optimizer over the method's trainable parameters (``method.parameter_groups(wd)``).
        epoch_length: iterations per epoch; default ``len(train_data_loader)``.
        non_blocking: asynchronous host-to-device copies (with pinned memory).
        precision: the run's precision decision (:func:`monai_transfer.engines.resolve_precision`; a bundle config's
            ``@precision``): with ``amp`` on, the forward runs under ``torch.autocast(device.type)`` in its dtype,
            float16 with a ``GradScaler`` on CUDA, bfloat16 on CPU (:func:`~monai_transfer.engines.precision.
            training_autocast`); ``None``: float32.
        grad_clip_norm: clip the total gradient norm of the trainable parameters to this value (after unscaling);
            ``None``: no clipping. The norm before clipping is returned as ``output["grad_norm"]``.
        train_handlers: handlers with ``attach(engine)`` (``StatsHandler``, ``CheckpointSaver``...).
        key_train_metric, additional_metrics, metric_cmp_fn: as in MONAI's ``SupervisedTrainer``.
        event_names, event_to_attr: extra ignite events, as in MONAI's ``Workflow``.
        prepare_batch: ``(batch, device, non_blocking) -> batch`` replacing :func:`to_device`.
        keep_meta: keep ``MetaTensor`` inputs (default: plain tensors on the device).
        to_kwargs: extra arguments of ``Tensor.to`` (for example ``memory_format``).
        check_finite: check the loss at every step (one synchronisation); under DDP the verdict is all-reduced so
            every rank stops together instead of leaving the others waiting in a collective.

    Raises:
        ValueError: a decision asking for float16 autocast on CPU; a negative ``grad_clip_norm``.
        NonFiniteLossError: from ``run()``, at the first step whose loss is NaN or infinite.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        method: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        precision: Mapping[str, Any] | None = None,
        grad_clip_norm: float | None = None,
        train_handlers: Sequence | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        prepare_batch: Callable[[Any, torch.device, bool], Any] | None = None,
        keep_meta: bool = False,
        to_kwargs: dict | None = None,
        check_finite: bool = True,
    ) -> None:
        device = torch.device(device)
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be positive or None, got {grad_clip_norm}.")
        autocast, use_scaler = training_autocast(precision, device)
        # the members used by _iteration and the handlers exist before Workflow attaches train_handlers
        self.method = method
        self.network = method  # MONAI handlers that look for `engine.network`
        self.optimizer = optimizer
        self.grad_clip_norm = None if grad_clip_norm is None else float(grad_clip_norm)
        self.amp_dtype = autocast
        self.keep_meta = keep_meta
        self.check_finite = check_finite
        self.resumed_from: str | None = None
        self._prepare = prepare_batch
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=autocast is not None,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=False,  # the output is a few scalars, not per-sample predictions
            to_kwargs=to_kwargs,
        )
        # created once (not per run() as MONAI's Trainer does) so a resumed run can restore its state
        self.scaler: torch.amp.GradScaler | None = torch.amp.GradScaler("cuda") if use_scaler else None

    # -- run -------------------------------------------------------------------------------------------------------
    def run(self) -> None:  # type: ignore[override]
        """Train until ``max_epochs``; continue from the current state (after ``resume``) if there is one.

        A trainer resumed from a checkpoint of a finished run returns at once instead of starting over (ignite's
        behaviour for a finished state).
        """
        st = self.state
        if self.resumed_from is not None and st.epoch_length and st.iteration >= st.epoch_length * st.max_epochs:
            logger.info("%s: the run already reached %d epochs; nothing to do", self.resumed_from, st.max_epochs)
            return
        Workflow.run(self)  # not Trainer.run: it would replace the (possibly restored) GradScaler

    def _handle_exception(self, e: BaseException) -> None:
        if isinstance(e, NonFiniteLossError):
            # ignite hands exceptions to EXCEPTION_RAISED handlers instead of raising when any is attached (and some
            # handlers swallow them); fire them once, then always stop the run with the error itself
            if not getattr(e, "_handlers_fired", False):
                e._handlers_fired = True  # type: ignore[attr-defined]
                if Events.EXCEPTION_RAISED in self._event_handlers:
                    self._fire_event(Events.EXCEPTION_RAISED, e)
            raise e
        super()._handle_exception(e)

    # -- one step --------------------------------------------------------------------------------------------------
    def _nonfinite(self, engine: Engine, out: StepOutput) -> NonFiniteLossError:
        terms = {}
        for k, v in out.items():
            try:
                terms[k] = float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
            except (TypeError, ValueError):
                continue
        shown = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        return NonFiniteLossError(
            f"non-finite loss at epoch {engine.state.epoch}, iteration {engine.state.iteration} (global step): "
            f"{shown}. The step was not applied; lower the learning rate, enable grad_clip_norm, or check the data "
            f"of this batch.",
            epoch=int(engine.state.epoch),
            iteration=int(engine.state.iteration),
            terms=terms,
        )

    def _is_finite(self, loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).all()
        if is_distributed() and dist.get_world_size() > 1:
            flag = flag.to(torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag)

    def _iteration(self, engine: SSLTrainer, batchdata: Any) -> StepOutput:  # type: ignore[override]
        """Forward, finite check, backward, ``after_backward``, (clip), step, teacher update; return ``{"loss", ...}``."""
        if batchdata is None:
            raise ValueError("SSLTrainer needs a batch for every iteration (got None).")
        device = engine.state.device
        if engine._prepare is not None:
            batch = engine._prepare(batchdata, device, engine.non_blocking)
        else:
            batch = to_device(batchdata, device, engine.non_blocking, engine.keep_meta, **engine.to_kwargs)
        method = engine.method
        if not method.training:
            method.train()
        engine.optimizer.zero_grad(set_to_none=True)

        if engine.amp_dtype is not None:
            with torch.autocast(device.type, dtype=engine.amp_dtype):
                out = method(batch)
        else:
            out = method(batch)
        if not isinstance(out, Mapping) or "loss" not in out:
            raise TypeError(f"{type(unwrap(method)).__name__}.forward must return a dict with 'loss', got {type(out)}.")
        loss = out["loss"]
        output = StepOutput({k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()})
        engine.state.output = output
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        if engine.check_finite and not engine._is_finite(loss):
            raise engine._nonfinite(engine, output)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        scaler = engine.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        after_backward = getattr(unwrap(method), "after_backward", None)
        if after_backward is not None:
            after_backward(int(engine.state.epoch))  # gradient surgery a method prescribes (DINO's frozen last layer)
        if engine.grad_clip_norm is not None:
            if scaler is not None:
                scaler.unscale_(engine.optimizer)
            params = [p for p in unwrap(method).parameters() if p.requires_grad and p.grad is not None]
            output["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, engine.grad_clip_norm).detach()
        if scaler is not None:
            scaler.step(engine.optimizer)
            scaler.update()
        else:
            engine.optimizer.step()
        unwrap(method).update_teacher()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return output
