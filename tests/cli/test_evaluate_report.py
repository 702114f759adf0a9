"""``monai-transfer evaluate`` on a 2D classification of several slices per patient (issue 12).

* The decision behind ``accuracy`` is reported (``threshold``, ``threshold_rule``) with the majority-class baseline
  beside it: by default the run's own (chosen on its validation section), or a rule given with ``--threshold``.
* Confidence intervals resample patients (the datalist's ``patient_id``) when a patient has several cases, say how
  many independent units they rest on (``n_units``) and warn when those are few.
"""

from __future__ import annotations

import json

import pytest

from monai_transfer.cli import main
from monai_transfer.data import make_demo_data
from monai_transfer.finetune import finetune


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcls")
    demo = make_demo_data(root / "demo", n_subjects=12, size=32, n_unlabeled=1, seed=0)
    seg = json.loads(open(demo["tissue_seg_2d"]).read())
    datalist = {k: v for k, v in seg.items() if not isinstance(v, list)}
    datalist.pop("labels", None)
    for section in ("training", "validation", "test"):
        # slices of a patient become classification cases; both classes in every section
        datalist[section] = [
            {"image": e["image"], "label": i % 2, "patient_id": e["patient_id"]} for i, e in enumerate(seg[section])
        ]
    path = root / "demo" / "slice_cls_2d.json"
    path.write_text(json.dumps(datalist))
    out = root / "ft"
    finetune(
        backbone="resnet10", pretrained=None, task="classification", strategy="full", label_fraction=1.0, seed=0,
        datalist=path, out_dir=out, epochs=1, batch_size=8, lr=1e-3, tensorboard=False,
    )  # fmt: skip
    return out, path, datalist, root


def test_decision_threshold_and_majority_baseline(run, capsys):
    ckpt, path, datalist, root = run
    decision = json.loads((ckpt / "models" / "decision.json").read_text())  # chosen by the run on validation
    assert main(["evaluate", str(ckpt), "--data", str(path), "--out", str(root / "plain.json")]) == 0
    plain = json.loads((root / "plain.json").read_text())
    n1 = sum(e["label"] for e in datalist["test"])
    assert plain["threshold"] == decision["threshold"] and plain["threshold_rule"] == "youden"
    assert plain["majority_baseline"] == pytest.approx(max(n1, len(datalist["test"]) - n1) / len(datalist["test"]))
    assert plain["accuracy"] == plain["summary"]["accuracy"] and "accuracy_at_0.5" in plain
    capsys.readouterr()
    args = ["evaluate", str(ckpt), "--data", str(path), "--threshold", "argmax", "--out", str(root / "half.json")]
    assert main(args) == 0
    half = json.loads((root / "half.json").read_text())
    assert half["threshold"] == 0.5 and half["accuracy"] == pytest.approx(plain["accuracy_at_0.5"])
    args = ["evaluate", str(ckpt), "--data", str(path), "--threshold", "f1", "--out", str(root / "tuned.json")]
    assert main(args) == 0
    tuned = json.loads((root / "tuned.json").read_text())
    assert tuned["threshold_rule"] == "f1" and 0 <= tuned["threshold"] <= 1
    # choosing the threshold on the section it reports is refused
    bad = ["evaluate", str(ckpt), "--data", str(path), "--threshold", "youden", "--threshold-section", "test"]
    assert main(bad) == 2
    assert "threshold" in capsys.readouterr().err
    # a temperature fitted on validation: recorded with the result, ranking unchanged
    args = ["evaluate", str(ckpt), "--data", str(path), "--calibrate", "temperature", "--out", str(root / "t.json")]
    assert main(args) == 0
    scaled = json.loads((root / "t.json").read_text())
    assert scaled["summary"]["temperature"] > 0 and scaled["threshold_rule"] == "youden"
    assert scaled["summary"]["auroc"] == pytest.approx(plain["summary"]["auroc"])
    assert main([*args[:-2], "--threshold-section", "test"]) == 2  # nor a temperature fitted on the scored cases
    assert "temperature" in capsys.readouterr().err


def test_intervals_resample_patients_and_warn_when_few(run, capsys):
    ckpt, path, datalist, root = run
    assert main(["evaluate", str(ckpt), "--data", str(path), "--out", str(root / "ci.json")]) == 0
    captured = capsys.readouterr()
    saved = json.loads((root / "ci.json").read_text())
    patients = {e["patient_id"] for e in datalist["test"]}
    assert len(patients) < len(datalist["test"])  # several slices per patient
    ci = saved["summary"]["accuracy_ci95"]
    assert ci["n_units"] == len(patients) and ci["unit"] == "patient_id" and ci["n_cases"] == len(datalist["test"])
    assert [c["patient_id"] for c in saved["cases"]] == [e["patient_id"] for e in datalist["test"]]
    assert "independent" in captured.err and "patient" in captured.err  # few units: warned


def test_cases_are_named_by_id_with_class_names(run, tmp_path):
    ckpt, path, datalist, root = run
    named = dict(datalist, labels={"0": "even", "1": "odd"})
    named["test"] = [dict(e, id=f"case-{i:02d}") for i, e in enumerate(datalist["test"])]
    dl = root / "demo" / "slice_cls_named.json"  # beside the images: relative paths resolve
    dl.write_text(json.dumps(named))
    assert main(["evaluate", str(ckpt), "--data", str(dl), "--out", str(tmp_path / "named.json")]) == 0
    saved = json.loads((tmp_path / "named.json").read_text())
    assert [c["id"] for c in saved["cases"]] == [e["id"] for e in named["test"]]
    assert saved["class_names"] == ["even", "odd"]
    for c, e in zip(saved["cases"], named["test"]):
        assert c["label_name"] == ("odd" if e["label"] else "even")
        assert c["predicted_name"] in ("even", "odd") and c["predicted"] in (0, 1)
    # without ids the image's file name (never a local path) names the case
    assert main(["evaluate", str(ckpt), "--data", str(path), "--out", str(tmp_path / "plain.json")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert [c["id"] for c in plain["cases"]] == [e["image"].rsplit("/", 1)[-1] for e in datalist["test"]]


def _bad_runs(ckpt, tmp_path):
    """Copies of the run folder whose weights file is random bytes, truncated, or a state dict missing a key."""
    import os
    import shutil

    import torch

    from monai_transfer.cli._common import run_weights_file

    weights = os.path.relpath(run_weights_file(ckpt), ckpt)
    good = (ckpt / weights).read_bytes()
    payload = torch.load(ckpt / weights, weights_only=True)
    net = dict(payload.get("network", payload))
    net.pop(sorted(net)[0])
    variants = {
        "random": (b"\x13" + os.urandom(4095), "not a readable checkpoint"),
        "truncated": (good[: len(good) // 2], "not a readable checkpoint"),
        "edited": ({**payload, "network": net} if "network" in payload else net, "not fit"),
    }
    out = {}
    for name, (content, reason) in variants.items():
        run = tmp_path / f"run_{name}"
        shutil.copytree(ckpt, run)
        if isinstance(content, bytes):
            (run / weights).write_bytes(content)
        else:
            torch.save(content, run / weights)
        out[run / weights] = reason
    return out


@pytest.mark.parametrize("command", ["evaluate", "robustness"])
def test_bad_checkpoints_are_named_in_one_line(run, tmp_path, capsys, command):
    ckpt, path, datalist, root = run
    for bad, reason in _bad_runs(ckpt, tmp_path).items():
        out = tmp_path / f"out_{bad.parent.name}"
        for arg in {str(bad.parent) if bad.name == "best_model.pt" else str(bad.parent.parent), str(bad)}:
            args = [command, arg, "--data", str(path), "--out", str(out)]
            if command == "robustness":
                args += ["--corruption", "blur", "--severity", "1", "--quiet"]
            capsys.readouterr()
            assert main(args) == 2, (bad, arg)
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and str(bad) in err and reason in err, err
            assert len(err.splitlines()) == 1 and "Traceback" not in err
            assert not out.exists()


def test_help_of_evaluation_commands(capsys):
    # issue 12: options without help or default, "(default: None)" on required options, a literal "95%%"
    import argparse

    from monai_transfer.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("evaluate", "rank", "robustness"):
        p = sub.choices[name]
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help text"
        text = p.format_help()
        assert "(default: None)" not in text and "%%" not in text, name
    assert "(default: logme)" in sub.choices["rank"].format_help()
    assert "(default: test)" in sub.choices["evaluate"].format_help()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "95%" in capsys.readouterr().out


def test_long_commands_show_progress(run, tmp_path, capsys):
    ckpt, path, datalist, root = run
    args = ["robustness", str(ckpt), "--data", str(path), "--corruption", "blur", "--severity", "1",
            "--out", str(tmp_path / "rob")]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "robustness" in err and "2/2" in err
    assert main(["rank", "--candidate", "resnet10", "--data", str(path), "--spatial-dims", "2"]) == 0
    captured = capsys.readouterr()
    assert "rank" in captured.err and "1/1" in captured.err
    assert "48 target cases" in captured.out


def test_evaluate_keeps_the_runs_decision_unless_asked_to_choose_again():
    from monai_transfer.finetune.evaluate_run import _decision_plan

    recorded = {"rule": "f1", "threshold": 0.3, "temperature": 1.7}
    assert _decision_plan("run", "run", False, recorded) is None  # the run's own, unchanged
    again = _decision_plan("run", "none", False, recorded)  # its rule, chosen again without the temperature
    assert again == {"rule": "f1", "calibrate": "none", "one_vs_rest": False, "chosen_on_validation": True}
    assert _decision_plan("run", "run", False, {})["rule"] == "youden"  # a run that recorded nothing
    multi = _decision_plan("run", "run", True, {"rule": "argmax", "threshold": None})
    assert multi["rule"] == "youden" and multi["one_vs_rest"] and multi["chosen_on_validation"]
    fixed = _decision_plan(0.3, "run", False, recorded)  # a fixed threshold needs no validation, the temperature does
    assert fixed["calibrate"] == "temperature" and fixed["chosen_on_validation"]
    assert not _decision_plan(0.3, "none", False, recorded)["chosen_on_validation"]
