"""Deterministic dataset splits for transfer-learning studies.

* :func:`patient_split`: train/val/test fractions with no patient in two splits (optionally stratified).
* :func:`label_fractions`: nested, stratified label-scarcity subsets (1, 5, 10, 25, 50, 100 %); each larger fraction
  contains every smaller one, and every class keeps at least ``min_per_class`` cases where it has them.
* :func:`induce_imbalance`: subsample the positive (minority) class to a positive:negative ratio or a prevalence.
* :func:`domain_split` and :func:`leave_one_out`: train on some sites/scanners/modalities, test on others.

Every function draws only from ``numpy.random.default_rng(seed)`` (no global RNG): the same seed gives the same
split, different seeds give different ones. Entries are datalist dicts (see :mod:`monai_transfer.data.datalist`);
inputs are never modified, outputs keep the input order within each split.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "patient_split",
    "label_fractions",
    "induce_imbalance",
    "domain_split",
    "leave_one_out",
    "group_by",
    "class_counts",
    "DEFAULT_LABEL_FRACTIONS",
]

DEFAULT_LABEL_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".dcm", ".npy", ".npz", ".tif")


def _stratum(value: Any) -> Hashable:
    """The class used for stratification: scalars as is, multi-label lists as tuples, label-map paths as one class."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        flat = [v.item() if isinstance(v, np.generic) else v for v in np.ravel(np.asarray(value, dtype=object))]
        return tuple(flat[0:1]) if len(flat) == 1 else tuple(flat)
    if isinstance(value, (str, os.PathLike)) and os.fspath(value).lower().endswith(_IMAGE_SUFFIXES):
        return "__label_map__"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _strat_key(entry: Mapping[str, Any], key: str | None) -> Hashable:
    if key is None:
        return None
    if key not in entry:
        raise KeyError(f"entry {entry.get('image', entry)!r} has no stratification key {key!r}")
    s = _stratum(entry[key])
    return s[0] if isinstance(s, tuple) and len(s) == 1 else s


def group_by(entries: Sequence[Mapping[str, Any]], key: str | None) -> dict[Hashable, list[int]]:
    """Entry indices per value of ``key`` (first-seen order); ``key=None`` puts every entry in its own group.

    Raises:
        KeyError: an entry lacks ``key`` (the message names it).
    """
    groups: dict[Hashable, list[int]] = {}
    for i, e in enumerate(entries):
        if key is None:
            g: Hashable = i
        else:
            if key not in e:
                raise KeyError(
                    f"entry {i} ({e.get('image', '?')!r}) has no {key!r}; pass {key}=None to split per entry"
                )
            g = _stratum(e[key])
        groups.setdefault(g, []).append(i)
    return groups


def class_counts(entries: Sequence[Mapping[str, Any]], label_key: str = "label") -> dict[Hashable, int]:
    """Number of entries per class of ``label_key``."""
    return dict(Counter(_strat_key(e, label_key) for e in entries))


def _unit_strata(
    entries: Sequence[Mapping[str, Any]], units: list[list[int]], stratify_key: str | None
) -> list[Hashable]:
    """One stratum per unit (patient): the most frequent class among its entries (ties: smallest repr)."""
    out = []
    for idx in units:
        c = Counter(_strat_key(entries[i], stratify_key) for i in idx)
        top = max(c.values())
        out.append(sorted((k for k, v in c.items() if v == top), key=repr)[0])
    return out


def _allocate(n: int, fractions: Sequence[float], rng: np.random.Generator) -> list[int]:
    """Split ``n`` items into counts proportional to ``fractions`` (largest remainder, random ties; sums to ``n``)."""
    f = np.asarray(fractions, dtype=np.float64)
    f = f / f.sum()
    raw = f * n
    counts = np.floor(raw).astype(int)
    rem = np.round(raw - counts, 9)
    tie = rng.random(len(f))
    for i in np.lexsort((tie, -rem))[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def patient_split(
    entries: Sequence[Mapping[str, Any]],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    names: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
    patient_key: str | None = "patient_id",
    stratify_key: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Split entries into named subsets at patient level (no patient appears in two subsets).

    Args:
        entries: datalist entries.
        fractions: share of patients per subset (normalised to sum to 1).
        names: subset names, one per fraction.
        seed: random seed.
        patient_key: entry key naming the patient; ``None`` treats every entry as its own patient.
        stratify_key: stratify patients by this key (their most frequent class), e.g. ``"label"`` or ``"site"``.

    Returns:
        ``{name: entries}`` in input order within each subset.

    Raises:
        ValueError: fractions and names differ in length, or a fraction is negative.
        KeyError: an entry lacks ``patient_key`` or ``stratify_key``.
    """
    if len(fractions) != len(names):
        raise ValueError(f"got {len(fractions)} fractions for {len(names)} names")
    if any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    units = list(group_by(entries, patient_key).values())
    strata = _unit_strata(entries, units, stratify_key) if stratify_key else [None] * len(units)
    by_stratum: dict[Hashable, list[int]] = defaultdict(list)
    for u, s in enumerate(strata):
        by_stratum[s].append(u)
    assignment = np.empty(len(units), dtype=int)
    for s in sorted(by_stratum, key=repr):
        us = np.asarray(by_stratum[s])
        us = us[rng.permutation(len(us))]
        counts = _allocate(len(us), fractions, rng)
        start = 0
        for j, c in enumerate(counts):
            assignment[us[start : start + c]] = j
            start += c
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    entry_subset = np.empty(len(entries), dtype=int)
    for u, idx in enumerate(units):
        entry_subset[idx] = assignment[u]
    for i, e in enumerate(entries):
        out[names[entry_subset[i]]].append(dict(e))
    return out


def label_fractions(
    entries: Sequence[Mapping[str, Any]],
    fractions: Sequence[float] = DEFAULT_LABEL_FRACTIONS,
    seed: int = 0,
    label_key: str | None = "label",
    patient_key: str | None = None,
    min_per_class: int = 1,
) -> dict[float, list[dict[str, Any]]]:
    """Nested, stratified label-scarcity subsets.

    Each class's units (entries, or patients with ``patient_key``) are put in one seeded random order; the subset for
    fraction ``f`` takes the first ``max(min_per_class, round(f * n_c))`` units of every class ``c`` (capped at
    ``n_c``), so a larger fraction always contains every smaller one and class proportions are kept (up to rounding
    and the per-class minimum). Segmentation datalists (label-map paths) form a single stratum.

    Args:
        entries: datalist entries (typically the training split).
        fractions: fractions in ``(0, 1]``.
        seed: random seed.
        label_key: key stratified on; ``None`` for no stratification.
        patient_key: select whole patients (all their entries) instead of single entries.
        min_per_class: minimum units per class in every subset (where the class has that many).

    Returns:
        ``{fraction: entries}`` (input order within each subset).
    """
    fr = sorted(float(f) for f in fractions)
    if not fr or fr[0] <= 0 or fr[-1] > 1:
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    rng = np.random.default_rng(seed)
    units = list(group_by(entries, patient_key).values())
    strata = _unit_strata(entries, units, label_key) if label_key else [None] * len(units)
    by_stratum: dict[Hashable, list[int]] = defaultdict(list)
    for u, s in enumerate(strata):
        by_stratum[s].append(u)
    orders = {}
    for s in sorted(by_stratum, key=repr):
        us = np.asarray(by_stratum[s])
        orders[s] = us[rng.permutation(len(us))]
    out: dict[float, list[dict[str, Any]]] = {}
    prev = dict.fromkeys(orders, 0)
    for f in fr:
        chosen_units: list[int] = []
        for s, order in orders.items():
            n_c = len(order)
            k = n_c if f >= 1.0 else min(n_c, max(min_per_class, int(math.floor(f * n_c + 0.5))))
            k = max(k, prev[s])
            prev[s] = k
            chosen_units.extend(order[:k].tolist())
        chosen = sorted(i for u in chosen_units for i in units[u])
        out[f] = [dict(entries[i]) for i in chosen]
    return {f: out[float(f)] for f in sorted(fractions, key=float)}


def induce_imbalance(
    entries: Sequence[Mapping[str, Any]],
    ratio: float | None = None,
    prevalence: float | None = None,
    positive: Any | Iterable[Any] = 1,
    label_key: str = "label",
    seed: int = 0,
    min_positive: int = 1,
    patient_key: str | None = None,
) -> list[dict[str, Any]]:
    """Subsample the positive class to a positive:negative ``ratio`` or a ``prevalence``.

    Keeps all negatives and draws ``round(ratio * n_neg)`` positives (``prevalence`` p gives ratio p / (1 - p)).
    When there are too few positives for the target, all positives are kept and negatives are subsampled instead.

    Args:
        entries: datalist entries.
        ratio: target positives per negative (e.g. ``0.1`` for 1:10).
        prevalence: target share of positives in ``(0, 1)``; give either this or ``ratio``.
        positive: the positive class value, or several values (all others are negative).
        label_key: the class key.
        seed: random seed.
        min_positive: keep at least this many positives.
        patient_key: subsample whole patients (a patient is positive if any entry is).

    Returns:
        The kept entries in input order.
    """
    if (ratio is None) == (prevalence is None):
        raise ValueError("give exactly one of ratio and prevalence")
    if prevalence is not None:
        if not 0 < prevalence < 1:
            raise ValueError(f"prevalence must lie in (0, 1), got {prevalence}")
        ratio = prevalence / (1.0 - prevalence)
    assert ratio is not None
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    pos_set = (
        {_stratum(p) for p in positive} if isinstance(positive, (set, frozenset, list, tuple)) else {_stratum(positive)}
    )
    rng = np.random.default_rng(seed)
    units = list(group_by(entries, patient_key).values())
    is_pos = np.array([any(_strat_key(entries[i], label_key) in pos_set for i in idx) for idx in units], dtype=bool)
    pos_u, neg_u = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    if len(pos_u) == 0 or len(neg_u) == 0:
        raise ValueError(f"need both positive ({sorted(map(repr, pos_set))}) and negative entries to set a ratio")
    n_pos = max(min_positive, int(math.floor(ratio * len(neg_u) + 0.5)))
    n_neg = len(neg_u)
    if n_pos > len(pos_u):
        n_pos = len(pos_u)
        n_neg = min(len(neg_u), max(1, int(math.floor(n_pos / ratio + 0.5))))
    keep_pos = pos_u[rng.permutation(len(pos_u))[:n_pos]]
    keep_neg = neg_u[rng.permutation(len(neg_u))[:n_neg]]
    chosen = sorted(i for u in np.concatenate([keep_pos, keep_neg]) for i in units[u])
    return [dict(entries[i]) for i in chosen]


def domain_split(
    entries: Sequence[Mapping[str, Any]],
    train: Iterable[Any],
    test: Iterable[Any] | None = None,
    by: str = "site",
    val_fraction: float = 0.0,
    seed: int = 0,
    patient_key: str | None = "patient_id",
) -> dict[str, list[dict[str, Any]]]:
    """Train on some domains (sites, scanners, modalities), test on others.

    Args:
        entries: datalist entries with a ``by`` key.
        train: domain values for training (and validation).
        test: domain values for testing; default: every other domain.
        by: the domain key (``"site"``, ``"scanner"``, ``"modality"``, ...).
        val_fraction: share of training-domain patients held out as ``"val"`` (patient-level).
        seed: random seed for the validation split.
        patient_key: patient key for the validation split.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        ValueError: a domain is unknown, or train and test domains overlap.
        KeyError: an entry lacks ``by``.
    """
    for i, e in enumerate(entries):
        if by not in e:
            raise KeyError(f"entry {i} ({e.get('image', '?')!r}) has no domain key {by!r}")
    present = {_stratum(e[by]) for e in entries}
    train_set = {_stratum(t) for t in ([train] if isinstance(train, (str, int)) else train)}
    test_set = (
        present - train_set
        if test is None
        else {_stratum(t) for t in ([test] if isinstance(test, (str, int)) else test)}
    )
    unknown = (train_set | test_set) - present
    if unknown:
        raise ValueError(f"unknown {by} value(s) {sorted(map(str, unknown))}; present: {sorted(map(str, present))}")
    if train_set & test_set:
        raise ValueError(f"{by} value(s) {sorted(map(str, train_set & test_set))} are in both train and test")
    tr = [dict(e) for e in entries if _stratum(e[by]) in train_set]
    te = [dict(e) for e in entries if _stratum(e[by]) in test_set]
    if val_fraction > 0:
        parts = patient_split(tr, (1 - val_fraction, val_fraction), ("train", "val"), seed, patient_key)
        return {"train": parts["train"], "val": parts["val"], "test": te}
    return {"train": tr, "val": [], "test": te}


def leave_one_out(
    entries: Sequence[Mapping[str, Any]],
    by: str = "site",
    val_fraction: float = 0.0,
    seed: int = 0,
    patient_key: str | None = "patient_id",
) -> dict[Any, dict[str, list[dict[str, Any]]]]:
    """Leave-one-domain-out splits: for each value of ``by``, test on it and train on all the others.

    Returns:
        ``{held_out_value: {"train": [...], "val": [...], "test": [...]}}`` in sorted domain order.
    """
    for i, e in enumerate(entries):
        if by not in e:
            raise KeyError(f"entry {i} ({e.get('image', '?')!r}) has no domain key {by!r}")
    domains = sorted({_stratum(e[by]) for e in entries}, key=repr)
    if len(domains) < 2:
        raise ValueError(f"leave-one-out needs at least two {by} values, found {domains}")
    return {
        d: domain_split(entries, [x for x in domains if x != d], [d], by, val_fraction, seed, patient_key)
        for d in domains
    }
