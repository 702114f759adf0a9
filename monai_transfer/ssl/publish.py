"""What a pretraining run leaves behind, written after training on rank 0: ``encoder.pt`` (the exported encoder and its
provenance), ``loss.png`` and ``result.json``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine

from monai_transfer.ssl.handlers import ChanceLossMonitor, EpochLosses
from monai_transfer.ssl.images import PretrainData
from monai_transfer.ssl.plots import plot_losses
from monai_transfer.utils.distributed import is_main_process, unwrap, world_size

__all__ = ["PretrainPublisher"]


class PretrainPublisher:
    """After training, on rank 0: ``encoder.pt`` (the exported encoder and its provenance), ``loss.png`` and
    ``result.json`` in ``output_dir``. Called with the trainer (``"$@train#publish(@train#trainer)"``); the summary
    is returned and kept as ``result``.

    Args:
        output_dir: the run's folder.
        method: the SSL method (possibly DDP-wrapped).
        data: the run's images (counted in the provenance; no paths).
        epoch_losses: the run's :class:`EpochLosses`.
        provenance: the static fields of the encoder's ``Provenance`` (its ``extra`` gains epochs, iterations,
            final loss); ``source_data`` may hold ``{images}``, ``{section}`` and ``{source}``.
        summary: static fields of ``result.json`` (method, backbone, intensity...).
        monitor: the kNN monitor, if any (its history goes to ``knn_accuracy``).
        chance: the :class:`ChanceLossMonitor`, if any (its value and warnings go to ``result.json``).
        device: the run's device; precision: the run's amp / layout / compile decision
            (``monai_transfer.engines.resolve_precision``), written into ``result.json`` with its reason.
        title: the loss plot's title.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        method: torch.nn.Module,
        data: PretrainData,
        epoch_losses: EpochLosses,
        provenance: Mapping[str, Any],
        summary: Mapping[str, Any],
        monitor: Any = None,
        chance: ChanceLossMonitor | None = None,
        device: Any = None,
        precision: Mapping[str, Any] | None = None,
        title: str = "",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.method = method
        self.data = data
        self.epoch_losses = epoch_losses
        self.provenance = dict(provenance)
        self.summary = dict(summary)
        self.monitor = monitor
        self.chance = chance
        self.device = device
        self.precision = dict(precision or {"amp": False})
        self.amp = bool(self.precision.get("amp"))
        self.title = title
        self.result: dict[str, Any] = {}
        self._t0: float | None = None
        self._start_iteration = 0

    def start(self, trainer: Engine) -> None:
        """Start the clock (the config's ``run`` calls this just before training, after any resume)."""
        self._t0 = time.perf_counter()
        self._start_iteration = int(trainer.state.iteration)

    def __call__(self, trainer: Engine) -> dict[str, Any]:
        from monai_transfer.engines.environment import environment_record
        from monai_transfer.utils.atomic import atomic_write_json
        from monai_transfer.weights import Provenance, save_pretrained

        seconds = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        if not is_main_process():
            return {}
        losses = list(self.epoch_losses.losses)
        st = trainer.state
        prov = dict(self.provenance)
        prov["source_data"] = str(prov.get("source_data", "")).format(
            images=len(self.data), section=self.data.section, source=self.data.source
        )
        prov["extra"] = {
            **dict(prov.get("extra") or {}),
            "epochs": int(st.epoch),
            "iterations": int(st.iteration),
            "final_epoch_loss": losses[-1] if losses else None,
        }
        encoder_path = save_pretrained(unwrap(self.method).export_encoder(), self.output_dir / "encoder.pt",
                                       Provenance.from_dict(prov))  # fmt: skip
        if losses:
            plot_losses(self.output_dir / "loss.png", losses, self.title)
        resumed_from = getattr(trainer, "resumed_from", None)
        result_file = self.output_dir / "result.json"
        if int(st.iteration) == self._start_iteration and result_file.is_file():
            # a finished run resumed again trains nothing: keep the time the training took
            import json

            seconds = float(json.loads(result_file.read_text()).get("seconds", 0.0))
        warnings = list(self.chance.warnings) if self.chance is not None else []
        self.result = {
            **self.summary,
            "images": len(self.data),
            "section": self.data.section,
            "epochs": int(st.epoch),
            "iterations": int(st.iteration),
            "epoch_losses": losses,
            "knn_accuracy": self.monitor.history if self.monitor is not None else None,
            "chance_loss": self.chance.chance if self.chance is not None else None,
            "warnings": warnings,
            "encoder": str(encoder_path),
            "resumed_from": resumed_from,
            "seconds": round(seconds, 2),
            "device": str(self.device),
            "world_size": world_size(),
            "amp": self.amp,
            "precision": self.precision,
            # CPU model and flags, threads, library versions: what the same numbers need (docs/finetune.md)
            "environment": environment_record(),
        }
        atomic_write_json(result_file, self.result)
        return self.result
