"""Robustness of a fine-tuned checkpoint: its test metric on clean and corrupted images, per corruption and severity.

The images pass through the run's own evaluation pipeline (``monai_transfer.finetune.evaluate``) with the corruption
inserted after intensity normalisation (and after resizing, for classification), so a corruption acts on what the
network sees. Inserted before the per-image z-score, a contrast change was undone exactly and scored as no drop at all.
Each case gets its own corruption seed, derived from the base seed, the image path and the
corruption, and shared across severities: the report does not depend on case order, and severities are nested.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from monai_transfer.evaluation.robustness import RobustnessReport
from monai_transfer.transforms.corruptions import CORRUPTIONS, Corrupt

__all__ = ["checkpoint_robustness", "CaseSeededCorruptd"]


class CaseSeededCorruptd:
    """Corrupt ``data[image_key]`` with a seed derived from ``(seed, crc32(image file name), corruption index)``.

    The file name, not its folder: the same case gets the same corruption wherever the data sits.
    """

    def __init__(self, name: str, severity: int, seed: int = 0, image_key: str = "image") -> None:
        if name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {name!r}; known: {list(CORRUPTIONS)}")
        self.name, self.severity, self.seed, self.image_key = name, int(severity), int(seed), image_key
        self._index = list(CORRUPTIONS).index(name)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        path = os.path.basename(str(getattr(image, "meta", {}).get("filename_or_obj", "")))
        case = zlib.crc32(path.encode())
        case_seed = int(np.random.SeedSequence([self.seed, case, self._index]).generate_state(1)[0])
        d[self.image_key] = Corrupt(self.name, self.severity, seed=case_seed)(image)
        return d


def checkpoint_robustness(
    checkpoint: str | os.PathLike,
    datalist: str | os.PathLike,
    section: str = "test",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    metric: str | None = None,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = False,
) -> RobustnessReport:
    """Evaluate a ``finetune`` checkpoint on clean and corrupted copies of a datalist section.

    Args:
        checkpoint: the fine-tuning run folder (or its ``models/model.pt``).
        datalist: MSD-style datalist JSON.
        section: the evaluated section.
        corruptions: names from ``CORRUPTIONS`` (default: all nine).
        severities: severities 1..5.
        seed: base seed of the corruptions.
        metric: the metric reported (default: ``mean_dice`` for segmentation, ``auroc`` for classification, falling
            back to ``accuracy`` when the section has one class).
        out_dir: when given, writes ``robustness.json``, ``robustness.md`` and ``robustness.png``.
        batch_size, device: passed to ``evaluate``.
        progress: show a progress bar over the clean and corrupted evaluations (tqdm, on stderr).

    Returns:
        A ``RobustnessReport`` (higher is better for every metric used here).
    """
    from monai_transfer.finetune import evaluate  # evaluation sits above finetune in the layer order

    names = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}; known: {list(CORRUPTIONS)}")
    from tqdm import tqdm

    # the bar is closed (its line ended) on an error too, so that the error message starts a line of its own
    with tqdm(total=1 + len(names) * len(severities), desc="robustness", unit="run", disable=not progress) as bar:
        bar.set_postfix_str("clean")
        clean_metrics = evaluate(
            checkpoint, datalist, section=section, batch_size=batch_size, device=device, cases=False
        )
        bar.update(1)
        if metric is None:
            metric = "mean_dice" if "mean_dice" in clean_metrics else "auroc"
            if clean_metrics.get(metric) is None:
                metric = "accuracy"
        if clean_metrics.get(metric) is None:
            raise ValueError(f"metric {metric!r} is not available for this checkpoint; got {sorted(clean_metrics)}")
        report = RobustnessReport(clean=float(clean_metrics[metric]), higher_is_better=True, seed=int(seed))
        for name in names:
            for s in severities:
                bar.set_postfix_str(f"{name} {s}")
                m = evaluate(
                    checkpoint,
                    datalist,
                    section=section,
                    batch_size=batch_size,
                    device=device,
                    cases=False,
                    corruption=CaseSeededCorruptd(name, int(s), seed),
                )[metric]
                drop = report.clean - float(m)
                report.rows.append(
                    {
                        "corruption": name,
                        "severity": int(s),
                        "metric": float(m),
                        "drop": drop,
                        "relative_drop": drop / abs(report.clean) if report.clean else float("nan"),
                    }
                )
                bar.update(1)
    if out_dir is not None:
        report.write(out_dir, metric_name=metric)
    return report
