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
