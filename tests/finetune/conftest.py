from __future__ import annotations

import pytest

from monai_transfer.data import make_demo_data


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """Small demo data (12 simulated subjects, 32 px), shared by the fine-tuning tests."""
    return make_demo_data(tmp_path_factory.mktemp("demo"), n_subjects=12, size=32, n_unlabeled=1, seed=0)
