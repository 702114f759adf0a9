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
