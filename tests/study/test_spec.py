"""A study spec is checked before anything runs: every problem named with its place in the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_transfer.study import SpecError, list_presets, parse_spec, plan_study, preset_path


@pytest.fixture
def data(tmp_path) -> Path:
    """A tiny classification datalist (files need not be images: nothing is read while checking)."""
    entries = []
    for i in range(12):
        f = tmp_path / f"img{i}.nii.gz"
        f.write_bytes(b"")
        entries.append({"image": f.name, "label": int(i % 3 == 0), "patient_id": f"p{i}", "site": "AB"[i % 2]})
    dl = {"labels": {"0": "no", "1": "yes"}, "training": entries[:8], "validation": entries[8:10], "test": entries[10:]}
    (tmp_path / "cls.json").write_text(json.dumps(dl))
    (tmp_path / "pool.json").write_text(json.dumps({"unlabeled": entries}))
    return tmp_path


def _spec(**changes):
    spec = {
        "targets": [{"name": "t", "data": "cls.json", "task": "classification", "spatial_dims": 3}],
        "starts": ["random", {"name": "ssl", "ssl": {"method": "simclr", "data": "pool.json"}}],
        "backbones": ["resnet10"],
        "seeds": [0, 1],
        "challenges": {"label_fractions": [0.5]},
    }
    spec.update(changes)
    return spec


def test_a_good_spec_parses(data):
    spec = parse_spec(_spec(), data)
    assert [c.label for c in spec.challenges] == ["full", "fraction 0.5"]
    assert [s.kind for s in spec.starts] == ["random", "ssl"] and spec.reference == "random"
    assert spec.targets[0].data == str(data / "cls.json")


@pytest.mark.parametrize(
    "changes, place, message",
    [
        ({"seed": [0]}, "seed", "did you mean 'seeds'"),
        ({"targets": [{"name": "t", "data": "nope.json", "task": "classification"}]}, "targets[0].data", "not found"),
        ({"targets": [{"name": "t", "data": "cls.json", "task": "detection"}]}, "targets[0].task", "one of"),
        (
            {"targets": [{"name": "t", "data": "cls.json", "task": "classification", "spatial_dim": 3}]},
            "targets[0].spatial_dim",
            "did you mean 'spatial_dims'",
        ),
        (
            {"starts": ["random", {"name": "x", "ssl": {"method": "simclrr", "data": "pool.json"}}]},
            "starts[1].ssl.method",
            "did you mean 'simclr'",
        ),
        (
            {"starts": ["random", {"name": "x", "source": "torchvision-imagenet1k-v1"}]},
            "starts[1].source",
            "no weights for backbone 'resnet10'",
        ),
        (
            {
                "starts": [
                    "random",
                    {"name": "x", "continual": {"from": "nope", "ssl": {"method": "simclr", "data": "pool.json"}}},
                ]
            },
            "starts[1].continual.from",
            "not a starting point",
        ),
        ({"starts": ["random", {"name": "x", "random": True, "source": "a"}]}, "starts[1]", "exactly one of"),
        ({"reference": "imagenet"}, "reference", "not a starting point"),
        ({"backbones": ["resnet11"]}, "backbones[0]", "did you mean"),
        ({"challenges": {"label_fractions": [1.5]}}, "challenges.label_fractions[0]", "(0, 1)"),
        ({"challenges": {"imbalance": [0.5]}}, "challenges.imbalance[0]", "above 1"),
        ({"challenges": {"domain": [{"train": ["A"], "test": ["A"]}]}}, "challenges.domain[0]", "both train and test"),
        ({"seeds": [0, 0]}, "seeds", "repeated"),
        ({"strategies": ["fulll"]}, "strategies[0]", "unknown strategy"),
        ({"finetune": {"epoch": 2}}, "finetune.epoch", "did you mean 'epochs'"),
        ({"finetune": {"amp": "fast"}}, "finetune.amp", "one of 'auto', 'on', 'off' (or true/false), got 'fast'"),
        (
            {"finetune": {"channels_last": "maybe"}},
            "finetune.channels_last",
            "one of 'auto', 'on', 'off' (or true/false), got 'maybe'",
        ),
        ({"finetune": {"threshold": "yoden"}}, "finetune.threshold", "is not one of"),
        ({"finetune": {"calibrate": "platt"}}, "finetune.calibrate", "one of 'none', 'temperature'"),
        ({"finetune": {"one_vs_rest": "yes"}}, "finetune.one_vs_rest", "true or false"),
        (
            {"starts": ["random", {"name": "x", "ssl": {"method": "simclr", "data": "pool.json", "amp": "bf16"}}]},
            "starts[1].ssl.amp",
            "one of 'auto', 'on', 'off' (or true/false), got 'bf16'",
        ),
        (
            {"starts": ["random", {"name": "x", "supervised": {"data": "cls.json", "amp": "maybe"}}]},
            "starts[1].supervised.amp",
            "one of 'auto', 'on', 'off' (or true/false), got 'maybe'",
        ),
    ],
)
def test_problems_are_named_with_their_place(data, changes, place, message):
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**changes), data)
    assert str(err.value).startswith(f"{place}:"), str(err.value)
    assert message in str(err.value)


def test_impossible_cells_are_named_before_anything_runs(data, tmp_path):
    # a domain value the data does not have
    spec = parse_spec(_spec(challenges={"domain": [{"train": ["A"], "test": ["C"]}]}), data)
    with pytest.raises(SpecError, match=r"target 't', challenge 'domain A -> C', seed 0: unknown site value"):
        plan_study(spec, tmp_path / "out")
    assert not (tmp_path / "out" / "cells").exists()
    # class imbalance on a segmentation target
    seg = _spec(targets=[{"name": "s", "data": "cls.json", "task": "segmentation", "spatial_dims": 3}],
                challenges={"imbalance": [4]})  # fmt: skip
    with pytest.raises(SpecError, match="classification targets only"):
        plan_study(parse_spec(seg, data), tmp_path / "out2")


def test_cells_are_paired_across_starting_points(data, tmp_path):
    spec = parse_spec(_spec(), data)
    cells = plan_study(spec, tmp_path / "out")
    assert len(cells) == 2 * 2 * 2  # challenges x seeds x starts
    by_key: dict = {}
    for c in cells:
        by_key.setdefault((c.challenge.label, c.seed), set()).add(c.datalist)
    assert all(len(v) == 1 for v in by_key.values())  # every start of a (challenge, seed) reads the same file
    half = [json.loads(Path(c.datalist).read_text()) for c in cells if c.challenge.kind == "label_fraction"]
    assert all(h["study_cell_data"]["n_training"] == 5 for h in half)  # per class: round(0.5 * 3) + round(0.5 * 5)
    s0, s1 = (json.loads(Path(c.datalist).read_text())["training"] for c in cells
              if c.challenge.kind == "label_fraction" and c.start == "random")  # fmt: skip
    assert {e["image"] for e in s0} != {e["image"] for e in s1}  # seeds draw different subsets
    assert len({c.id for c in cells}) == len(cells)


def test_presets_parse(tmp_path):
    assert "demo" in list_presets()
    with pytest.raises(SpecError, match="no preset 'nope'"):
        preset_path("nope")


def test_a_study_that_learned_nothing_says_so(data):
    from monai_transfer.study.runner import _chance_warnings

    spec = parse_spec(_spec(), data)
    rows = [{"target": "t", "challenge": "full", "status": "ok", "start": s, "score": v}
            for s, v in (("random", 0.5), ("random", 0.55), ("ssl", 0.58))]  # fmt: skip
    (warning,) = _chance_warnings(spec, rows)
    assert "no starting point learned" in warning and "0.580" in warning
    rows.append({"target": "t", "challenge": "full", "status": "ok", "start": "ssl", "score": 0.9})
    assert _chance_warnings(spec, rows) == []
