"""Fixtures of the integration tests: a real Orthanc DICOMweb server on loopback (``tests/dicomweb_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomweb_server import OrthancServer, orthanc_server


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An empty Orthanc with the DICOMweb plugin, authentication off; one per test module, always stopped."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="module")
def orthanc_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An empty Orthanc with HTTP basic authentication on (user ``reader``); one per test module, always stopped."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc_auth"), users={"reader": "s3cret-pw"}) as server:
        yield server


@pytest.fixture(scope="module")
def demo_dicom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's DICOM series (four simulated subjects, 32 slices each), written once per module."""
    from monai_transfer.data.demo import make_demo_data

    out = make_demo_data(
        tmp_path_factory.mktemp("demo") / "demo",
        n_subjects=4,
        n_sites=1,
        size=32,
        dicom=True,
        n_unlabeled=0,
        n_other_modality=0,
        lesion_prevalence=0.0,
    )
    return Path(out["dicom_root"])
