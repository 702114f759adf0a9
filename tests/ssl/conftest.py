from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than spinning two.

    Session-wide, so that module-scoped fixtures (a pretraining run shared by several tests) run with the same thread
    count as the tests that compare against them: float sums in another order drift further with every step.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
