"""Salted hashing of patient identifiers.

Patient identifiers (PatientID, PatientName, PatientBirthDate) never enter the index, logs or reports in clear text.
They are replaced by ``HMAC-SHA256(salt, value)`` truncated to 16 hex digits. The salt is either given by the user or
created once (32 random bytes) and stored in ``<index_dir>/salt.key``; keep that file private, since anyone who has
it can test guesses of identifiers against the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SALT_FILE = "salt.key"
PATIENT_TAGS: tuple[str, ...] = ("PatientID", "PatientName", "PatientBirthDate")

__all__ = ["SALT_FILE", "PATIENT_TAGS", "load_or_create_salt", "hash_identifier"]


def load_or_create_salt(index_dir: str | os.PathLike, salt: str | bytes | None = None) -> bytes:
    """Return the salt for ``index_dir``, creating and storing a random one on first use.

    Args:
        index_dir: the index folder (created if missing).
        salt: a user-given salt; when given it is used as is and nothing is written.

    Returns:
        The salt bytes.
    """
    if salt is not None:
        return salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    path = Path(index_dir) / SALT_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    tmp = path.with_name(f".{SALT_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex())
    try:
        os.link(tmp, path)  # atomic and never overwrites a salt created concurrently
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())


def hash_identifier(value: object, salt: bytes) -> str | None:
    """Salted hash of one identifier value; ``None`` or an empty value stays ``None``.

    Args:
        value: the identifier (any DICOM value; converted with ``str``).
        salt: the salt from :func:`load_or_create_salt`.

    Returns:
        16 hex digits of HMAC-SHA256, or ``None``.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return hmac.new(salt, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
