"""DICOMweb credentials (issue 23): environment or netrc, never in a URL, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from monai_transfer.data.dicomweb import Credentials, DicomwebClient, public_url, resolve_credentials
from monai_transfer.data.dicomweb.credentials import ENV_PASSWORD, ENV_TOKEN, ENV_USER

URL = "https://pacs.example.org:8443/dicom-web/"


def test_bearer_token_from_the_environment_wins():
    env = {ENV_TOKEN: "tok-123", ENV_USER: "u", ENV_PASSWORD: "p"}
    cred = resolve_credentials(URL, env)
    assert cred.scheme == "bearer" and cred.source == ENV_TOKEN
    session = requests.Session()
    cred.apply(session)
    assert session.headers["Authorization"] == "Bearer tok-123"


def test_basic_from_the_environment_and_half_of_it_is_an_error():
    cred = resolve_credentials(URL, {ENV_USER: "reader", ENV_PASSWORD: "pw"})
    session = requests.Session()
    cred.apply(session)
    assert session.auth == ("reader", "pw")
    with pytest.raises(ValueError, match="set both"):
        resolve_credentials(URL, {ENV_USER: "reader"})


def test_netrc_entry_for_the_host(tmp_path: Path):
    rc = tmp_path / "netrc"
    rc.write_text("machine other.org login x password y\nmachine pacs.example.org login reader password pw\n")
    rc.chmod(0o600)
    cred = resolve_credentials(URL, {}, netrc_file=rc)
    assert (cred.user, cred.password, cred.source) == ("reader", "pw", f"netrc {rc}")
    assert resolve_credentials("http://elsewhere.org/dicom-web", {}, netrc_file=rc) is None
    assert resolve_credentials(URL, {"NETRC": str(tmp_path / "missing")}) is None


def test_secrets_never_printed():
    cred = Credentials(user="reader", password="s3cret", source="env")
    token = Credentials(token="tok-s3cret", source="env")
    for text in (repr(cred), str(cred), repr(token), repr(DicomwebClient(URL, credentials=cred))):
        assert "s3cret" not in text and "reader" not in text


def test_credentials_in_the_url_are_refused_and_the_public_url_is_plain():
    with pytest.raises(ValueError, match="holds credentials") as e:
        public_url("https://reader:s3cret@pacs.example.org/dicom-web")
    assert "s3cret" not in str(e.value) and "reader" not in str(e.value)
    assert public_url(URL) == "https://pacs.example.org:8443/dicom-web"
    with pytest.raises(ValueError, match="not a DICOMweb URL"):
        public_url("/data/dicom")


def test_tls_verification_is_on_by_default():
    assert DicomwebClient(URL, credentials=None).session.verify is True
    assert DicomwebClient(URL, verify="/etc/ssl/ca.pem").session.verify == "/etc/ssl/ca.pem"
