"""Test-session hygiene shared by every test folder."""

from __future__ import annotations

import logging
import sys

import pytest


@pytest.fixture(autouse=True)
def _loggers_write_to_the_live_stderr():
    """MONAI gives its module loggers a ``StreamHandler`` on ``sys.stderr`` when first imported; imported inside a test
    with captured output, that stream is pytest's capture buffer, closed when the test ends, and every later record
    prints a "--- Logging error ---" traceback into another test's stderr. Point such handlers at the stderr of now."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                handler.stream = sys.stderr  # not setStream: it flushes the closed stream first
    yield


@pytest.fixture(autouse=True)
def _precision_cache_and_fp32(tmp_path_factory, monkeypatch):
    """``amp: auto`` probes the network on a CPU with bfloat16 instructions and caches the result under
    ``$MONAI_TRANSFER_CACHE``: the tests' cache lives in the session's temporary folder (nothing written under ``~``),
    and ``MONAI_TRANSFER_BF16=0`` makes ``auto`` read the CPU as one without bfloat16, so that the suite's numbers stay
    the fp32 ones on every machine and never depend on a probe's timing. Both are environment variables, so the
    tests' subprocesses (``python -m monai.bundle run``, study workers, Ray) inherit them.
    ``tests/engines/test_precision.py`` switches bfloat16 back where a test asks for it."""
    monkeypatch.setenv("MONAI_TRANSFER_CACHE", str(tmp_path_factory.getbasetemp() / "monai_transfer_cache"))
    monkeypatch.setenv("MONAI_TRANSFER_BF16", "0")
    yield
