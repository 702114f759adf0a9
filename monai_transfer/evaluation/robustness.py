"""Robustness to image corruptions: the metric per corruption and severity, and its drop from the clean images.

After Hendrycks and Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
(ICLR), with the MRI/CT corruptions of :mod:`monai_transfer.transforms.corruptions` (severity table there).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_transfer.transforms.corruptions import CORRUPTIONS, Corrupt
from monai_transfer.utils.atomic import atomic_save, atomic_write_json, atomic_write_text

plt, has_matplotlib = optional_import("matplotlib.pyplot")

__all__ = ["RobustnessReport", "evaluate_robustness", "mean_over_cases"]


def mean_over_cases(case_metric: Callable[[Any, Any], float]) -> Callable[[list, list], float]:
    """Turn a per-case metric ``f(pred, label) -> float`` into the dataset-level ``f(preds, labels) -> float``
    (NaN-aware mean) that :func:`evaluate_robustness` takes."""

    def fn(preds: list, labels: list) -> float:
        return float(np.nanmean([case_metric(p, y) for p, y in zip(preds, labels)]))

    return fn


@dataclass
class RobustnessReport:
    """The result of :func:`evaluate_robustness`.

    Attributes:
        clean: the metric on the clean images.
        rows: one dict per (corruption, severity): ``corruption``, ``severity``, ``metric``, ``drop``
            (``clean - metric``; positive = worse when higher is better), ``relative_drop`` (``drop / clean``).
        higher_is_better: the metric's direction (for the summary).
        seed: the seed used.
    """

    clean: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    higher_is_better: bool = True
    seed: int = 0

    def summary(self) -> dict[str, float]:
        """Mean drop over severities per corruption, and ``"mean"`` over all."""
        out: dict[str, float] = {}
        for name in dict.fromkeys(r["corruption"] for r in self.rows):
            out[name] = float(np.mean([r["drop"] for r in self.rows if r["corruption"] == name]))
        out["mean"] = float(np.mean([r["drop"] for r in self.rows])) if self.rows else float("nan")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "higher_is_better": self.higher_is_better,
            "seed": self.seed,
            "rows": self.rows,
            "mean_drop": self.summary(),
        }

    def to_json(self, path: str | os.PathLike) -> str:
        """Write the report as JSON (atomically); returns the path."""
        return atomic_write_json(path, self.to_dict())

    def write(self, out_dir: str | os.PathLike, metric_name: str = "metric") -> None:
        """Write ``robustness.json``, ``robustness.md`` and, with matplotlib, ``robustness.png`` into ``out_dir``."""
        os.makedirs(out_dir, exist_ok=True)
        self.to_json(os.path.join(out_dir, "robustness.json"))
        atomic_write_text(os.path.join(out_dir, "robustness.md"), self.to_table() + "\n")
        self.plot(os.path.join(out_dir, "robustness.png"), metric_name)

    def to_table(self) -> str:
        """A Markdown table: one row per corruption, the metric per severity, and the mean drop."""
        sev = sorted({r["severity"] for r in self.rows})
        head = "| corruption | " + " | ".join(f"s{s}" for s in sev) + " | mean drop |"
        lines = [f"clean: {self.clean:.4f}", "", head, "|" + "---|" * (len(sev) + 2)]
        summ = self.summary()
        for name in dict.fromkeys(r["corruption"] for r in self.rows):
            vals = {r["severity"]: r["metric"] for r in self.rows if r["corruption"] == name}
            cells = " | ".join(f"{vals[s]:.4f}" if s in vals else "" for s in sev)
            lines.append(f"| {name} | {cells} | {summ[name]:.4f} |")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike, metric_name: str = "metric") -> str | None:
        """Metric vs severity per corruption (severity 0 = clean) as a PNG; None when matplotlib is missing."""
        if not has_matplotlib:
            return None
        import matplotlib

        matplotlib.use("Agg", force=False)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in dict.fromkeys(r["corruption"] for r in self.rows):
            rs = sorted((r for r in self.rows if r["corruption"] == name), key=lambda r: r["severity"])
            ax.plot([0] + [r["severity"] for r in rs], [self.clean] + [r["metric"] for r in rs], marker="o", label=name)
        ax.set_xlabel("severity")
        ax.set_ylabel(metric_name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = atomic_save(path, lambda p: fig.savefig(p, dpi=100, format="png"))
        plt.close(fig)
        return path


def _split_case(case: Any, image_key: str, label_key: str) -> tuple[Any, Any]:
    if isinstance(case, dict):
        if image_key not in case or label_key not in case:
            raise ValueError(f"each case needs keys {image_key!r} and {label_key!r}, got {sorted(case)}")
        return case[image_key], case[label_key]
    if isinstance(case, (tuple, list)) and len(case) == 2:
        return case[0], case[1]
    raise ValueError("cases must be dicts with image/label keys or (image, label) pairs")


def evaluate_robustness(
    predict_fn: Callable[[Any], Any],
    cases: Sequence[Any],
    metric_fn: Callable[[list, list], float],
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    image_key: str = "image",
    label_key: str = "label",
    higher_is_better: bool = True,
    out_dir: str | os.PathLike | None = None,
    metric_name: str = "metric",
) -> RobustnessReport:
    """Evaluate a model on clean and corrupted copies of ``cases``.

    Each case gets its own corruption seed (derived from ``seed``, the case index and the corruption), shared across
    severities, so the result does not depend on evaluation order and severities are nested.

    Args:
        predict_fn: ``f(image) -> prediction`` for one channel-first image ``(C, H, W[, D])`` (add and remove the batch
            axis inside, e.g. ``lambda x: model(x[None])[0].softmax(0)``).
        cases: dicts with ``image_key``/``label_key`` (images already loaded and pre-processed) or (image, label) pairs.
        metric_fn: ``f(predictions, labels) -> float`` over all cases (e.g. AUROC), or
            ``mean_over_cases(dice_fn)`` for per-case metrics.
        corruptions: names from :data:`~monai_transfer.transforms.corruptions.CORRUPTIONS` (default: all).
        severities: severities to evaluate, 1..5.
        seed: base seed; the same seed gives the same report.
        image_key: image key of dict cases.
        label_key: label key of dict cases.
        higher_is_better: direction of the metric; ``drop`` is ``clean - metric`` when True, else ``metric - clean``.
        out_dir: when given, write ``robustness.json``, ``robustness.md`` and (with matplotlib) ``robustness.png``.
        metric_name: axis label of the plot.

    Returns:
        A :class:`RobustnessReport`.
    """
    names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
    for n in names:
        if n not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {n!r}; known: {list(CORRUPTIONS)}")
    if len(cases) == 0:
        raise ValueError("no cases given")
    pairs = [_split_case(c, image_key, label_key) for c in cases]
    labels = [y for _, y in pairs]
    clean = float(metric_fn([predict_fn(x) for x, _ in pairs], labels))
    report = RobustnessReport(clean=clean, higher_is_better=higher_is_better, seed=int(seed))
    for ci, name in enumerate(names):
        seeds = [int(np.random.SeedSequence([int(seed), i, ci]).generate_state(1)[0]) for i in range(len(pairs))]
        for s in severities:
            preds = [predict_fn(Corrupt(name, int(s), seed=sd)(x)) for (x, _), sd in zip(pairs, seeds)]
            m = float(metric_fn(preds, labels))
            drop = clean - m if higher_is_better else m - clean
            report.rows.append(
                {
                    "corruption": name,
                    "severity": int(s),
                    "metric": m,
                    "drop": drop,
                    "relative_drop": drop / abs(clean) if clean != 0 else float("nan"),
                }
            )
    if out_dir is not None:
        report.write(out_dir, metric_name)
    return report
