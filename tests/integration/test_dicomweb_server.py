"""The real-Orthanc fixture itself (issue 23): starts on loopback, takes uploads, answers QIDO-RS, always stops."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from dicomweb_server import orthanc_server, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_orthanc_takes_the_demo_series_and_answers_qido(orthanc, demo_dicom):
    files = sorted(demo_dicom.rglob("*.dcm"))
    status = upload(orthanc, files)
    assert set(status.values()) <= {"Success", "AlreadyStored"}, status
    series = json.loads(urllib.request.urlopen(orthanc.dicomweb + "/series?Modality=MR").read())
    assert len(series) == 4
    assert sum(s["00201209"]["Value"][0] for s in series) == len(files)
    assert orthanc.url.startswith("http://127.0.0.1:")
    config = json.loads((orthanc.folder / "config.json").read_text())
    assert config["RemoteAccessAllowed"] is False and config["AuthenticationEnabled"] is False


def test_authentication_refuses_a_client_without_credentials(orthanc_auth):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(orthanc_auth.dicomweb + "/studies")
    assert e.value.code == 401
    assert orthanc_auth.json("/system")["Name"] == "monai_transfer_test"  # the helper sends the registered user


def test_the_server_is_stopped_even_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with orthanc_server(tmp_path / "o") as server:
            process = server.process
            raise RuntimeError("boom")
    assert process.poll() is not None
