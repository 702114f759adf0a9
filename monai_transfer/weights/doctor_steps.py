"""The weight doctor's steps after reading names: take what a reading settles, pair the rest by unique shapes, apply
the known surgery, and count coverage per stage. One ``DoctorWork`` carries the state the steps share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from monai_transfer.weights.doctor_match import Ambiguity, Reading, match_shapes
from monai_transfer.weights.doctor_report import DoctorMatch, DoctorReport
from monai_transfer.weights.load import module_stages
from monai_transfer.weights.renames import is_copy_key
from monai_transfer.weights.surgery import fit_state_dict

__all__ = ["DoctorWork"]


def _wrapper(key: str, prefix: str) -> str:
    """What stands between the prefix and a tensor's own name (``backbone_momentum.0`` of ``...0.weight``)."""
    return key[len(prefix) :].rsplit(".", 1)[0]


@dataclass
class DoctorWork:
    """A diagnosis in progress.

    Attributes:
        report: the report being filled.
        module: the target backbone.
        source: the checkpoint's tensors.
        target: ``module.state_dict()``.
        needed: backbone keys that need a tensor (not defaulted).
        stem: the first convolution's key (channel surgery applies to it only).
        inflate: the inflation mode asked for, or ``None``.
        depth_axis: the axis inflation adds.
        taken: backbone key -> (checkpoint tensor, where it came from), before surgery.
        used: checkpoint keys spoken for (taken, colliding, mismatched or waiting for inflation).
    """

    report: DoctorReport
    module: nn.Module
    source: Mapping[str, torch.Tensor]
    target: Mapping[str, torch.Tensor]
    needed: set[str]
    stem: str | None
    inflate: str | None
    depth_axis: int = -1
    taken: dict[str, tuple[torch.Tensor, DoctorMatch]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def take_reading(self, reading: Reading) -> None:
        """Take what the names settle; report collisions, 2D kernels waiting for inflation, and wrong shapes."""
        report = self.report
        report.prefix, report.reader = reading.prefix, reading.reader
        report.dropped = sorted(reading.dropped)
        for key, sources in reading.collisions.items():
            report.ambiguous.append(Ambiguity((key,), sources, "several checkpoint keys take this name"))
            self.used.update(sources)
        for key, value in reading.tensors.items():
            if key in reading.collisions:
                continue
            src = reading.sources[key]
            self.used.add(src)
            rel = reading.fits.get(key)
            if rel is None:
                report.mismatched.append((key, src, tuple(value.shape), tuple(self.target[key].shape)))
            elif rel == "inflate" and self.inflate is None:
                report.needs_inflation.append(key)
            else:
                self.taken[key] = (value, DoctorMatch(src, "names"))

    def take_shapes(self, reading: Reading | None) -> None:
        """Pair what names left with the unused tensors under the reading's prefix (not in a momentum/EMA/student
        copy), one-to-one only; the rest is reported as ambiguous."""
        report = self.report
        blocked = set(self.taken) | set(report.needs_inflation) | {m[0] for m in report.mismatched}
        blocked |= {t for a in report.ambiguous for t in a.targets}
        left = [k for k in self.target if k in self.needed and k not in blocked]
        prefix = reading.prefix if reading is not None else ""
        dropped = set(report.dropped)
        pool = {
            k: v
            for k, v in self.source.items()
            if k.startswith(prefix) and k not in self.used and k not in dropped and not is_copy_key(_wrapper(k, prefix))
        }
        shaped, ambiguous = match_shapes(left, pool, self.target, self.stem, self.inflate is not None, self.depth_axis)
        report.ambiguous += ambiguous
        for key, (src, _) in shaped.items():
            self.taken[key] = (pool[src], DoctorMatch(src, "shapes"))
            self.used.add(src)

    def fit(self) -> None:
        """The known surgery (stem channels, position embeddings, inflation where asked), then the shape check."""
        tensors = {k: v for k, (v, _) in self.taken.items()}
        mode = self.inflate or "mean"  # only reached by tensors taken as inflatable, i.e. when inflation was asked
        fitted, adapted = fit_state_dict(tensors, self.module, self.target, inflate_mode=mode, axis=self.depth_axis)
        for key, (value, match) in self.taken.items():
            new, expected = fitted[key], tuple(self.target[key].shape)
            if tuple(new.shape) != expected:  # a surgery that could not finish: a shape mismatch after all
                self.report.mismatched.append((key, match.source, tuple(value.shape), expected))
                continue
            self.report.matches[key] = DoctorMatch(match.source, match.step, adapted.get(key, ""))
            self.report.state_dict[key] = new.detach().to(dtype=self.target[key].dtype)

    def finish(self) -> DoctorReport:
        """What stays unmatched or unused, the defaulted keys' own values, and the coverage per stage."""
        report, target = self.report, self.target
        report.unmatched = [k for k in target if k in self.needed and k not in report.matches]
        report.defaulted = [k for k in target if k not in self.needed and k not in report.matches]
        for key in report.defaulted:  # the backbone's own value: batch-norm counters, relative-position indices
            report.state_dict[key] = target[key].detach().clone()
        dropped = set(report.dropped)
        report.unused = [k for k in self.source if k not in self.used and k not in dropped]
        keys = [k for k in target if k in self.needed]
        assignment = module_stages(self.module, keys)
        for key in keys:
            f, t = report.stages.get(assignment[key], (0, 0))
            report.stages[assignment[key]] = (f + int(key in report.matches), t + 1)
        return report
