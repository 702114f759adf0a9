"""A thin client over ``dicomweb-client``: one session (credentials, TLS verification), errors in one sentence.

Every failure surfaces as :class:`DicomwebError` (or :class:`DicomwebAuthError` for HTTP 401/403) whose message
names the server by its public URL (never its credentials) and says what to do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from monai.utils import optional_import

from .credentials import ENV_PASSWORD, ENV_TOKEN, ENV_USER, Credentials, public_url, resolve_credentials

requests, _ = optional_import("requests")
dicomweb_client, _ = optional_import("dicomweb_client")

__all__ = ["DicomwebClient", "DicomwebError", "DicomwebAuthError", "SERIES_FIELDS"]

T = TypeVar("T")

#: the series-level attributes a scan asks QIDO-RS for (UIDs, modality, and the instance count it fingerprints)
SERIES_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")


class DicomwebError(RuntimeError):
    """A DICOMweb request failed; the message is one sentence naming the server (without credentials)."""


class DicomwebAuthError(DicomwebError):
    """The server refused the credentials (HTTP 401 or 403)."""


class DicomwebClient:
    """QIDO-RS and WADO-RS metadata requests to one server.

    Args:
        url: the DICOMweb root (``http://host:8042/dicom-web``); credentials in the URL are refused.
        credentials: explicit credentials; default: :func:`resolve_credentials` (environment, then netrc).
        verify: TLS verification for https (``True``, or a CA bundle path); ``False`` only when asked for.
        timeout: seconds per request.
    """

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        verify: bool | str = True,
        timeout: float = 60.0,
    ) -> None:
        self.url = public_url(url)
        self.credentials = credentials if credentials is not None else resolve_credentials(self.url)
        session = requests.Session()
        session.verify = verify
        if self.credentials is not None:
            self.credentials.apply(session)
        self.session = session
        self.timeout = timeout
        self.requests = 0  # requests sent (a scan's cost); counted under a lock, metadata is fetched in threads
        self._lock = threading.Lock()
        self._client = dicomweb_client.DICOMwebClient(self.url, session=session, timeout=timeout)
        # busy servers (429, 503, 504) are retried a few times with exponential back-off
        self._client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)

    def __repr__(self) -> str:
        return f"DicomwebClient({self.url!r}, credentials={self.credentials!r})"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._lock:
            self.requests += 1
        try:
            return fn()
        except requests.exceptions.HTTPError as e:
            code = getattr(e.response, "status_code", None)
            if code in (401, 403):
                hint = f"set {ENV_USER}/{ENV_PASSWORD}, {ENV_TOKEN} or a netrc entry for the host"
                used = f"the credentials from {self.credentials.source}" if self.credentials else "no credentials"
                raise DicomwebAuthError(
                    f"the DICOMweb server {self.url} refused {used} (HTTP {code}) for {what}: {hint}"
                ) from None
            raise DicomwebError(f"the DICOMweb server {self.url} answered HTTP {code} to {what}") from None
        except requests.exceptions.SSLError as e:
            raise DicomwebError(f"TLS verification of the DICOMweb server {self.url} failed: {e}") from None
        except requests.exceptions.ConnectionError:
            raise DicomwebError(
                f"cannot reach the DICOMweb server {self.url} for {what} (connection refused or dropped): "
                "is it running and is the URL right?"
            ) from None
        except requests.exceptions.Timeout:
            raise DicomwebError(
                f"the DICOMweb server {self.url} did not answer {what} within {self.timeout:g} s"
            ) from None
        except ValueError as e:  # a body that is not DICOM JSON
            raise DicomwebError(f"the DICOMweb server {self.url} sent an unreadable answer to {what}: {e}") from None

    def search_series(self, query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """QIDO-RS ``/series`` with ``query`` as search filters (all pages); DICOM JSON datasets."""
        filters = dict(query or {})
        return self._call(
            "the series query" + (f" {filters}" if filters else ""),
            lambda: self._client.search_for_series(
                search_filters=filters, fields=list(SERIES_FIELDS), get_remaining=True
            ),
        )

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """WADO-RS ``/studies/{study}/series/{series}/metadata``: every instance's DICOM JSON without bulk data."""
        return self._call(
            f"the metadata of series {series_uid}",
            lambda: self._client.retrieve_series_metadata(study_uid, series_uid),
        )

    def instance_url(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The WADO-RS URL of one instance (what the index stores as its path)."""
        return f"{self.url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
