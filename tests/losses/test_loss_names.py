"""Our exported names must not shadow a MONAI component (DESIGN convention 6): MONAI's config locator indexes
every loaded module whose name starts with ``monai``, ours included."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator

import monai_transfer.losses as losses

SSL_LOSSES = [
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "BarlowTwinsRedundancyLoss",
    "VICRegLoss",
    "DINOLoss",
    "MoCoLoss",
]


@pytest.mark.parametrize("name", losses.__all__)
def test_name_is_unique_for_monai_locator(name):
    located = ComponentLocator().get_component_module_name(name)
    # ours, not MONAI's (``gather_with_grad`` is re-exported from ``monai_transfer.utils.distributed``)
    assert isinstance(located, str) and located.startswith("monai_transfer."), located


@pytest.mark.parametrize("name", SSL_LOSSES)
def test_builds_from_bundle_config(name):
    kwargs = {"output_dim": 8, "warmup_teacher_temp": 0.04, "teacher_temp": 0.07, "warmup_teacher_temp_epochs": 3}
    config = {"_target_": f"monai_transfer.losses.{name}", **(kwargs if name == "DINOLoss" else {})}
    assert type(ConfigParser({"loss": config}).get_parsed_content("loss")).__name__ == name
