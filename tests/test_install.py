"""How the package installs (issue 21): the base install holds what the shipped configs use, and the test environment
is pinned (``constraints/test.txt``, used by ``scripts/test.sh``) and is the one these tests run in.

The base install itself runs the README in a fresh virtual environment in ``tests/integration/test_fresh_install.py``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from setuptools.config.setupcfg import read_configuration

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints" / "test.txt"


def _pins() -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in re.findall(r"^([^#=\s]+)==(\S+)$", CONSTRAINTS.read_text(), re.M)}


def _requirements(*extras: str) -> list[Requirement]:
    options = read_configuration(ROOT / "setup.cfg")["options"]
    lines = list(options["install_requires"]) + [r for e in extras for r in options["extras_require"][e]]
    return [Requirement(line) for line in lines]


def test_base_install_holds_what_every_training_config_logs_with():
    """The fine-tuning configs and every shipped bundle's train.json use MONAI's TensorBoardHandler."""
    assert "tensorboard" in {canonicalize_name(r.name) for r in _requirements()}
    assert any("TensorBoard" in p.read_text() for p in (ROOT / "bundles").glob("*/configs/train.json"))


def test_every_requirement_is_pinned_within_its_range():
    pins = _pins()
    for req in _requirements("test"):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints/test.txt: run scripts/freeze_test_constraints.py"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"


def test_the_scripts_install_the_pinned_torch_and_the_test_script_uses_the_constraints():
    pins = _pins()
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    for script in ("quickstart.sh", "test.sh"):
        text = (ROOT / "scripts" / script).read_text()
        for name in ("torch", "torchvision"):
            assert f" {name}=={pins[name]}" in text, f"scripts/{script} and constraints/test.txt disagree on {name}"
    installs = [line for line in test_sh.splitlines() if "pip install" in line]
    assert installs and all("-c constraints/test.txt" in line for line in installs), installs
    assert [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set", "cd"))
    ] == ["bash scripts/test.sh"]


def test_this_environment_is_the_pinned_one():
    """The suite runs in the environment it pins (``bash scripts/test.sh`` installs it): no package in the closure of
    ``.[test]`` at another version than constraints/test.txt says."""
    spec = importlib.util.spec_from_file_location("freeze", ROOT / "scripts" / "freeze_test_constraints.py")
    freeze = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(freeze)
    here, pins = freeze.closure(), _pins()
    diff = {n: (pins.get(n), here.get(n)) for n in here.keys() | pins.keys() if pins.get(n) != here.get(n)}
    assert not diff, f"(pinned, installed) differ: {diff}; run bash scripts/test.sh, or regenerate the constraints"
