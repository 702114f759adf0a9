"""A study decides precision once per (target, backbone), records it, and forces it into every cell of the pair."""

from __future__ import annotations

import json

import pytest

from monai_transfer.study import precision as SP


def _payloads():
    cells = [("lesions", "resnet10", {}), ("lesions", "resnet10", {"amp": "auto"}), ("tissue", "resnet10", {}),
             ("lesions", "resnet18", {"amp": "off"}), ("lesions", "resnet10", {})]  # fmt: skip
    out = [{"key": {"target": t}, "backbone": b, "finetune": dict(f)} for t, b, f in cells]
    out.append({"key": {"target": "lesions"}, "backbone": "resnet10", "finetune": {}, "probe": {"features": "x"}})
    return out


def test_one_decision_per_target_and_backbone_recorded_and_reused(tmp_path, monkeypatch):
    calls = []

    def decide(payload):
        calls.append((payload["key"]["target"], payload["backbone"], payload["finetune"].get("amp")))
        bf16 = payload["key"]["target"] == "lesions" and payload["finetune"].get("amp") != "off"
        return {"amp": bf16, "dtype": "bfloat16" if bf16 else None, "channels_last": False, "reason": "test"}

    monkeypatch.setattr(SP, "_decide", decide)
    payloads = _payloads()
    decisions = SP.apply_study_precision(payloads, tmp_path, threads=1)
    assert len(calls) == 3  # lesions/resnet10 (auto and unset are one request), tissue/resnet10, lesions/resnet18
    assert set(decisions) == {"lesions|resnet10|auto", "tissue|resnet10|auto", "lesions|resnet18|off"}
    assert [p["finetune"].get("amp") for p in payloads] == ["on", "on", "off", "off", "on", None]
    assert [p.get("precision") for p in payloads] == ["bfloat16", "bfloat16", "float32", "float32", "bfloat16", None]
    assert json.loads((tmp_path / SP.PRECISION_FILE).read_text()) == decisions
    calls.clear()
    again = _payloads()
    SP.apply_study_precision(again, tmp_path, threads=1)  # a resumed study: nothing decided again
    assert calls == [] and [p["finetune"].get("amp") for p in again] == ["on", "on", "off", "off", "on", None]


class _Called(Exception):
    pass


def test_in_study_pretraining_follows_the_cells_amp_unless_its_own_section_sets_one(tmp_path, monkeypatch):
    import monai_transfer.finetune as FT
    import monai_transfer.ssl as SSL
    from monai_transfer.study import parse_spec
    from monai_transfer.study.starts import resolve_start

    entries = [{"image": f"i{i}.nii.gz", "label": i % 2, "patient_id": f"p{i}"} for i in range(6)]
    (tmp_path / "cls.json").write_text(json.dumps({"training": entries[:4], "validation": entries[4:]}))
    (tmp_path / "pool.json").write_text(json.dumps({"unlabeled": entries}))

    def called(**kwargs):
        raise _Called(kwargs.get("amp"))

    monkeypatch.setattr(SSL, "pretrain", called)
    monkeypatch.setattr(FT, "finetune", called)
    spec = parse_spec({
        "targets": [{"name": "t", "data": "cls.json", "task": "classification", "spatial_dims": 3}],
        "starts": ["random", {"name": "ssl", "ssl": {"method": "simclr", "data": "pool.json"}},
                   {"name": "sup", "supervised": {"data": "cls.json", "amp": "on"}}],
        "backbones": ["resnet10"], "seeds": [0], "finetune": {"amp": "off"},
    }, tmp_path)  # fmt: skip
    seen = {}
    for start in spec.starts[1:]:
        with pytest.raises(_Called) as err:
            resolve_start(spec, start, "resnet10", 3, tmp_path / "out")
        seen[start.name] = err.value.args[0]
    assert seen == {"ssl": "off", "sup": "on"}
