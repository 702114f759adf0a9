"""A fine-tuned checkpoint under corruptions: deterministic for a seed, clean metric equal to ``evaluate``."""

from __future__ import annotations

import json

import pytest

from monai_transfer.data import make_demo_data
from monai_transfer.evaluation import checkpoint_robustness
from monai_transfer.finetune import evaluate, finetune


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    demo = make_demo_data(root / "demo", n_subjects=8, size=32, n_unlabeled=1, seed=0)
    out = root / "ft"
    finetune(
        backbone="resnet10", pretrained=None, task="segmentation", strategy="full", label_fraction=1.0, seed=0,
        datalist=demo["tissue_seg_2d"], out_dir=out, epochs=2, batch_size=4, lr=3e-3, tensorboard=False,
        backbone_kwargs={"no_max_pool": True}, head_kwargs={"feature_size": 8},
    )  # fmt: skip
    return out, demo["tissue_seg_2d"], root


def test_report_is_deterministic_and_written(run):
    ckpt, datalist, root = run
    kwargs = dict(corruptions=["gaussian_noise", "motion_ghosting"], severities=(1, 5), section="test")
    a = checkpoint_robustness(ckpt, datalist, seed=3, out_dir=root / "rob", **kwargs)
    one = dict(corruptions=["gaussian_noise"], severities=(5,), section="test")
    b = checkpoint_robustness(ckpt, datalist, seed=3, **one)
    c = checkpoint_robustness(ckpt, datalist, seed=4, **one)
    assert b.rows[0]["metric"] == a.rows[1]["metric"]  # same seed, same corrupted images, same metric
    assert c.rows[0]["metric"] != a.rows[1]["metric"]
    assert a.clean == pytest.approx(evaluate(ckpt, datalist, section="test")["mean_dice"], abs=1e-6)
    assert [(r["corruption"], r["severity"]) for r in a.rows] == [
        ("gaussian_noise", 1), ("gaussian_noise", 5), ("motion_ghosting", 1), ("motion_ghosting", 5)
    ]  # fmt: skip
    for r in a.rows:
        assert r["drop"] == pytest.approx(a.clean - r["metric"])
    saved = json.loads((root / "rob" / "robustness.json").read_text())
    assert saved["clean"] == pytest.approx(a.clean)
    assert (root / "rob" / "robustness.md").read_text().startswith("clean:")
    assert not [p for p in (root / "rob").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_unknown_corruption_is_refused(run):
    ckpt, datalist, _ = run
    with pytest.raises(ValueError, match="unknown corruption 'snow'"):
        checkpoint_robustness(ckpt, datalist, corruptions=["snow"], severities=(1,))
