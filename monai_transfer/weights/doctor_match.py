"""How the weight doctor pairs a checkpoint's tensors with a backbone's: by names (a prefix and a reader), then by
unique shapes, never by a guess between equals.

* **Names.** Every prefix the checkpoint's keys start with (up to three leading components, stopping at a number or
  at one of the backbone's own top-level names) is tried with every reader of ``weights.renames``. A reading fills
  the backbone keys whose renamed tensor fits (same shape, or a shape the known surgery fixes). The reading that
  fills the most wins; readings that fill as many through different tensors are an ambiguity unless all but one
  read a momentum/EMA/student copy (``renames.COPY_MARKERS``), which is skipped by convention and reported.
* **Shapes.** What names leave unfilled is paired with the unused checkpoint tensors under the chosen prefix that
  have the same last name component (``weight``, ``bias``, ``running_mean`` ...) and a fitting shape, only where the
  pairing is one-to-one. Two candidates for one key, or one tensor fitting two keys, is reported and not taken.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from monai_transfer.weights.renames import Reader, is_copy_key

__all__ = ["Reading", "Ambiguity", "relation", "candidate_prefixes", "read_names", "NameChoice", "match_shapes"]

_POSITION_NAMES = ("position_embeddings", "pos_embed", "position_embedding")
_NUMBER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Ambiguity:
    """Backbone keys and checkpoint keys that could fill each other, with no way to tell which fills which."""

    targets: tuple[str, ...]
    sources: tuple[str, ...]
    why: str

    def to_dict(self) -> dict:
        return {"targets": list(self.targets), "sources": list(self.sources), "why": self.why}


@dataclass
class Reading:
    """One (prefix, reader) pairing of checkpoint keys with backbone keys.

    Attributes:
        prefix: the checkpoint prefix read (``""``: the whole checkpoint).
        reader: the reader's name.
        sources: backbone key -> checkpoint key (original name) it came from.
        tensors: backbone key -> tensor (renamed, finalized).
        fits: backbone key -> relation of its tensor's shape (``relation``), for the keys whose shape fits.
        dropped: checkpoint keys the reader drops as heads by its layout's own convention.
        collisions: backbone key -> the checkpoint keys that all map to it.
    """

    prefix: str
    reader: str
    sources: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    fits: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    collisions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def score(self, needed: set[str]) -> tuple[int, int]:
        filled = [k for k in self.fits if k not in self.collisions]
        return sum(k in needed for k in filled), len(filled)

    def signature(self) -> frozenset[tuple[str, str]]:
        """What the reading does, independent of how it was found (two readings may agree exactly)."""
        return frozenset((k, self.sources[k]) for k in self.fits if k not in self.collisions)

    def is_copy(self) -> bool:
        """Whether most tensors it reads sit in a momentum/EMA/student copy of the backbone."""
        wrappers = [_wrapper(self.sources[k], k) for k in self.fits]
        return bool(wrappers) and sum(map(is_copy_key, wrappers)) * 2 > len(wrappers)

    @property
    def label(self) -> str:
        return f"prefix {self.prefix!r} read {self.reader}"


def _wrapper(source_key: str, target_key: str) -> str:
    """The part of a checkpoint key before the components it shares (at its end) with the backbone key."""
    s, t = source_key.split("."), target_key.split(".")
    while s and t and s[-1] == t[-1]:
        s.pop()
        t.pop()
    return ".".join(s)


def depth_index(axis: int, dims: int) -> int:
    """Index of the depth axis that 2D -> 3D inflation adds to a tensor of ``dims`` dimensions."""
    spatial = dims - 2
    if not -spatial <= axis < spatial:
        raise ValueError(f"depth_axis must index one of the {spatial} spatial axes, got {axis}.")
    return 2 + axis % spatial


def relation(key: str, src: torch.Tensor, dst: torch.Tensor, stem: str | None, axis: int = -1) -> str | None:
    """How a checkpoint tensor fits a backbone tensor: ``"same"`` shape, ``"channels"`` (the stem with other input
    channels: channel surgery), ``"inflate"`` (a 2D kernel for a 3D one), ``"position"`` (a position embedding on
    another grid: resampling), or ``None`` (it does not fit)."""
    s, d = tuple(src.shape), tuple(dst.shape)
    if s == d:
        return "same"
    channels_ok = key == stem
    if len(s) == len(d) and len(s) >= 3 and s[0] == d[0] and s[2:] == d[2:] and channels_ok:
        return "channels"
    if len(s) + 1 == len(d) and len(d) >= 5:
        i = depth_index(axis, len(d))
        plane = d[:i] + d[i + 1 :]
        if plane[0] == s[0] and plane[2:] == s[2:] and (plane[1] == s[1] or channels_ok):
            return "inflate"
    name = key.rsplit(".", 1)[-1]
    if name in _POSITION_NAMES and len(s) == len(d) == 3 and s[0] == d[0] == 1 and s[2] == d[2]:
        return "position"
    return None


def candidate_prefixes(keys: list[str], target_top: set[str], depth: int = 3) -> list[str]:
    """``""`` and every leading run of up to ``depth`` components, stopping at a number or a backbone top name."""
    out = {""}
    for key in keys:
        parts = key.split(".")[:-1]
        for i, part in enumerate(parts[:depth]):
            if _NUMBER.match(part) or part in target_top:
                break
            out.add(".".join(parts[: i + 1]) + ".")
    return sorted(out, key=lambda p: (p.count("."), p))


def _read(
    reader: Reader,
    prefix: str,
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    stem: str | None,
    axis: int,
) -> Reading | None:
    sub = {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix) and len(k) > len(prefix)}
    if not sub:
        return None
    try:
        fn = reader.bind(sub, target)
    except ValueError:  # a reader that needs a layout the keys lack (no backbone prefix for lightning-ssl)
        return None
    reading = Reading(prefix=prefix, reader=reader.name)
    renamed: dict[str, torch.Tensor] = {}
    seen: dict[str, list[str]] = {}
    for key, value in sub.items():
        result = fn(key, value)
        if result is None:
            reading.dropped.append(prefix + key)
            continue
        new, tensor = result
        seen.setdefault(new, []).append(prefix + key)
        renamed[new] = tensor
    if reader.finalize is not None:
        before = dict(renamed)
        renamed = reader.finalize(renamed)
        removed = [k for k in before if k not in renamed]
        for new in renamed:
            if new not in seen:  # a tensor the finalize step built from others (timm's cls + position)
                seen[new] = [seen[r][0] for r in removed[:1]] or ["?"]
    for new, value in renamed.items():
        origins = seen.get(new, ["?"])
        if new not in target:
            continue
        reading.sources[new] = origins[0]
        reading.tensors[new] = value
        if len(origins) > 1:
            reading.collisions[new] = tuple(origins)
        rel = relation(new, value, target[new], stem, axis)
        if rel is not None:
            reading.fits[new] = rel
    return reading


@dataclass
class NameChoice:
    """The outcome of reading by names: the reading taken (if any), readings skipped as copies, and ties."""

    chosen: Reading | None
    skipped_copies: list[Reading] = field(default_factory=list)
    tied: list[Reading] = field(default_factory=list)


def read_names(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    needed: set[str],
    readers: tuple[Reader, ...],
    stem: str | None,
    axis: int = -1,
    prefix: str | None = None,
) -> NameChoice:
    """Try every prefix with every reader and keep the reading that fills the most backbone keys.

    Args:
        source: the checkpoint's tensors.
        target: the backbone's state dict.
        needed: the backbone keys that must come from the checkpoint (not defaulted).
        readers: ``weights.renames.readers()``.
        stem: the backbone's first convolution key (the only key channel surgery applies to).
        axis: depth axis of 2D -> 3D inflation.
        prefix: read only under this prefix (the user's choice between equal readings).
    """
    top = {k.split(".", 1)[0] for k in target}
    prefixes = [prefix] if prefix is not None else candidate_prefixes(list(source), top)
    best: dict[Any, Reading] = {}
    best_score = (0, 0)
    for p in prefixes:
        for reader in readers:
            reading = _read(reader, p, source, target, stem, axis)
            if reading is None:
                continue
            score = reading.score(needed)
            if score < best_score or score == (0, 0):
                continue
            if score > best_score:
                best, best_score = {}, score
            # one reading found twice (an adapter that strips the prefix itself): keep the one naming the longest
            # prefix (the most explicit), else the first reader (the simplest rename); the same names with other
            # values (a finalize step one reader applies and the other not) are two readings, not one
            sig: Any = reading.signature()
            while sig in best and not _same_values(best[sig], reading):
                sig = (sig, len(best))
            if sig not in best or len(reading.prefix) > len(best[sig].prefix):
                best[sig] = reading
    if not best:
        return NameChoice(chosen=None)
    tied = sorted(best.values(), key=lambda r: (r.prefix, r.reader))
    if len(tied) == 1:
        return NameChoice(chosen=tied[0])
    originals = [r for r in tied if not r.is_copy()]
    if len(originals) == 1:
        return NameChoice(chosen=originals[0], skipped_copies=[r for r in tied if r is not originals[0]])
    return NameChoice(chosen=None, tied=tied)


def _same_tensor(x: torch.Tensor, y: torch.Tensor) -> bool:
    # renaming keeps the tensor itself: compare values only when a reader built a new one
    same_view = x.data_ptr() == y.data_ptr() and x.shape == y.shape and x.stride() == y.stride()
    return x is y or (same_view and x.dtype == y.dtype) or torch.equal(x, y)


def _same_values(a: Reading, b: Reading) -> bool:
    return all(_same_tensor(a.tensors[k], b.tensors[k]) for k in a.fits if k not in a.collisions)


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def match_shapes(
    targets: list[str],
    sources: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    stem: str | None,
    inflate: bool,
    axis: int = -1,
) -> tuple[dict[str, tuple[str, str]], list[Ambiguity]]:
    """Pair backbone keys with checkpoint tensors by shape where the pairing is one-to-one.

    A candidate has the backbone key's last name component and a fitting shape (the same; or inflatable when
    ``inflate``). Keys without candidates stay unmatched; keys or tensors with more than one candidate are reported.

    Returns:
        ``(matches, ambiguities)``: backbone key -> ``(checkpoint key, relation)``, and the ambiguous groups.
    """
    allowed = ("same", "inflate") if inflate else ("same",)
    cands: dict[str, dict[str, str]] = {}
    back: dict[str, list[str]] = {}
    for t in targets:
        for s, value in sources.items():
            if _leaf(s) != _leaf(t):
                continue
            rel = relation(t, value, target[t], None, axis)
            if rel in allowed:
                cands.setdefault(t, {})[s] = rel
                back.setdefault(s, []).append(t)
    matches: dict[str, tuple[str, str]] = {}
    groups: dict[frozenset[str], set[str]] = {}
    for t, options in cands.items():
        if len(options) == 1:
            s, rel = next(iter(options.items()))
            if len(back[s]) == 1:
                matches[t] = (s, rel)
                continue
            groups.setdefault(frozenset([s]), set()).update(back[s])
        else:
            groups.setdefault(frozenset(options), set()).add(t)
    ambiguities = []
    for srcs, tgts in groups.items():
        shape = tuple(sources[next(iter(srcs))].shape)
        many = "tensors" if len(srcs) > 1 else "tensor"
        why = f"{len(srcs)} checkpoint {many} of shape {shape} could fill {len(tgts)} backbone key(s)"
        ambiguities.append(Ambiguity(targets=tuple(sorted(tgts)), sources=tuple(sorted(srcs)), why=why))
    return matches, ambiguities
