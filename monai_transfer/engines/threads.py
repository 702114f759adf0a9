"""A run's CPU threads (the ``threads`` field of every run spec), set for the run and restored after it.

Scoped rather than set once for the process: a study or a notebook runs several runs in one process, and a run must not
leave its thread count to the next (another count splits CPU sums differently, so the same seed gives other numbers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu_threads"]


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """Run the body with ``threads`` torch CPU threads (``None``: as they are); yields the count in effect."""
    before = torch.get_num_threads()
    if threads is None or int(threads) == before:
        yield before
        return
    torch.set_num_threads(int(threads))
    try:
        yield int(threads)
    finally:
        torch.set_num_threads(before)
