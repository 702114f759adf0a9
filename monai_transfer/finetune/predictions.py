"""Classification predictions written per image: file name, class probabilities by name, predicted class."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_transfer.utils.atomic import atomic_write_text

__all__ = ["ClassProbabilityWriter"]


class ClassProbabilityWriter:
    """Collect each image's class probabilities and write them as JSON lines when the evaluator completes.

    One line per image: ``{"image": <file name>, "probabilities": {<label>: p, ...}, "pred": <label>}``; the file
    name only (no local folders). The file is written atomically at the end of the run.

    Args:
        path: the output file (``eval/predictions.jsonl``).
        labels: class names, in channel order.
        pred_key: the key of the probabilities in the engine's output.
    """

    def __init__(self, path: str | os.PathLike, labels: Sequence[str], pred_key: str = "pred") -> None:
        self.path = os.fspath(path)
        self.labels = [str(v) for v in labels]
        self.pred_key = pred_key
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        for item in engine.state.output:
            prob = torch.as_tensor(item[self.pred_key]).detach().float().cpu().reshape(-1)
            if prob.numel() != len(self.labels):
                raise ValueError(f"{prob.numel()} class scores but {len(self.labels)} labels {self.labels}")
            image = item.get("image")
            meta = getattr(image, "meta", {}) or {}
            name = os.path.basename(os.fspath(meta.get("filename_or_obj", ""))) or f"case_{len(self.rows)}"
            probs = {lab: round(float(p), 6) for lab, p in zip(self.labels, prob)}
            self.rows.append({"image": name, "probabilities": probs, "pred": self.labels[int(prob.argmax())]})

    def write(self, engine: Engine | None = None) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
