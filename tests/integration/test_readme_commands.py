"""The README's "Command line" block runs as written, line by line and in order, in an empty folder (issue 12: the
README's own examples failed, and pointed at files its steps never wrote).

The ``bundle create`` line names a published source: it writes a ``large_files.yml`` entry and downloads nothing,
so it runs offline as written too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The commands of the README's "Command line" block: continuation lines joined, comments kept out."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Command line\n.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no bash block under '## Command line'"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", line)
        current += " " + line.rstrip("\\ ").strip()
        if not line.rstrip().endswith("\\"):
            if current.strip():
                commands.append(current.strip())
            current = ""
    return commands


def test_readme_block_is_parsed():
    commands = readme_commands()
    assert commands[0] == "monai-transfer --help" and any(c.startswith("monai-transfer finetune") for c in commands)


def test_every_readme_command_runs_as_written(tmp_path):
    exe = shutil.which("monai-transfer")
    assert exe, "the monai-transfer entry point is not installed (pip install -e .)"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in readme_commands():
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    # what the lines promise is there
    assert (tmp_path / "runs" / "simclr" / "bundle" / "configs" / "train.json").is_file()
    assert list((tmp_path / "runs" / "lpft" / "predictions").glob("*_seg.nii.gz"))
    assert list((tmp_path / "runs" / "mb_predictions").glob("*_seg.nii.gz"))
    assert (tmp_path / "runs" / "resnet18_cxr" / "large_files.yml").is_file()
