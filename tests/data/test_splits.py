"""Splits: patient leakage, nesting, stratification, imbalance, domain splits, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from monai_transfer.data.splits import (
    class_counts,
    domain_split,
    induce_imbalance,
    label_fractions,
    leave_one_out,
    patient_split,
)


def _entries(n_patients: int = 120, per_patient: int = 2, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patients):
        label = int(rng.random() < 0.3)  # 30 % positive patients
        site = "ABC"[p % 3]
        for k in range(per_patient):
            out.append({"image": f"p{p}_{k}.nii.gz", "label": label, "patient_id": f"P{p:03d}", "site": site})
    return out


def _ids(entries: list[dict]) -> list[str]:
    return [e["image"] for e in entries]


@pytest.mark.parametrize("stratify", [None, "label"])
def test_patient_split_no_leakage_and_sizes(stratify: str | None) -> None:
    data = _entries()
    parts = patient_split(data, (0.6, 0.2, 0.2), seed=3, stratify_key=stratify)
    pats = {k: {e["patient_id"] for e in v} for k, v in parts.items()}
    assert not pats["train"] & pats["val"] and not pats["train"] & pats["test"] and not pats["val"] & pats["test"]
    assert sum(len(v) for v in parts.values()) == len(data)
    assert abs(len(pats["train"]) - 72) <= 2 and abs(len(pats["val"]) - 24) <= 2
    if stratify:
        for v in parts.values():
            frac = np.mean([e["label"] for e in v])
            assert abs(frac - np.mean([e["label"] for e in data])) < 0.06


def test_patient_split_determinism_and_seed() -> None:
    data = _entries()
    a = patient_split(data, seed=1)
    b = patient_split(data, seed=1)
    c = patient_split(data, seed=2)
    assert {k: _ids(v) for k, v in a.items()} == {k: _ids(v) for k, v in b.items()}
    assert _ids(a["train"]) != _ids(c["train"])


def test_patient_split_missing_key() -> None:
    with pytest.raises(KeyError, match="patient_id"):
        patient_split([{"image": "a"}, {"image": "b"}])
    parts = patient_split([{"image": str(i)} for i in range(10)], (0.5, 0.5), ("a", "b"), patient_key=None)
    assert len(parts["a"]) == 5


def test_label_fractions_nested_stratified() -> None:
    rng = np.random.default_rng(0)
    data = [{"image": f"{i}.png", "label": int(rng.choice(3, p=[0.7, 0.25, 0.05]))} for i in range(1000)]
    subsets = label_fractions(data, seed=5)
    assert list(subsets) == [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    fr = list(subsets)
    for small, big in zip(fr[:-1], fr[1:]):
        assert set(_ids(subsets[small])) <= set(_ids(subsets[big]))
    assert len(subsets[1.0]) == 1000
    full = class_counts(data)
    for f, sub in subsets.items():
        counts = class_counts(sub)
        assert set(counts) == set(full)  # every class present, even at 1 %
        assert abs(len(sub) - f * 1000) <= 3
        for c, n in full.items():
            assert abs(counts[c] - max(1, round(f * n))) <= 1
    assert _ids(label_fractions(data, seed=5)[0.1]) == _ids(subsets[0.1])
    assert _ids(label_fractions(data, seed=6)[0.1]) != _ids(subsets[0.1])


def test_label_fractions_patient_level_and_segmentation() -> None:
    data = _entries(50, 3)
    subsets = label_fractions(data, (0.1, 0.5), seed=0, patient_key="patient_id")
    for sub in subsets.values():
        counts = Counter(e["patient_id"] for e in sub)
        assert set(counts.values()) == {3}  # whole patients only
    seg = [{"image": f"{i}.nii.gz", "label": f"{i}_seg.nii.gz"} for i in range(40)]
    s = label_fractions(seg, (0.25, 0.5))
    assert len(s[0.25]) == 10 and len(s[0.5]) == 20


@pytest.mark.parametrize("ratio,prevalence", [(0.1, None), (None, 0.05), (0.5, None)])
def test_induce_imbalance(ratio: float | None, prevalence: float | None) -> None:
    data = [{"image": f"{i}", "label": int(i % 2)} for i in range(400)]  # 200 pos, 200 neg
    out = induce_imbalance(data, ratio=ratio, prevalence=prevalence, seed=0)
    c = class_counts(out)
    target = ratio if ratio is not None else prevalence / (1 - prevalence)
    assert c[0] == 200
    assert c[1] == round(target * 200)
    assert _ids(out) == _ids(induce_imbalance(data, ratio=ratio, prevalence=prevalence, seed=0))
    assert _ids(out) != _ids(induce_imbalance(data, ratio=ratio, prevalence=prevalence, seed=1))


def test_induce_imbalance_too_few_positives_subsamples_negatives() -> None:
    data = [{"image": f"{i}", "label": int(i < 10)} for i in range(100)]  # 10 pos, 90 neg
    out = induce_imbalance(data, ratio=0.5)
    c = class_counts(out)
    assert c[1] == 10 and c[0] == 20
    with pytest.raises(ValueError):
        induce_imbalance(data)
    with pytest.raises(ValueError):
        induce_imbalance([{"image": "a", "label": 0}], ratio=1.0)


def test_domain_split_and_leave_one_out() -> None:
    data = _entries(30, 2)
    parts = domain_split(data, train=["A", "B"], test=["C"])
    assert {e["site"] for e in parts["train"]} == {"A", "B"} and {e["site"] for e in parts["test"]} == {"C"}
    parts = domain_split(data, train="A", val_fraction=0.3, seed=0)
    assert {e["site"] for e in parts["test"]} == {"B", "C"}
    assert not {e["patient_id"] for e in parts["train"]} & {e["patient_id"] for e in parts["val"]}
    assert parts["val"]
    with pytest.raises(ValueError, match="unknown"):
        domain_split(data, train=["Z"])
    with pytest.raises(ValueError, match="both"):
        domain_split(data, train=["A"], test=["A"])
    loo = leave_one_out(data)
    assert list(loo) == ["A", "B", "C"]
    for held, p in loo.items():
        assert {e["site"] for e in p["test"]} == {held}
        assert held not in {e["site"] for e in p["train"]}
        assert len(p["train"]) + len(p["test"]) == len(data)
