"""The base install, as a newcomer makes it (issue 21): a fresh virtual environment that does not see this one's
packages, the install steps of ``scripts/quickstart.sh`` run as written (``torch``/``torchvision`` pins, then
``pip install -e .``, no extras), then

* the README's "Command line" block, line by line and in order, in an empty folder (``readme_commands`` of
  ``test_readme_commands.py``; this replaces running the block in the test environment, which has every extra
  installed and so never saw a base install fail);
* a shipped bundle's ``train.json`` through ``python -m monai.bundle run`` (its published weights stood in by a file in
  the publisher's layout, fetched by MONAI's ``download_large_files`` from ``file://``).

The environment is cached in ``~/.cache/monai_transfer_tests`` (or ``$MONAI_TRANSFER_TEST_CACHE``) under a key of
what decides its content: the quickstart's install steps, ``setup.cfg``, ``pyproject.toml`` and the Python version. A
new key builds a new one from scratch (and removes the old one: each is about 5 GB, torch's CUDA wheels included);
on every run the quickstart's install steps run again in it, which re-points the editable install at this checkout
and installs anything missing. Measured on 2 cores (2026-12-07): creating it took 7 min (15 min under heavy other
load; about 8 GB on disk), a cached one 8 to 30 s.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_readme_commands import readme_commands

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scripts" / "quickstart.sh"
MAIN_JOB = "monai-transfer study run"
MARKER = ".monai_transfer_fresh_install.json"
BUNDLE = "resnet50_imagenet_cls2d"


def _cache_dir() -> Path:
    return Path(os.environ.get("MONAI_TRANSFER_TEST_CACHE", Path.home() / ".cache" / "monai_transfer_tests"))


def quickstart_install() -> str:
    """``scripts/quickstart.sh`` less its last line, the main job: the install steps as written."""
    lines = QUICKSTART.read_text().rstrip("\n").splitlines()
    assert lines[-1].startswith(MAIN_JOB), f"scripts/quickstart.sh no longer ends with '{MAIN_JOB} ...'"
    assert not any(line.startswith(MAIN_JOB) for line in lines[:-1])
    assert any("pip install" in line and "-e ." in line for line in lines), "the quickstart no longer installs '.'"
    return "\n".join(lines[:-1]) + "\n"


def environment_key() -> str:
    h = hashlib.sha256(quickstart_install().encode())
    for name in ("setup.cfg", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def venv_env(venv: Path) -> dict[str, str]:
    """This process's environment (the suite's cache and fp32 settings included) with the venv activated."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONUSERBASE")
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another session's set-up or use of the same venv waits here
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd, log: Path, **kwargs) -> None:
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd!r} failed; the last lines of {log}:\n" + log.read_text()[-4000:]


@pytest.fixture(scope="module")
def fresh_venv() -> Iterator[Path]:
    cache = _cache_dir()
    venv = cache / f"fresh-venv-{environment_key()}"
    with _locked(cache / "fresh-venv.lock"):
        log = cache / f"{venv.name}.log"  # this run's install output
        log.write_text("")
        if not (venv / MARKER).is_file():
            for old in cache.glob("fresh-venv-*"):  # other keys' environments, and an interrupted set-up of this one
                if old.is_dir():
                    shutil.rmtree(old)
                elif old != log:
                    old.unlink()
            start = time.monotonic()
            _run([sys.executable, "-m", "venv", str(venv)], log, timeout=300)  # no --system-site-packages
            created = True
        else:
            start, created = time.monotonic(), False
        # the quickstart's install steps, as written: bash -c TEXT quickstart.sh sets $0, so its 'cd' works
        _run(["bash", "-c", quickstart_install(), str(QUICKSTART)], log, env=venv_env(venv), timeout=1800)
        seconds = time.monotonic() - start
        if created:
            record = {"key": environment_key(), "install_s": round(seconds), "python": sys.version}
            (venv / MARKER).write_text(json.dumps(record))
        print(f"fresh venv {'created and installed' if created else 'reused, install steps rerun'} in {seconds:.0f} s")
        python = venv / "bin" / "python"
        probe = "import json, sys, monai_transfer; print(json.dumps([sys.path, monai_transfer.__file__]))"
        out = subprocess.run([str(python), "-c", probe], env=venv_env(venv), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        path, package = json.loads(out.stdout)
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        assert not ours & set(path), "the fresh venv sees this environment's site-packages"
        assert Path(package).resolve().is_relative_to(ROOT), package  # the editable install is this checkout
        yield venv


def test_readme_command_block_runs_as_written_after_the_quickstart_install(fresh_venv, tmp_path):
    env = venv_env(fresh_venv)
    assert Path(shutil.which("monai-transfer", path=env["PATH"])).parent == fresh_venv / "bin"
    for command in readme_commands():
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    # what the lines promise is there
    assert (tmp_path / "runs" / "simclr" / "bundle" / "configs" / "train.json").is_file()
    assert list((tmp_path / "runs" / "lpft" / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((tmp_path / "runs" / "lpft" / "predictions").glob("*_seg.nii.gz"))
    assert list((tmp_path / "runs" / "mb_predictions").glob("*_seg.nii.gz"))
    assert (tmp_path / "runs" / "resnet18_cxr" / "large_files.yml").is_file()


def _published_helpers():
    spec = importlib.util.spec_from_file_location("published", ROOT / "tests" / "bundle" / "published.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_bundle_trains_with_monai_bundle_run_after_the_quickstart_install(fresh_venv, tmp_path):
    import yaml
    from monai.bundle import download_large_files

    from monai_transfer.data import make_demo_data

    published = _published_helpers()
    bundle = tmp_path / BUNDLE
    shutil.copytree(ROOT / "bundles" / BUNDLE, bundle)
    # the starting weights: a stand-in in torchvision's layout, fetched and hash-checked from file:// by MONAI
    (entry,) = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    source = json.loads((bundle / "configs" / "train.json").read_text())["network_def"]["pretrained_source"]
    published.point_large_files_at(bundle, {Path(entry["path"]).name: published.build_published(source, tmp_path)})
    download_large_files(bundle_path=str(bundle))
    # 2D slices of the demo data, alternating labels
    demo = tmp_path / "demo"
    make_demo_data(demo, n_subjects=4, size=32, n_unlabeled=0, seed=0)
    slices = json.loads((demo / "tissue_seg_2d.json").read_text())
    sizes = {"training": 4, "validation": 2, "test": 2}
    cls = {s: [{"image": r["image"], "label": i % 2} for i, r in enumerate(slices[s])][:n] for s, n in sizes.items()}
    (demo / "cls_2d.json").write_text(json.dumps({"labels": {"0": "normal", "1": "pneumonia"}, **cls}))

    cmd = ["python", "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(demo), "--datalist", str(demo / "cls_2d.json"),
           "--batch_size", "2", "--train#trainer#max_epochs", "1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=venv_env(fresh_venv), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (bundle / "models" / "model.pt").is_file()
    assert list((bundle / "tensorboard").rglob("events.out.tfevents.*"))
