"""A study decides precision once per (target, backbone), records it, and forces it into every cell of the pair."""

from __future__ import annotations

import json

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
