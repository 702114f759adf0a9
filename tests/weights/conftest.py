"""Shared helpers for the weight-import tests: seeded random weights, randomised batch-norm statistics, and
checkpoints written to disk in a published layout (tests never download anything)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """These tests run many small ops; on the shared 2-core CI machines one intra-op thread halves the CPU time
    (no spin-waiting for a busy second core). Restored after each module, so other test folders are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and batch-norm buffer seeded random values so that equivalence tests can fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05 + p)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.num_batches_tracked.fill_(7)
    return module.eval()


@pytest.fixture
def randomize() -> Callable[..., nn.Module]:
    return _randomize


@pytest.fixture
def save_checkpoint(tmp_path: Path) -> Callable[[Any, str], Path]:
    """Write an object with torch.save into the test's tmp folder and return the path."""

    def save(obj: Any, name: str = "checkpoint.pth") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, path)
        return path

    return save


def assert_all_loaded(report: Any) -> None:
    """Every module key landed: nothing missing, unexpected or mismatched, every stage at 1.0."""
    assert report.missing == [], report.missing[:10]
    assert report.unexpected == [], report.unexpected[:10]
    assert report.mismatched == [], report.mismatched[:10]
    assert report.stages, "the report has no stages"
    assert all(f == 1.0 for f in report.stage_fractions().values()), report.stage_fractions()


@pytest.fixture
def all_loaded() -> Callable[[Any], None]:
    return assert_all_loaded
