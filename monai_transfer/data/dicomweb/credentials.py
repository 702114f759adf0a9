"""Credentials for a DICOMweb server: HTTP basic or a bearer token, from the environment or a netrc file.

Looked up in this order, for the server's host:

1. ``MONAI_TRANSFER_DICOMWEB_TOKEN``: a bearer token (``Authorization: Bearer ...``).
2. ``MONAI_TRANSFER_DICOMWEB_USER`` and ``MONAI_TRANSFER_DICOMWEB_PASSWORD``: HTTP basic.
3. A netrc file (``NETRC`` or ``~/.netrc``) entry ``machine HOST login USER password PASSWORD``: HTTP basic.

Credentials are never written anywhere: a URL with ``user:password@`` is refused (it would end up in an index, a
config or a shell history), :func:`public_url` is what the index, logs and reports record, and a
:class:`Credentials` prints as ``Credentials(basic, source=...)`` without its secret.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Credentials", "resolve_credentials", "public_url", "ENV_TOKEN", "ENV_USER", "ENV_PASSWORD"]

ENV_TOKEN = "MONAI_TRANSFER_DICOMWEB_TOKEN"
ENV_USER = "MONAI_TRANSFER_DICOMWEB_USER"
ENV_PASSWORD = "MONAI_TRANSFER_DICOMWEB_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """HTTP basic (``user``, ``password``) or bearer (``token``) credentials; ``source`` says where they came from.

    ``repr`` and ``str`` never show the secret.
    """

    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = ""

    @property
    def scheme(self) -> str:
        """``"bearer"`` or ``"basic"``."""
        return "bearer" if self.token else "basic"

    def __repr__(self) -> str:
        return f"Credentials({self.scheme}, source={self.source!r})"

    __str__ = __repr__

    def apply(self, session: object) -> None:
        """Set these credentials on a ``requests.Session`` (header or ``auth``)."""
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"  # type: ignore[attr-defined]
        else:
            session.auth = (self.user or "", self.password or "")  # type: ignore[attr-defined]


def public_url(url: str) -> str:
    """The server URL as recorded (no trailing slash, no query); raises if it carries credentials or is not http(s).

    Raises:
        ValueError: not an ``http``/``https`` URL, or ``user:password@`` in it.
    """
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a DICOMweb URL (http:// or https://): {url!r}")
    if parts.username is not None or parts.password is not None:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        raise ValueError(
            f"the DICOMweb URL for {host} holds credentials: remove them from the URL and set {ENV_USER}/"
            f"{ENV_PASSWORD}, {ENV_TOKEN} or a netrc entry (credentials are never stored)"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def resolve_credentials(
    url: str, environ: Mapping[str, str] | None = None, netrc_file: str | os.PathLike | None = None
) -> Credentials | None:
    """The credentials for ``url``'s host, or ``None`` (no authentication).

    Args:
        url: the server URL (credentials in it are refused by :func:`public_url`).
        environ: the environment to read (default ``os.environ``).
        netrc_file: the netrc file (default ``$NETRC`` or ``~/.netrc``; a missing file means no entry).

    Raises:
        ValueError: only a user or only a password is set in the environment, or the netrc file is malformed.
    """
    env = os.environ if environ is None else environ
    host = urlsplit(public_url(url)).hostname or ""
    if env.get(ENV_TOKEN):
        return Credentials(token=env[ENV_TOKEN], source=ENV_TOKEN)
    user, password = env.get(ENV_USER), env.get(ENV_PASSWORD)
    if user or password:
        if not (user and password is not None):
            raise ValueError(f"set both {ENV_USER} and {ENV_PASSWORD} (only one of them is set)")
        return Credentials(user=user, password=password, source=f"{ENV_USER}/{ENV_PASSWORD}")
    path = Path(netrc_file or env.get("NETRC") or Path.home() / ".netrc")
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as e:
        raise ValueError(f"netrc file {path} is malformed at line {e.lineno}") from None
    if entry is None:
        return None
    login, _, secret = entry
    return Credentials(user=login, password=secret or "", source=f"netrc {path}")
