"""evaluate_robustness: reproducible for a seed, drops grow with severity, table/JSON/PNG outputs, 2D and 3D."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_transfer.evaluation.robustness import evaluate_robustness, mean_over_cases


def _cases(shape: tuple[int, ...], n: int = 4) -> list[dict]:
    r = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = r.normal(0, 0.05, shape).astype(np.float32)
        sl = tuple(slice(s // 4, 3 * s // 4) for s in shape)
        x[sl] += 1.0
        out.append({"image": x[None], "label": (x > 0.5).astype(np.int64)[None], "id": i})
    return out


def _dice(pred: np.ndarray, lab: np.ndarray) -> float:
    inter = float((pred * lab).sum())
    return 2 * inter / max(float(pred.sum() + lab.sum()), 1.0)


def predict(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) > 0.5).astype(np.int64)


@pytest.mark.parametrize("shape", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
def test_robustness_report(shape: tuple[int, ...], tmp_path) -> None:
    cases = _cases(shape)
    kw = {"corruptions": ["gaussian_noise", "motion_ghosting"], "severities": (1, 3, 5)}
    rep = evaluate_robustness(predict, cases, mean_over_cases(_dice), seed=0, out_dir=tmp_path, **kw)
    again = evaluate_robustness(predict, cases, mean_over_cases(_dice), seed=0, **kw)
    other = evaluate_robustness(predict, cases, mean_over_cases(_dice), seed=1, **kw)
    assert rep.rows == again.rows
    assert [r["metric"] for r in rep.rows] != [r["metric"] for r in other.rows]
    assert rep.clean > 0.95 and len(rep.rows) == 6
    noise = [r["drop"] for r in rep.rows if r["corruption"] == "gaussian_noise"]
    assert noise[0] <= noise[1] <= noise[2] and noise[2] > 0.005
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert data["clean"] == pytest.approx(rep.clean) and len(data["rows"]) == 6 and "mean" in data["mean_drop"]
    assert "gaussian_noise" in (tmp_path / "robustness.md").read_text()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "robustness.png").stat().st_size > 1000


def test_robustness_tuples_and_errors() -> None:
    cases = [(c["image"], c["label"]) for c in _cases((16, 16), 2)]
    rep = evaluate_robustness(predict, cases, mean_over_cases(_dice), corruptions=["blur"], severities=(2,))
    assert rep.rows[0]["corruption"] == "blur" and rep.rows[0]["severity"] == 2
    assert "blur" in rep.to_table()
    with pytest.raises(ValueError, match="unknown corruption"):
        evaluate_robustness(predict, cases, mean_over_cases(_dice), corruptions=["nope"])
    with pytest.raises(ValueError, match="no cases"):
        evaluate_robustness(predict, [], mean_over_cases(_dice))
