"""Seeds a design needs from a pilot's spread (`study plan SPEC --pilot DIR`), and the spec's equivalence margin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from monai_transfer.metrics.power import min_detectable_difference, paired_t_power, seeds_needed
from monai_transfer.study import SpecError, parse_spec
from monai_transfer.study.pilot import format_seed_plan, pilot_plan, seed_plan
from monai_transfer.study.store import ResultsStore

from .conftest import make_rows


def _pilot_rows(seeds=(0, 1, 2)) -> list[dict]:
    return [r for r in make_rows() if r["seed"] in seeds]


def _diffs(rows, c) -> np.ndarray:
    def scores(start):
        return {r["seed"]: r["score"] for r in rows if r["status"] == "ok" and r["start"] == start
                and all(r[k] == c[k] for k in ("target", "challenge", "backbone", "strategy"))}  # fmt: skip

    a, b = scores(c["start"]), scores("random")
    return np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])


def test_seed_plan_from_the_pilot_spread():
    rows = _pilot_rows()
    plan = seed_plan(rows, design_seeds=6, n_family=12)
    assert len(plan) == 30
    for c in plan:
        d = _diffs(rows, c)
        assert c["pilot_n"] == d.size
        if d.size < 3:  # the segmentation target's domain shift has seeds 0 and 1 only
            assert not c["usable"] and c["seeds_effect"] is None and c["seeds_observed"] is None
            assert "too few seeds in the pilot (n=2 paired)" in c["note"]
            continue
        sd = d.std(ddof=1)
        assert c["usable"] and c["sd_diff"] == pytest.approx(sd, rel=1e-12)
        assert c["effect"] == 0.01 and c["effect_source"] == "equivalence margin (default)"
        assert c["seeds_observed"] == seeds_needed(d.mean(), sd, 0.05, 0.8, min_n=3)
        assert c["seeds_observed_family"] == seeds_needed(d.mean(), sd, 0.05 / 12, 0.8, min_n=3)
        assert c["seeds_effect"] == seeds_needed(0.01, sd, 0.05, 0.8, min_n=3)
        assert c["seeds_effect_family"] == seeds_needed(0.01, sd, 0.05 / 12, 0.8, min_n=3)
        assert c["mde_design"] == pytest.approx(min_detectable_difference(6, sd))
        assert c["power_design"] == pytest.approx(paired_t_power(6, 0.01, sd))
        # the seeds for the margin are the seeds with which a null result reads "no effect seen" (mde <= margin)
        k = c["seeds_effect"]
        if k is not None and k > 3:
            assert min_detectable_difference(k, sd) <= 0.01 < min_detectable_difference(k - 1, sd)
    # a strong effect needs few seeds, and --effect overrides the margin
    strong = [c for c in plan if c["start"] == "ssl_same_pool" and c["usable"]]
    assert all(c["seeds_observed"] <= 6 for c in strong)
    big = seed_plan(rows, effect=0.05)
    assert all(c["effect"] == 0.05 and c["effect_source"] == "--effect" for c in big)
    assert all(b["seeds_effect"] <= c["seeds_effect"] for b, c in zip(big, plan) if c["usable"])
    # with a pilot of 2 seeds nothing is usable
    assert not any(c["usable"] for c in seed_plan(_pilot_rows((0, 1))))
    with pytest.raises(ValueError, match="effect"):
        seed_plan(rows, effect=0)


@pytest.fixture
def study(tmp_path) -> tuple[Path, Path]:
    """A spec with the synthetic table's classification target, starts and challenges, and a pilot folder holding
    that table's rows for seeds 0 to 2 (seeds 0 and 1 only for ssl_other_modality under fraction 0.5)."""
    nib = pytest.importorskip("nibabel")
    entries = []
    rng = np.random.default_rng(0)
    for i in range(12):  # tiny real volumes: `study plan` reads every image to check it
        nib.save(nib.Nifti1Image(rng.random((8, 8, 8), dtype=np.float32), np.eye(4)), tmp_path / f"img{i}.nii.gz")
        entries.append({"image": f"img{i}.nii.gz", "label": int(i % 3 == 0), "patient_id": f"p{i}"})
    dl = {"labels": {"0": "no", "1": "yes"}, "training": entries[:8], "validation": entries[8:10], "test": entries[10:]}
    (tmp_path / "cls.json").write_text(json.dumps(dl))
    (tmp_path / "pool.json").write_text(json.dumps({"unlabeled": entries}))
    spec = {
        "name": "planned",
        "targets": [{"name": "lesion_cls_3d", "data": "cls.json", "task": "classification", "spatial_dims": 3}],
        "starts": ["random", {"name": "ssl_same_pool", "ssl": {"method": "simclr", "data": "pool.json"}},
                   {"name": "ssl_other_modality", "ssl": {"method": "simclr", "data": "pool.json"}}],
        "backbones": ["resnet10"],
        "seeds": [0, 1, 2, 3, 4, 5],
        "challenges": {"label_fractions": [0.5]},
        "equivalence_margin": {"auroc": 0.02},
    }  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    pilot = tmp_path / "pilot"
    store = ResultsStore(pilot)
    for r in _pilot_rows():
        if not (r["challenge"] == "fraction 0.5" and r["start"] == "ssl_other_modality" and r["seed"] == 2):
            store.put(r)
    return tmp_path / "spec.yaml", pilot


def test_pilot_plan_for_a_spec(study):
    spec_path, pilot = study
    raw = yaml.safe_load(spec_path.read_text())
    spec = parse_spec(raw, spec_path.parent)
    plan = pilot_plan(pilot, spec, raw)
    assert plan["design_seeds"] == 6 and plan["n_family"] == 2 * 2 and plan["reference"] == "random"
    assert plan["pilot_seeds"] == [0, 1, 2] and plan["n_rows"] == len(_pilot_rows()) - 2  # both targets lose one row
    auroc = [c for c in plan["comparisons"] if c["metric"] == "auroc"]
    assert all(c["effect"] == 0.02 and c["effect_source"] == "equivalence margin (spec)" for c in auroc)
    in_spec = {(c["challenge"], c["start"]) for c in plan["comparisons"] if c["in_spec"]}
    assert in_spec == {(ch, s) for ch in ("full", "fraction 0.5") for s in ("ssl_same_pool", "ssl_other_modality")}
    (few,) = [c for c in plan["comparisons"] if c["in_spec"] and c["pilot_n"] == 2]
    assert few["challenge"] == "fraction 0.5" and few["start"] == "ssl_other_modality" and not few["usable"]
    assert plan["not_in_pilot"] == []
    lines = format_seed_plan(plan)
    assert "under Holm over this spec's 4 comparisons" in lines[0] and "the spec runs 6 seeds" in lines[0]
    assert any("too few pilot seeds" in line for line in lines)
    assert not any("[not in spec]" in line for line in lines)
    assert "(26 pilot comparison(s) of targets, challenges or starts outside this spec not shown)" in lines
    # a pilot that shares no comparison with the spec: all of them, marked
    other = dict(plan, comparisons=[dict(c, in_spec=False) for c in plan["comparisons"]])
    assert sum("[not in spec]" in line for line in format_seed_plan(other)) == 30


def test_study_plan_pilot_cli(study, capsys):
    from monai_transfer.cli import main

    spec_path, pilot = study
    out = spec_path.parent / "out"
    assert main(["study", "plan", str(spec_path), "--out", str(out), "--pilot", str(pilot)]) == 0
    text = capsys.readouterr().out
    assert "seeds for 80% power, from the pilot" in text
    table = text[text.index("seeds for 80% power") :].splitlines()
    rows = [line.split() for line in table if line.startswith("  lesion_cls_3d")]
    assert len(rows) == 4 and any("too few pilot seeds" in " ".join(r) for r in rows)
    assert "effect: equivalence margin (spec)\n" in text
    assert "to detect the effect in every comparison of the spec:" in text
    assert "too few to estimate the SD of the paired differences" in text
    # --effect: the difference worth detecting
    assert main(["study", "plan", str(spec_path), "--out", str(out), "--pilot", str(pilot), "--effect", "0.05"]) == 0
    assert "effect: --effect" in capsys.readouterr().out
    # a folder without results, and a pilot without the reference
    assert main(["study", "plan", str(spec_path), "--out", str(out), "--pilot", str(out / "nowhere")]) != 0
    for f in (pilot / "results").glob("*.json"):
        if json.loads(f.read_text())["start"] == "random":
            f.unlink()
    assert main(["study", "plan", str(spec_path), "--out", str(out), "--pilot", str(pilot)]) != 0
    assert "no runs of the spec's reference 'random'" in capsys.readouterr().err


@pytest.mark.parametrize("margin, place", [(-0.01, "equivalence_margin"), ("x", "equivalence_margin"),
                                           ({"auroc": float("inf")}, "equivalence_margin.auroc"),
                                           ({"auroc": True}, "equivalence_margin.auroc")])  # fmt: skip
def test_spec_equivalence_margin_is_checked(study, margin, place):
    spec_path, _ = study
    raw = yaml.safe_load(spec_path.read_text())
    assert parse_spec({**raw, "equivalence_margin": 0.02}, spec_path.parent)
    with pytest.raises(SpecError, match=place.replace(".", r"\.")):
        parse_spec({**raw, "equivalence_margin": margin}, spec_path.parent)
