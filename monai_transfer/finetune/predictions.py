"""Classification predictions written per image: file name, class probabilities by name, predicted class."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_transfer.utils.atomic import atomic_write_text

__all__ = ["ClassProbabilityWriter", "load_decision"]


def load_decision(path: str | os.PathLike) -> dict[str, Any] | None:
    """A bundle's ``models/decision.json`` (threshold, temperature), or ``None`` when it has none (argmax)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class ClassProbabilityWriter:
    """Collect each image's class probabilities and write them as JSON lines when the evaluator completes.

    One line per image: ``{"image": <file name>, "probabilities": {<label>: p, ...}, "pred": <label>}``; the file
    name only (no local folders). The file is written atomically at the end of the run. With a ``decision`` (the
    fine-tuning run's, chosen on its validation set: ``models/decision.json``), the probabilities are temperature
    scaled when it fitted a temperature, and a binary prediction uses its threshold, said in ``decision``.

    Args:
        path: the output file (``eval/predictions.jsonl``).
        labels: class names, in channel order.
        pred_key: the key of the probabilities in the engine's output.
        decision: ``{"threshold", "temperature", "rule"}`` or ``None`` (argmax).
    """

    def __init__(
        self, path: str | os.PathLike, labels: Sequence[str], pred_key: str = "pred",
        decision: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.path = os.fspath(path)
        self.labels = [str(v) for v in labels]
        self.pred_key = pred_key
        self.rows: list[dict[str, Any]] = []
        decision = dict(decision or {})
        self.threshold = decision.get("threshold") if len(self.labels) == 2 else None
        self.temperature = decision.get("temperature")
        self.rule = decision.get("rule", "argmax")

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
            if self.temperature:  # fitted on the run's validation set: softmax(log p / T)
                prob = torch.softmax(torch.log(prob.clamp_min(1e-12)) / float(self.temperature), dim=0)
            probs = {lab: round(float(p), 6) for lab, p in zip(self.labels, prob)}
            if self.threshold is not None:  # the run's validation-chosen threshold on the positive class
                pred = self.labels[int(float(prob[1]) >= float(self.threshold))]
            else:
                pred = self.labels[int(prob.argmax())]
            row = {"image": name, "probabilities": probs, "pred": pred}
            if self.threshold is not None:
                row["decision"] = f"{self.labels[1]} when p >= {float(self.threshold):.4g} ({self.rule} on validation)"
            self.rows.append(row)

    def write(self, engine: Engine | None = None) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
