"""Streaming reader of ``multipart/related`` bodies (WADO-RS responses): parts come out as chunks, never whole.

WADO-RS answers with one part per instance; an enhanced multi-frame instance can be gigabytes, so a part's body is
yielded in pieces of at most the transport chunk size plus the delimiter length. A stream that ends before the
closing delimiter raises :class:`TruncatedStreamError` (a server or connection that stopped mid-body).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["TruncatedStreamError", "boundary_of", "iter_parts"]


class TruncatedStreamError(IOError):
    """The multipart stream ended before its closing delimiter."""


def boundary_of(content_type: str) -> bytes:
    """The ``boundary`` parameter of a ``multipart/...`` Content-Type header (quotes removed)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value:
            return value.strip().strip('"').encode("latin-1")
    raise ValueError(f"no multipart boundary in Content-Type {content_type!r}")


class _Buffer:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self.data = bytearray()

    def fill(self) -> bool:
        for chunk in self._it:
            if chunk:
                self.data += chunk
                return True
        return False

    def need(self, n: int, what: str) -> None:
        while len(self.data) < n:
            if not self.fill():
                raise TruncatedStreamError(f"the multipart stream ended inside {what}")

    def find(self, token: bytes, what: str) -> int:
        start = 0
        while (i := self.data.find(token, start)) < 0:
            start = max(0, len(self.data) - len(token) + 1)
            if not self.fill():
                raise TruncatedStreamError(f"the multipart stream ended inside {what}")
        return i


def _headers(raw: bytes) -> dict[str, str]:
    out = {}
    for line in raw.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def iter_parts(chunks: Iterable[bytes], boundary: bytes) -> Iterator[tuple[dict[str, str], Iterator[bytes]]]:
    """Yield ``(headers, body_chunks)`` per part; header names are lower case.

    Consume (or drop) each body before asking for the next part: the parts share one stream, and an unconsumed body
    is skipped when the next part is requested.
    """
    buf = _Buffer(chunks)
    first = b"--" + boundary
    delim = b"\r\n--" + boundary
    i = buf.find(first, "the preamble")
    del buf.data[: i + len(first)]
    while True:
        buf.need(2, "a delimiter")
        if buf.data[:2] == b"--":
            return  # the closing delimiter
        j = buf.find(b"\r\n", "a delimiter line")  # transport padding may precede the line break
        del buf.data[: j + 2]
        buf.need(2, "part headers")
        if buf.data[:2] == b"\r\n":
            headers: dict[str, str] = {}
            del buf.data[:2]
        else:
            j = buf.find(b"\r\n\r\n", "part headers")
            headers = _headers(bytes(buf.data[:j]))
            del buf.data[: j + 4]
        body = _body(buf, delim)
        yield headers, body
        for _ in body:  # skip what the consumer left
            pass


def _body(buf: _Buffer, delim: bytes) -> Iterator[bytes]:
    keep = len(delim) - 1  # a delimiter may straddle two chunks: hold back its possible start
    while True:
        i = buf.data.find(delim)
        if i >= 0:
            if i:
                yield bytes(buf.data[:i])
            del buf.data[: i + len(delim)]
            return
        if len(buf.data) > keep:
            out = bytes(buf.data[: len(buf.data) - keep])
            del buf.data[: len(buf.data) - keep]
            yield out
        if not buf.fill():
            raise TruncatedStreamError("the multipart stream ended inside a part body")
