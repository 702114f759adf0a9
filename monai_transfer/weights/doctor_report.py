"""What the weight doctor found: the report ``diagnose`` returns, its table, and the one-sentence reason a
checkpoint cannot be converted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from monai_transfer.weights.doctor_match import Ambiguity
from monai_transfer.weights.provenance import Provenance

__all__ = ["DoctorError", "DoctorMatch", "DoctorReport"]


class DoctorError(ValueError):
    """A checkpoint the doctor cannot convert for a backbone; the message is one sentence saying why."""


@dataclass(frozen=True)
class DoctorMatch:
    """Where one backbone key's tensor comes from.

    Attributes:
        source: the checkpoint key (original name, under its container).
        step: ``"names"`` or ``"shapes"``.
        surgery: what was done to the tensor (``""``: nothing; inflation, channel surgery, resampling otherwise).
    """

    source: str
    step: str
    surgery: str = ""


def _short(items: list[str] | tuple[str, ...], limit: int = 4) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


@dataclass
class DoctorReport:
    """The doctor's diagnosis of a checkpoint for a backbone.

    Attributes:
        checkpoint: the file (or ``"<state dict>"``).
        checkpoint_sha256: SHA-256 of the file (empty for an in-memory checkpoint).
        backbone_name: the backbone's registry name.
        spatial_dims, in_channels: of the backbone.
        container: the wrapper keys descended to reach the tensors (``["state_dict"]`` for Lightning).
        siblings: the other entries beside the tensors in their container (``optimizer_states``, ``epoch``...).
        source_count: how many tensors the checkpoint holds.
        prefix: the checkpoint prefix the names were read under (``None``: no reading by names).
        reader: the reader of ``weights.renames`` that renamed them.
        matches: backbone key -> ``DoctorMatch``.
        unmatched: backbone keys that need a tensor and got none.
        mismatched: ``(backbone key, checkpoint key, checkpoint shape, backbone shape)`` for names that fit no shape.
        needs_inflation: backbone keys whose named tensor is a 2D kernel for a 3D one (inflation not asked for).
        ambiguous: groups of keys and tensors that could fill each other, not taken.
        tied_readings: descriptions of readings that fill as much as each other (none taken).
        skipped_copies: descriptions of readings skipped as momentum/EMA/student copies.
        dropped: checkpoint keys the reader drops as heads by its layout's convention.
        unused: checkpoint keys not used (outside the prefix, or left under it).
        defaulted: backbone keys that need no tensor and got none (kept at the backbone's own value).
        stages: backbone stage -> ``(filled, total)`` over the keys that need a tensor.
        inflate: the 2D -> 3D inflation mode asked for (``None``: not asked).
        layout: when nothing fits, what the checkpoint reads as (``"a densenet checkpoint (torchvision-densenet
            layout)"``), else empty.
        notes: anything else the doctor decided not to do, and why.
        provenance: the record stored in the checkpoint, if any.
        state_dict: the converted tensors, in the backbone's keys (not printed).
    """

    checkpoint: str
    backbone_name: str
    spatial_dims: int | None = None
    in_channels: int | None = None
    checkpoint_sha256: str = ""
    container: list[str] = field(default_factory=list)
    siblings: list[str] = field(default_factory=list)
    source_count: int = 0
    prefix: str | None = None
    reader: str = ""
    matches: dict[str, DoctorMatch] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    needs_inflation: list[str] = field(default_factory=list)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    tied_readings: list[str] = field(default_factory=list)
    skipped_copies: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)
    inflate: str | None = None
    layout: str = ""
    notes: list[str] = field(default_factory=list)
    provenance: Provenance | None = field(default=None, repr=False)
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total(self) -> int:
        return sum(t for _, t in self.stages.values())

    @property
    def filled(self) -> int:
        return sum(f for f, _ in self.stages.values())

    @property
    def ok(self) -> bool:
        """Every backbone key that needs a tensor has exactly one, with no choice left to a guess."""
        return self.total > 0 and self.filled == self.total

    def step_counts(self) -> dict[str, int]:
        counts = {"names": 0, "shapes": 0}
        for m in self.matches.values():
            counts[m.step] = counts.get(m.step, 0) + 1
        return counts

    @property
    def reason(self) -> str:
        """One sentence: why the checkpoint cannot be converted (empty when it can)."""
        if self.ok:
            return ""
        what, name = self.checkpoint, self.backbone_name
        if self.tied_readings:
            return (
                f"{what} fits {name} in {len(self.tied_readings)} equal ways the doctor will not choose between "
                f"({'; '.join(self.tied_readings)}): name the prefix to read with --prefix (prefix=)."
            )
        if self.filled == 0 and self.needs_inflation:
            return (
                f"{what} holds 2D kernels for the 3D {name} ({_short(self.needs_inflation, 2)}): pass --inflate mean "
                "or --inflate centre (inflate=) to inflate them, or build the backbone with --spatial-dims 2."
            )
        deeper = [m for m in self.mismatched if len(m[2]) == len(m[3]) + 1 and len(m[3]) >= 4]
        if deeper:  # kernels of one more spatial axis than the backbone's: it was built with too few
            dims = len(deeper[0][2]) - 2
            return (
                f"{what} holds {dims}D kernels ({deeper[0][1]} {deeper[0][2]}) and {name} was built "
                f"{dims - 1}D: build it with --spatial-dims {dims} (spatial_dims={dims})."
            )
        if self.filled == 0:
            sample = _short([m[1] for m in self.mismatched] or self.unused or self.dropped, 3)
            equals = sum(len(a.targets) for a in self.ambiguous)
            also = f"; {equals} could only be filled by one of several tensors of equal shape" if equals else ""
            also += f"; it reads as {self.layout}" if self.layout else ""
            return (
                f"{what} fits no part of {name} ({self.total} tensors): none of its {self.source_count} tensors "
                f"({sample}) matches a backbone tensor by name, by a known rename or by a unique shape{also}."
            )
        parts = [f"{what} fills {self.filled} of the {self.total} tensors of {name}"]
        if self.needs_inflation:
            parts.append(f"{len(self.needs_inflation)} are 2D kernels for 3D ones (pass --inflate mean or centre)")
        if self.ambiguous:
            first = self.ambiguous[0]
            parts.append(
                f"{sum(len(a.targets) for a in self.ambiguous)} are ambiguous, not taken ({first.why}: "
                f"{_short(first.sources, 2)} for {_short(first.targets, 2)})"
            )
        if self.mismatched:
            k, s, ss, ds = self.mismatched[0]
            parts.append(f"{len(self.mismatched)} have the wrong shape ({s} {ss} for {k} {ds})")
        left = [k for k in self.unmatched if k not in {t for a in self.ambiguous for t in a.targets}]
        left = [k for k in left if k not in {m[0] for m in self.mismatched} and k not in self.needs_inflation]
        if left:
            parts.append(f"{len(left)} found nothing ({_short(left, 3)})")
        return "; ".join(parts) + "."

    def to_table(self) -> str:
        """The report as text: the reading, the coverage per step and per stage, and what stays unmatched."""
        dims = f"{self.spatial_dims}D" if self.spatial_dims else "?D"
        lines = [f"weights doctor: {self.checkpoint} -> {self.backbone_name} ({dims}, {self.in_channels} channel(s))"]
        where = " > ".join(self.container) if self.container else "(top level)"
        extra = f"; beside it: {_short(self.siblings, 6)}" if self.siblings else ""
        lines.append(f"container: {where}, {self.source_count} tensors{extra}")
        if self.prefix is not None:
            lines.append(f"names: prefix {self.prefix!r}, read {self.reader}")
        for text in self.skipped_copies:
            lines.append(f"skipped by convention (a momentum/EMA/student copy): {text}")
        for text in self.tied_readings:
            lines.append(f"equal reading, not taken: {text}")
        lines += [f"note: {text}" for text in self.notes]
        counts = self.step_counts()
        surgery = sum(bool(m.surgery) for m in self.matches.values())
        lines.append(
            f"steps: names {counts['names']}, unique shapes {counts['shapes']}, surgery on {surgery} "
            f"(inflation {'mode ' + self.inflate if self.inflate else 'not asked'})"
        )
        lines.append(f"{'stage':<16}{'filled':>8}{'total':>8}{'fraction':>10}")
        for stage, (f, t) in self.stages.items():
            lines.append(f"{stage:<16}{f:>8}{t:>8}{(f / t if t else 1.0):>10.2f}")
        lines.append(
            f"{'total':<16}{self.filled:>8}{self.total:>8}{(self.filled / self.total if self.total else 0):>10.2f}"
        )
        shaped = {k: m for k, m in self.matches.items() if m.step == "shapes"}
        if shaped:
            lines.append("matched by a unique shape:")
            lines += [f"  {k} <- {m.source}" for k, m in shaped.items()]
        operated = {k: m for k, m in self.matches.items() if m.surgery}
        if operated:
            lines.append("surgery:")
            lines += [f"  {k}: {m.surgery}" for k, m in operated.items()]
        if self.mismatched:
            lines.append("names that fit no shape:")
            lines += [f"  {k} <- {s}: {tuple(ss)} vs {tuple(ds)}" for k, s, ss, ds in self.mismatched]
        if self.needs_inflation:
            lines.append(f"2D kernels for 3D tensors (pass --inflate): {_short(self.needs_inflation, 6)}")
        if self.ambiguous:
            lines.append("ambiguous (reported, not taken):")
            lines += [f"  {a.why}: {_short(a.sources, 4)} -> {_short(a.targets, 4)}" for a in self.ambiguous]
        lines.append(f"unmatched backbone tensors: {_short(self.unmatched, 8) if self.unmatched else 'none'}")
        if self.dropped:
            lines.append(f"dropped as heads: {len(self.dropped)} ({_short(self.dropped, 4)})")
        inside = [k for k in self.unused if self.prefix and k.startswith(self.prefix)]
        outside = [k for k in self.unused if k not in set(inside)]
        if inside:
            lines.append(f"left unused under the prefix: {len(inside)} ({_short(inside, 4)})")
        if outside:
            where = "outside the prefix" if self.prefix else "not used"
            lines.append(f"checkpoint tensors {where}: {len(outside)} ({_short(outside, 4)})")
        if not self.ok:
            lines.append(f"not convertible: {self.reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (the tensors are left out)."""
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "backbone_name": self.backbone_name,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "container": list(self.container),
            "siblings": list(self.siblings),
            "source_count": self.source_count,
            "prefix": self.prefix,
            "reader": self.reader,
            "steps": self.step_counts(),
            "matches": {k: {"source": m.source, "step": m.step, "surgery": m.surgery} for k, m in self.matches.items()},
            "unmatched": list(self.unmatched),
            "mismatched": [[k, s, list(ss), list(ds)] for k, s, ss, ds in self.mismatched],
            "needs_inflation": list(self.needs_inflation),
            "ambiguous": [a.to_dict() for a in self.ambiguous],
            "tied_readings": list(self.tied_readings),
            "skipped_copies": list(self.skipped_copies),
            "dropped": list(self.dropped),
            "unused": list(self.unused),
            "defaulted": list(self.defaulted),
            "stages": {k: list(v) for k, v in self.stages.items()},
            "filled": self.filled,
            "total": self.total,
            "inflate": self.inflate,
            "layout": self.layout,
            "notes": list(self.notes),
            "ok": self.ok,
            "reason": self.reason,
        }
