"""The report every pretrained load returns: what loaded, what did not, and why.

``torch.nn.Module.load_state_dict(strict=False)`` returns two lists and is easily ignored; a transfer experiment
whose backbone silently kept half of its random initialisation is worthless. ``LoadReport`` therefore counts the
keys per stage of the backbone, names every shape mismatch with both shapes, separates keys an adapter dropped on
purpose (classifier heads, projection heads, decoders) from keys nobody recognised, and prints as a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monai_transfer.weights.provenance import Provenance

__all__ = ["LoadReport", "PretrainedLoadError"]


def _shape(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _short_list(items: list[str], limit: int) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"


@dataclass
class LoadReport:
    """What a ``load_pretrained`` call did.

    Attributes:
        loaded: module keys that received a tensor from the checkpoint.
        missing: module keys that the checkpoint did not provide (they keep their initial value).
        unexpected: checkpoint keys (after adaptation) that match no module key and that no adapter recognised.
        mismatched: ``(key, checkpoint_shape, module_shape)`` for keys whose shapes differ after surgery.
        dropped: checkpoint keys the adapter dropped on purpose (classifier/projection heads, decoders, momentum
            encoders), under their original names.
        defaulted: module keys absent from the checkpoint that need no value from it (batch-norm counters,
            buffers derived from the architecture, layers the module never uses).
        adapted: module key -> what surgery was applied (channel adaptation, inflation, resampling, folding).
        stages: stage name -> ``(loaded, total)`` counts of module keys (``defaulted`` keys excluded).
        adapter: name of the adapter used.
        checkpoint: where the weights came from (path, source name or ``"<state dict>"``).
        checkpoint_sha256: SHA-256 of the checkpoint file, when loaded from a file.
        backbone_name: registry name of the module, when known.
        provenance: the provenance record stored with (or registered for) the weights, if any.
        strict: whether the load was strict.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)
    adapter: str = ""
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    backbone_name: str = ""
    provenance: Provenance | None = None
    strict: bool = True

    def __post_init__(self) -> None:
        self.mismatched = [(k, _shape(a), _shape(b)) for k, a, b in self.mismatched]

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or shape-mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def fraction_loaded(self) -> float:
        """Fraction of the module's (non-defaulted) keys that were loaded."""
        loaded = sum(n for n, _ in self.stages.values())
        total = sum(t for _, t in self.stages.values())
        return loaded / total if total else 0.0

    def stage_fractions(self) -> dict[str, float]:
        """Stage name -> fraction of its keys loaded (a stage without keys counts as fully loaded)."""
        return {s: (n / t if t else 1.0) for s, (n, t) in self.stages.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "ok": self.ok,
            "adapter": self.adapter,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "backbone_name": self.backbone_name,
            "strict": self.strict,
            "fraction_loaded": self.fraction_loaded,
            "stages": {
                s: {"loaded": n, "total": t, "fraction": (n / t if t else 1.0)} for s, (n, t) in self.stages.items()
            },
            "loaded": list(self.loaded),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [
                {"key": k, "checkpoint_shape": list(a), "module_shape": list(b)} for k, a, b in self.mismatched
            ],
            "dropped": list(self.dropped),
            "defaulted": list(self.defaulted),
            "adapted": dict(self.adapted),
            "provenance": self.provenance.to_dict() if self.provenance is not None else None,
        }

    def problems(self, limit: int = 20) -> str:
        """The lines that explain why a strict load fails (empty when ``ok``)."""
        lines: list[str] = []
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} shape-mismatched key(s) (checkpoint shape vs module shape):")
            for k, a, b in self.mismatched[:limit]:
                lines.append(f"  {k}: checkpoint {_fmt_shape(a)} vs module {_fmt_shape(b)}")
            if len(self.mismatched) > limit:
                lines.append(f"  ... ({len(self.mismatched) - limit} more)")
        if self.missing:
            lines.append(f"{len(self.missing)} missing key(s) (in the module, not in the checkpoint):")
            lines.append("  " + _short_list(self.missing, limit))
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} unexpected key(s) (in the checkpoint, not in the module):")
            lines.append("  " + _short_list(self.unexpected, limit))
        return "\n".join(lines)

    def to_table(self, limit: int = 10) -> str:
        """A plain-text table: one row per stage with loaded/total keys and the fraction, then the key lists."""
        head = f"LoadReport: adapter={self.adapter or '?'}, checkpoint={self.checkpoint or '?'}"
        if self.backbone_name:
            head += f", backbone={self.backbone_name}"
        head += f", strict={self.strict}"
        width = max([len("stage"), len("total")] + [len(s) for s in self.stages])
        rows = [head, f"{'stage':<{width}}  {'loaded':>6}  {'total':>6}  {'fraction':>8}"]
        for stage, (n, t) in self.stages.items():
            frac = n / t if t else 1.0
            rows.append(f"{stage:<{width}}  {n:>6}  {t:>6}  {frac:>8.2f}")
        n_all = sum(n for n, _ in self.stages.values())
        t_all = sum(t for _, t in self.stages.values())
        rows.append(f"{'total':<{width}}  {n_all:>6}  {t_all:>6}  {self.fraction_loaded:>8.2f}")
        rows.append(
            f"missing: {len(self.missing)}, unexpected: {len(self.unexpected)}, "
            f"shape-mismatched: {len(self.mismatched)}, dropped: {len(self.dropped)}, "
            f"defaulted: {len(self.defaulted)}, adapted: {len(self.adapted)}"
        )
        problems = self.problems(limit)
        if problems:
            rows.append(problems)
        if self.dropped:
            rows.append("dropped on purpose (heads, decoders, momentum encoders): " + _short_list(self.dropped, limit))
        if self.adapted:
            items = [f"{k}: {v}" for k, v in self.adapted.items()]
            rows.append("adapted:\n  " + "\n  ".join(items[:limit]) + ("\n  ..." if len(items) > limit else ""))
        if self.provenance is not None:
            rows.append("provenance: " + self.provenance.summary())
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.to_table()


class PretrainedLoadError(RuntimeError):
    """Raised by a strict ``load_pretrained`` when the checkpoint does not fit the module.

    The module is left untouched. ``error.report`` holds the full ``LoadReport``.
    """

    def __init__(self, report: LoadReport) -> None:
        self.report = report
        target = report.backbone_name or "the module"
        message = (
            f"Checkpoint {report.checkpoint or '<state dict>'} (adapter {report.adapter or '?'}) does not fit "
            f"{target} (strict=True); nothing was loaded.\n{report.problems()}\n"
            "Fix the architecture arguments (e.g. the source's backbone kwargs), name the right `source=`, or pass "
            "strict=False to load the keys that fit (the report is then logged as a warning).\n\n"
            f"{report.to_table()}"
        )
        super().__init__(message)
