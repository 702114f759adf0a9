"""Retrieve a DICOM series from a DICOMweb server (WADO-RS) into a :class:`SeriesCache`, on demand.

The series' instances are listed with QIDO-RS. A series with nothing fetched yet then comes in one WADO-RS request
(``GET {base}/studies/{study}/series/{series}``, ``transfer-syntax=*`` so the stored bytes come back unchanged), each
multipart part streamed from the socket to its own file in the cache's partial folder: on Orthanc one request is several
times faster than one per instance. Whatever that stream did not deliver whole (a fault mid-stream, or a series resumed
after a killed run) is fetched instance by instance (``.../instances/{sop}``) by a small thread pool. Memory stays
bounded by the chunk size per stream, whatever the series' size. Every file is checked (multipart framing, the part's
Content-Length, a structural walk of the DICOM file, the SOPInstanceUID asked for) before it is recorded. Connection
errors, timeouts, truncated bodies, 429 and 5xx are retried with exponential back-off; 401, 403 and 404 stop at once
with one sentence. A run killed mid-retrieve leaves its completed instances in the partial folder and the next retrieve
fetches only the rest; the series appears in the cache only once complete.

Credentials (``auth``, ``headers``, a prepared ``session``, or ``user:password@`` in the URL) are passed to ``requests``
only: never logged, never written, never part of an error message.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .cache import FetchFn, PartialSeries, SeriesCache
from .instance_check import TruncatedInstanceError, check_instance
from .multipart_stream import TruncatedStreamError, boundary_of, iter_parts

__all__ = ["RetrieveError", "SeriesNotFoundError", "retrieve_series", "open_series", "series_fetch", "loggable_url"]

logger = logging.getLogger(__name__)

ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_JSON = "application/dicom+json"
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    TruncatedStreamError,
    TruncatedInstanceError,
)


class RetrieveError(RuntimeError):
    """A series could not be retrieved; the message is one sentence naming the series and the server."""


class SeriesNotFoundError(RetrieveError):
    """The server does not have the series (or one of its instances)."""


class _Transient(Exception):
    """A retryable failure (5xx, 429): retried like a connection error."""


def loggable_url(url: str) -> str:
    """``url`` without ``user:password@`` (what may appear in logs and messages). Unlike
    :func:`monai_transfer.data.dicomweb.credentials.public_url`, which refuses such a URL for what is recorded, a
    retrieve accepts one and moves its credentials into the session's auth."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _session(
    base_url: str, session: requests.Session | None, auth: Any, headers: Mapping[str, str] | None, workers: int
) -> tuple[requests.Session, Any, dict[str, str]]:
    s = session or requests.Session()
    if session is None:
        # one pooled connection per worker, so concurrent requests never wait for a socket
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(workers, 1))
        s.mount("http://", adapter)
        s.mount("https://", adapter)
    parts = urlsplit(base_url)
    if auth is None and parts.username:
        auth = (parts.username, parts.password or "")  # credentials in the URL become auth, never a logged URL
    return s, auth, dict(headers or {})


class _Server:
    """One server's requests: retries with back-off, statuses turned into one-sentence errors."""

    def __init__(self, base_url: str, session: requests.Session, auth: Any, headers: dict[str, str], opts: dict):
        self.base = loggable_url(base_url)
        self.session, self.auth, self.headers = session, auth, headers
        self.retries, self.backoff, self.timeout, self.verify = (
            opts[k] for k in ("retries", "backoff", "timeout", "verify")
        )
        self.stop = threading.Event()  # set when one instance fails for good: the others give up their retries

    def get(self, path: str, accept: str, params: dict | None = None) -> requests.Response:
        r = self.session.get(
            f"{self.base}/{path}",
            headers={**self.headers, "Accept": accept},
            params=params,
            auth=self.auth,
            stream=True,
            timeout=self.timeout,
            verify=self.verify,
        )
        if r.status_code in _RETRY_STATUS:
            r.close()
            raise _Transient(f"HTTP {r.status_code}")
        return r

    def with_retries(self, what: str, call: Any) -> Any:
        """Run ``call()``, retrying transient failures; raise :class:`RetrieveError` naming ``what`` when they persist."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (*_TRANSIENT, _Transient) as e:
                if attempt == self.retries or self.stop.is_set():
                    reason = str(e) if isinstance(e, _Transient) else type(e).__name__
                    raise RetrieveError(
                        f"could not retrieve {what} from {self.base} after {attempt + 1} tries ({reason})"
                    ) from None
                delay = self.backoff * 2**attempt
                logger.info("retrying %s in %.1f s (%s)", what, delay, type(e).__name__)
                if self.stop.wait(delay):
                    raise RetrieveError(f"retrieving {what} from {self.base} was cancelled") from None
        raise AssertionError("unreachable")


def _part_length(headers: Mapping[str, str]) -> int | None:
    size = headers.get("content-length", "")
    return int(size) if size.isdigit() else None


def _status_error(r: requests.Response, what: str, base: str) -> RetrieveError:
    code = r.status_code
    r.close()
    if code == 401:
        return RetrieveError(f"the DICOMweb server {base} refused the credentials (HTTP 401) for {what}")
    if code == 403:
        return RetrieveError(f"the DICOMweb server {base} denied access (HTTP 403) to {what}")
    if code == 404:
        return SeriesNotFoundError(f"{what} was not found on {base} (HTTP 404)")
    return RetrieveError(f"the DICOMweb server {base} answered HTTP {code} for {what}")


def _list_instances(server: _Server, study_uid: str, series_uid: str, page: int = 1000) -> list[str]:
    """The series' SOPInstanceUIDs from QIDO-RS, page by page (``limit``/``offset``)."""
    what = f"the instance list of series {series_uid}"
    out: list[str] = []
    while True:

        def one_page(offset: int = len(out)) -> list[Any]:
            r = server.get(
                f"studies/{study_uid}/series/{series_uid}/instances",
                ACCEPT_JSON,
                {"limit": page, "offset": offset, "includefield": "00080018"},
            )
            if r.status_code != 200:
                if r.status_code == 204:
                    r.close()
                    return []
                raise _status_error(r, f"series {series_uid} of study {study_uid}", server.base)
            return r.json()

        rows = server.with_retries(what, one_page)
        new = [str(row["00080018"]["Value"][0]) for row in rows if row.get("00080018", {}).get("Value")]
        fresh = [u for u in new if u not in set(out)]
        out.extend(fresh)
        if len(rows) < page or not fresh:  # a server that ignores offset repeats the first page: stop there
            return out


def _fetch_instance(server: _Server, partial: PartialSeries, study: str, series: str, sop: str, chunk: int) -> None:
    what = f"instance {sop} of series {series}"

    def once() -> None:
        r = server.get(f"studies/{study}/series/{series}/instances/{sop}", ACCEPT_INSTANCE)
        if r.status_code != 200:
            raise _status_error(r, what, server.base)
        with r:
            ctype = r.headers.get("Content-Type", "")
            body = r.iter_content(chunk)
            expected = None
            if ctype.lower().startswith("multipart/"):
                parts = iter_parts(body, boundary_of(ctype))
                try:
                    headers, body = next(parts)
                except StopIteration:
                    raise TruncatedStreamError("the response holds no part") from None
                expected = _part_length(headers)
            partial.write_instance(body, functools.partial(check_instance, expected_size=expected), sop)

    server.with_retries(what, once)


def _stream_series(server: _Server, partial: PartialSeries, study: str, series: str, chunk: int) -> bool:
    """Fetch the whole series in one request, each part streamed to its own file as it arrives; True when complete.

    One request instead of one per instance is several times faster on Orthanc. Any transient fault (connection lost,
    a truncated part, 5xx) only ends the stream: what arrived whole is kept and the per-instance pass fetches the rest.
    """
    what = f"series {series} of study {study}"
    try:
        r = server.get(f"studies/{study}/series/{series}", ACCEPT_INSTANCE)
        if r.status_code != 200:
            raise _status_error(r, what, server.base)
        with r:
            ctype = r.headers.get("Content-Type", "")
            if not ctype.lower().startswith("multipart/"):
                return False  # not WADO-RS as we know it: the per-instance pass fetches everything
            for headers, body in iter_parts(r.iter_content(chunk), boundary_of(ctype)):
                partial.write_instance(body, functools.partial(check_instance, expected_size=_part_length(headers)))
        return True  # the closing delimiter arrived: every instance the server has for the series is here
    except (*_TRANSIENT, _Transient) as e:
        logger.info(
            "the stream of series %s stopped (%s); fetching what is missing one by one", series, type(e).__name__
        )


def _fetch_missing(
    server: _Server, partial: PartialSeries, study: str, series: str, todo: list[str], opts: dict
) -> BaseException | None:
    """Fetch ``todo`` with a bounded pool; the first failure stops the rest (queued ones never start) and is returned."""
    pool = ThreadPoolExecutor(max_workers=max(1, opts["workers"]), thread_name_prefix="wado")
    try:
        futures = [pool.submit(_fetch_instance, server, partial, study, series, s, opts["chunk"]) for s in todo]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in finished and f.exception() is not None]
        return failed[0].exception() if failed else None
    finally:
        # also on Ctrl-C in the waiting thread: queued instances are dropped, running ones end their current try
        server.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _fetcher(server: _Server, study_uid: str, series_uid: str, opts: dict) -> FetchFn:
    def fetch(partial: PartialSeries) -> list[str]:
        if not partial.completed() and opts["strategy"] == "auto":
            logger.info("retrieving series %s from %s", series_uid, server.base)
            if _stream_series(server, partial, study_uid, series_uid, opts["chunk"]) and partial.completed():
                return list(partial.completed())  # complete: no listing needed (QIDO costs Orthanc a read per instance)
        sops = _list_instances(server, study_uid, series_uid)
        if not sops:
            raise SeriesNotFoundError(f"series {series_uid} of study {study_uid} was not found on {server.base}")
        done = partial.completed()
        todo = [s for s in sops if s not in done]
        if todo:
            logger.info(
                "retrieving series %s from %s: %d of %d instances one by one",
                series_uid,
                server.base,
                len(todo),
                len(sops),
            )
        error = _fetch_missing(server, partial, study_uid, series_uid, todo, opts) if todo else None
        if error is not None:
            n_done = len([s for s in sops if s in partial.completed()])
            if isinstance(error, RetrieveError):
                kept = f"; {n_done} of {len(sops)} instances are kept for the next retrieve" if n_done else ""
                raise type(error)(f"{error}{kept}") from None
            raise error
        return sops

    return fetch


def _make_fetch(
    base_url: str, study_uid: str, series_uid: str, session: Any, auth: Any, headers: Any, **opts: Any
) -> FetchFn:
    if opts["retries"] < 0 or opts["backoff"] < 0 or opts["workers"] < 1:
        raise ValueError(f"retries and backoff must be >= 0 and workers >= 1, got {opts}")
    if opts["strategy"] not in ("auto", "instances"):
        raise ValueError(f"strategy must be 'auto' or 'instances', got {opts['strategy']!r}")
    s, auth, headers = _session(base_url, session, auth, headers, opts["workers"])
    inner = _fetcher(_Server(base_url, s, auth, headers, opts), study_uid, series_uid, opts)

    def fetch(partial: PartialSeries) -> list[str]:
        try:
            return inner(partial)
        finally:
            if session is None:
                s.close()  # ours: its pooled connections end with the fetch

    return fetch


@contextmanager
def open_series(base_url: str, study_uid: str, series_uid: str, cache: SeriesCache, **options: Any) -> Iterator[Path]:
    """Like :func:`retrieve_series` (the same keyword ``options``), as a context manager that keeps the entry pinned
    (never evicted) while inside."""
    with cache.open(series_uid, series_fetch(base_url, study_uid, series_uid, **options)) as path:
        yield path


def series_fetch(
    base_url: str,
    study_uid: str,
    series_uid: str,
    *,
    session: requests.Session | None = None,
    auth: Any = None,
    headers: Mapping[str, str] | None = None,
    workers: int = 4,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float | tuple[float, float] = (10.0, 300.0),
    verify: bool | str = True,
    chunk_size: int = 1 << 20,
    strategy: str = "auto",
) -> FetchFn:
    """The :class:`SeriesCache` fetch function of one series (what :func:`retrieve_series` and :func:`open_series` give
    the cache).

    Args:
        session: a ``requests.Session`` to use (e.g. one the credentials module prepared); default: a new one.
        auth: a ``requests`` auth object or ``(user, password)``; never logged or stored.
        headers: extra request headers (e.g. ``Authorization: Bearer ...``); never logged or stored.
        workers: instances fetched at the same time by the per-instance pass.
        retries: further tries of a request after a connection error, timeout, truncated body, 429 or 5xx.
        backoff: first wait in seconds between tries; doubled each time.
        timeout: ``requests`` timeout (connect, read) in seconds.
        verify: TLS verification (on by default), or a CA bundle path.
        chunk_size: bytes read from the socket at a time (memory per stream).
        strategy: ``"auto"``: a series with nothing fetched yet comes in one streamed request, and whatever it misses
            (a fault mid-stream, a resumed series) instance by instance; ``"instances"``: always instance by instance.
    """
    opts = dict(workers=workers, retries=retries, backoff=backoff, timeout=timeout, verify=verify, chunk=chunk_size)
    return _make_fetch(base_url, study_uid, series_uid, session, auth, headers, strategy=strategy, **opts)


def retrieve_series(base_url: str, study_uid: str, series_uid: str, cache: SeriesCache, **options: Any) -> Path:
    """Return the cache folder of a series, retrieving it with WADO-RS first when it is absent or corrupt.

    Args:
        base_url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID (also the cache key).
        cache: the :class:`SeriesCache` to fill.
        options: how it is fetched (``session``, ``auth``, ``headers``, ``workers``, ``retries``, ``backoff``,
            ``timeout``, ``verify``, ``chunk_size``, ``strategy``): see :func:`series_fetch`.

    Returns:
        The folder holding ``<SOPInstanceUID>.dcm`` per instance and ``manifest.json``. It is not pinned: use
        :func:`open_series` while reading it if other processes share the cache.

    Raises:
        SeriesNotFoundError: the server has no such series (or instance).
        RetrieveError: credentials refused, access denied, or the server unreachable after the retries.
    """
    return cache.get(series_uid, series_fetch(base_url, study_uid, series_uid, **options))
