"""The ``pretrain`` examples of the README and ``docs/ssl.md`` run as written on the data the README's steps produce
(``monai-transfer data demo --out demo``: 24 unlabeled scans), with only the epochs shortened and the paths moved
into a temporary folder (issue 12: the README's batch of 32 could not be filled by 24 demo images)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from monai_transfer.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("readme") / "demo"
    assert main(["data", "demo", "--out", str(out)]) == 0  # the README's step, with its defaults
    return out


def _commands(text: str) -> list[str]:
    """The ``monai-transfer pretrain --method ...`` commands of a markdown text, continuation lines joined and comments
    dropped."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("monai-transfer pretrain --method"):
            continue
        command = ""
        for part in lines[i:]:
            part = re.sub(r"\s+#.*$", "", part)
            command += " " + part.rstrip("\\ ").strip()
            if not part.rstrip().endswith("\\"):
                break
        out.append(command.strip())
    return out


def _localise(command: str, demo: Path, runs: Path) -> list[str]:
    argv = shlex.split(command)[1:]
    argv = [a.replace("demo/", f"{demo}/").replace("runs/", f"{runs}/") for a in argv]
    argv[argv.index("--epochs") + 1] = "1"
    return [*argv, "--quiet", "--no-tensorboard"]


@pytest.mark.parametrize("doc", ["README.md", "docs/ssl.md"])
def test_the_pretrain_command_runs_as_written(doc, demo, tmp_path):
    commands = _commands((ROOT / doc).read_text())
    assert commands, f"no pretrain command found in {doc}"
    argv = _localise(commands[0], demo, tmp_path / "runs")
    assert main(argv) == 0, argv
    out = Path(argv[argv.index("--out") + 1])
    assert json.loads((out / "result.json").read_text())["iterations"] >= 1


def test_the_yaml_example_runs_as_written(demo, tmp_path):
    text = (ROOT / "docs" / "ssl.md").read_text()
    block = re.search(r"```yaml\n(method:.*?)```", text, re.S).group(1)
    values = yaml.safe_load(block.replace("demo/", f"{demo}/").replace("runs/", f"{tmp_path}/runs/"))
    assert values["monitor_data"] and values["spatial_dims"] == 3  # the monitor's datalist is 3D
    values.update(epochs=1, progress=False, tensorboard=False)
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["pretrain", "--config", str(path)]) == 0
    result = json.loads((Path(values["out"]) / "result.json").read_text())
    assert result["knn_accuracy"] and 0.0 <= result["knn_accuracy"][-1]["knn_accuracy"] <= 1.0
