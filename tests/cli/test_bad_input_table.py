"""Every command, fed each kind of bad input: exit code 2, one message naming the file, the output folder unchanged.

Issue 12: a truncated ``.nii.gz`` gave 80 to 283 lines of traceback from every command (and ``finetune`` aborted with
exit 134 after its one-line error); a NaN image and a 2D image in a 3D list gave tracebacks without the file's name;
bad checkpoints gave raw ``state_dict`` / ``PytorchStreamReader`` errors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_transfer.cli import main
from monai_transfer.data import make_demo_data

NET = ["--backbone-arg", "widen_factor=0.25"]


def _with_bad_first_case(datalist: str, dst, bad: str) -> str:
    """A copy of ``datalist`` (absolute paths) whose first case of every section is ``bad``."""
    base = os.path.dirname(datalist)
    obj = json.loads(open(datalist).read())
    for rows in obj.values():
        if isinstance(rows, list):
            for r in rows:
                for k, v in r.items():
                    if isinstance(v, str) and v.startswith("./"):
                        r[k] = os.path.join(base, v[2:])
            rows[0]["image"] = bad
    dst.write_text(json.dumps(obj))
    return str(dst)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("badtable")
    demo = make_demo_data(root / "demo", n_subjects=12, size=32, n_unlabeled=1, seed=0)
    clean = demo["lesion_cls_3d"]
    first = json.loads(open(clean).read())["training"][0]["image"]
    src = os.path.join(os.path.dirname(clean), first[2:])
    img = nib.load(src)
    bad = root / "bad"
    bad.mkdir()
    raw = open(src, "rb").read()
    (bad / "truncated_T1w.nii.gz").write_bytes(raw[: len(raw) // 2])
    arr = np.asarray(img.dataobj, dtype=np.float32).copy()
    arr[4, 4, 4] = np.nan
    nib.save(nib.Nifti1Image(arr, img.affine), str(bad / "nan_T1w.nii.gz"))
    nib.save(nib.Nifti1Image(arr[:, :, 16] * 0 + 1, img.affine), str(bad / "slice2d_T1w.nii.gz"))
    (bad / "random.pt").write_bytes(os.urandom(4096))
    lists = {kind: _with_bad_first_case(clean, bad / f"{kind}.json", str(bad / f"{kind}_T1w.nii.gz"))
             for kind in ("truncated", "nan", "slice2d")}  # fmt: skip
    run = root / "run"
    args = ["finetune", "--backbone", "resnet10", "--task", "classification", "--data", clean, "--out", str(run),
            "--epochs", "1", "--batch-size", "4", "--quiet", "--no-tensorboard", "--no-bundle", *NET]  # fmt: skip
    assert main(args) == 0
    broken_run = root / "broken_run"
    shutil.copytree(run, broken_run)
    (broken_run / "models" / "model.pt").write_bytes(os.urandom(4096))
    return {"root": root, "clean": clean, "lists": lists, "bad": bad, "run": str(run), "broken_run": str(broken_run)}


def _commands(s, data: str, out: str, run: str, pretrained: str | None = None) -> dict[str, list[str]]:
    ft = ["finetune", "--backbone", "resnet10", "--task", "classification", "--data", data, "--out", out, "--epochs",
          "1", "--batch-size", "4", "--quiet", *NET] + (["--pretrained", pretrained] if pretrained else [])  # fmt: skip
    return {
        "finetune": ft,
        "evaluate": ["evaluate", run, "--data", data, "--out", os.path.join(out, "metrics.json")],
        "robustness": ["robustness", run, "--data", data, "--out", out, "--corruption", "blur", "--severity", "1"],
        "pretrain": ["pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", "3", "--modality",
                     "mr", "--data", data, "--section", "training", "--out", out, "--epochs", "1", "--batch-size", "4",
                     *NET, "--quiet", "--no-tensorboard"] + (["--pretrained", pretrained] if pretrained else []),
        "rank": ["rank", "--candidate", f"resnet10:{pretrained}" if pretrained else "resnet10", "--data", data,
                 "--spatial-dims", "3", "--out", os.path.join(out, "rank.json"), "--quiet"],  # fmt: skip
    }


def _tree(path: str) -> dict[str, int] | None:
    if not os.path.exists(path):
        return None
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs}


COMMANDS = ("finetune", "evaluate", "robustness", "rank", "pretrain")
CASES = [(cmd, kind) for kind in ("truncated", "nan", "slice2d", "checkpoint") for cmd in COMMANDS]


@pytest.mark.parametrize("command,kind", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_bad_input_exits_2_naming_the_file_and_writes_nothing(setup, command, kind, capsys, tmp_path):
    out = str(tmp_path / "out")
    if kind == "checkpoint":
        data, run, named = setup["clean"], setup["broken_run"], "model.pt"
        pretrained = str(setup["bad"] / "random.pt") if command in ("finetune", "rank", "pretrain") else None
        named = "random.pt" if pretrained else named
    else:
        data, run, pretrained, named = setup["lists"][kind], setup["run"], None, f"{kind}_T1w.nii.gz"
    argv = _commands(setup, data, out, run, pretrained)[command]
    before = _tree(setup["run"])
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("error: ") and named in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert _tree(out) is None, f"{command} wrote {out} although it failed"
    assert _tree(setup["run"]) == before  # the evaluated run is untouched


def test_finetune_on_a_truncated_image_exits_2_not_134(setup, tmp_path):
    # as a user runs it: a separate process, TensorBoard on (its writer thread made the exit abort)
    cmd = [sys.executable, "-m", "monai_transfer.cli", *_commands(setup, setup["lists"]["truncated"],
           str(tmp_path / "o"), setup["run"])["finetune"]]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "truncated_T1w.nii.gz cannot be read" in proc.stderr and "terminate called" not in proc.stderr


def test_pretrain_names_a_nan_image_beyond_the_checked_sample(setup, tmp_path, capsys):
    # the data check looks at a sample of 8 images; a NaN in the last one used to surface as a NaN loss
    obj = json.loads(open(setup["clean"]).read())
    base = os.path.dirname(setup["clean"])
    rows = [{"image": os.path.join(base, e["image"][2:])} for s in ("training", "validation", "test") for e in obj[s]]
    rows[-1] = {"image": str(setup["bad"] / "nan_T1w.nii.gz")}
    data = tmp_path / "pool.json"
    data.write_text(json.dumps({"unlabeled": rows}))
    out = tmp_path / "o"
    argv = ["pretrain", "--method", "simclr", "--backbone", "resnet10", "--spatial-dims", "3", "--modality", "mr",
            "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "4", *NET, "--quiet",
            "--no-tensorboard"]  # fmt: skip
    assert len(rows) > 8 and main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nan_T1w.nii.gz" in err[-1] and "NaN" in err[-1], err[-3:]


# -- issue 21: tracebacks and late checks; one sentence naming the file, before the work starts ------------------------
def _last_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err[-3000:]
    assert lines and lines[-1].startswith("error: "), lines[-5:]
    return lines[-1]


@pytest.fixture(scope="module")
def bundle(setup):
    from monai_transfer.bundle import bundle_from_run

    return str(bundle_from_run(setup["run"], setup["root"] / "bundle"))


def _images(setup, folder, n: int = 2):
    folder.mkdir()
    src = os.path.join(os.path.dirname(setup["clean"]), "images")
    for name in sorted(os.listdir(src))[:n]:
        shutil.copy(os.path.join(src, name), folder / name)
    return folder


def test_infer_names_a_bad_image_and_still_predicts_the_others(setup, bundle, tmp_path, capfd):
    images = _images(setup, tmp_path / "images")
    shutil.copy(setup["bad"] / "truncated_T1w.nii.gz", images / "truncated_T1w.nii.gz")
    out = tmp_path / "pred"
    code = main(["infer", bundle, "--images", str(images), "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 1  # some predictions written, some images skipped
    assert "truncated_T1w.nii.gz" in _last_error(err)
    assert len(err.strip().splitlines()) < 8, err  # was about 100 lines with two tracebacks
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2
    skipped = json.loads((out / "skipped.json").read_text())
    assert [os.path.basename(s["image"]) for s in skipped["skipped"]] == ["truncated_T1w.nii.gz"]
    assert skipped["n_predicted"] == 2


def test_infer_on_an_empty_folder_is_an_error_and_writes_nothing(bundle, tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "pred"
    assert main(["infer", bundle, "--images", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "holds no image" in _last_error(capfd.readouterr().err)
    assert not out.exists()


def test_study_run_on_a_folder_says_so(setup, tmp_path, capsys):
    assert main(["study", "run", str(setup["bad"]), "--out", str(tmp_path / "study")]) == 2
    assert "is a folder, not a study spec file" in _last_error(capsys.readouterr().err)


@pytest.mark.parametrize("damage", ["truncated", "malicious"])
def test_resume_from_an_unreadable_checkpoint_names_it_and_what_to_do(setup, tmp_path, capfd, damage):
    run = tmp_path / "run"
    shutil.copytree(setup["run"], run)
    last = run / "checkpoints" / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:5000])
    else:
        torch.save({"network": {}, "hook": _Payload()}, last)
    (run / "result.json").unlink()  # a killed run: it resumes from last.pt
    argv = ["finetune", "--backbone", "resnet10", "--task", "classification", "--data", setup["clean"], "--out",
            str(run), "--epochs", "1", "--batch-size", "4", "--quiet", "--no-tensorboard", "--no-bundle", *NET,
            "--resume", "auto"]  # fmt: skip
    assert main(argv) == 2
    line = _last_error(capfd.readouterr().err)
    assert str(last) in line and "--overwrite" in line
    if damage == "malicious":
        assert f"{os.system.__module__}.system" in line  # the blocked global, not "corrupt or truncated"


class _Payload:  # what a malicious pickle holds: a call torch.load(weights_only=True) refuses
    def __reduce__(self):
        return (os.system, ("echo this would run at load time",))


def test_a_malicious_pretrained_file_names_the_blocked_global(setup, tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _Payload()}, evil)
    argv = _commands(setup, setup["clean"], str(tmp_path / "o"), setup["run"], str(evil))["finetune"]
    assert main(argv) == 2
    line = _last_error(capsys.readouterr().err)
    assert f"{os.system.__module__}.system" in line and "truncated" not in line


def _absolute(datalist: str) -> dict:
    """The datalist with its relative paths made absolute (to be written elsewhere)."""
    obj = json.loads(open(datalist).read())
    base = os.path.dirname(datalist)
    for rows in obj.values():
        for r in rows if isinstance(rows, list) else []:
            r.update({k: os.path.join(base, v[2:]) for k, v in r.items() if isinstance(v, str) and v.startswith("./")})
    return obj


def test_a_bad_test_image_is_named_before_training(setup, tmp_path, capsys):
    obj = _absolute(setup["clean"])
    obj["test"][0]["image"] = str(setup["bad"] / "truncated_T1w.nii.gz")
    data = tmp_path / "test_bad.json"
    data.write_text(json.dumps(obj))
    out = tmp_path / "o"
    assert main(_commands(setup, str(data), str(out), setup["run"])["finetune"]) == 2
    line = _last_error(capsys.readouterr().err)
    assert "truncated_T1w.nii.gz" in line and "[test]" in line
    assert _tree(str(out)) is None  # nothing trained


@pytest.mark.parametrize("command", COMMANDS)
def test_data_given_an_empty_folder_says_it_is_empty(setup, command, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "out")
    assert main(_commands(setup, str(empty), out, setup["run"])[command]) == 2
    line = _last_error(capsys.readouterr().err)
    assert f"{empty} is an empty folder" in line and "not found" not in line
    assert _tree(out) is None


def _study(tmp_path, data: str) -> list[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: bad\nmetric: auroc\nreference: random\nseeds: [0]\nstarts: [random]\nbackbones: [resnet10]\n"
        "strategies: [full]\nfinetune: {epochs: 1, batch_size: 4, backbone_kwargs: {widen_factor: 0.25}}\n"
        f"targets:\n  - {{name: les, data: {data}, task: classification, spatial_dims: 3}}\n"
    )
    return ["study", "run", str(spec), "--out", str(tmp_path / "study"), "--no-progress"]


@pytest.mark.parametrize("kind", ["nan", "label"])
def test_a_study_names_a_bad_image_or_label_in_the_users_datalist_before_any_cell(setup, tmp_path, capsys, kind):
    obj = _absolute(setup["clean"])
    if kind == "nan":
        obj["test"][0]["image"] = str(setup["bad"] / "nan_T1w.nii.gz")
    else:
        obj["training"][1]["label"] = 7
    data = tmp_path / "mine.json"
    data.write_text(json.dumps(obj))
    assert main(_study(tmp_path, str(data))) == 2
    line = _last_error(capsys.readouterr().err)
    assert "mine.json" in line and "seed0.json" not in line
    assert ("nan_T1w.nii.gz" in line) if kind == "nan" else ("label 7" in line)
    assert not list((tmp_path / "study").rglob("result.json"))  # no cell ran
