"""A real Orthanc DICOMweb server on loopback for the tests (issue 23), reusable by any test module.

``orthanc_server(tmp_dir, users=None)`` is a context manager: it installs ``orthanc orthanc-dicomweb`` with apt when
``Orthanc`` is missing (under a lock file, so parallel test processes do not race), writes a config into ``tmp_dir``
(storage and index there, free loopback ports, remote access off, the DICOMweb plugin on ``/dicom-web/``), starts
``Orthanc config.json``, waits for ``/system`` and yields an :class:`OrthancServer`. The process is always stopped
(terminate, then kill) when the block ends, a failing test included.

Orthanc 1.10 has no bind-address setting: ``RemoteAccessAllowed: false`` refuses every client that is not on
loopback. Use ``upload(server, paths)`` (``POST /instances``) to fill it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OrthancServer", "orthanc_server", "ensure_orthanc", "upload", "free_port", "DICOMWEB_PLUGIN"]

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
_INSTALL_LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "monai_transfer_orthanc_install.lock"


@dataclass
class OrthancServer:
    """A running Orthanc: ``url`` (REST root), ``dicomweb`` (DICOMweb root), the process and its folder."""

    url: str
    dicomweb: str
    process: subprocess.Popen
    folder: Path
    users: dict[str, str] = field(default_factory=dict)

    def _auth_header(self) -> dict[str, str]:
        if not self.users:
            return {}
        user, password = next(iter(self.users.items()))
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        """One REST request to Orthanc (with the first registered user's credentials when auth is on)."""
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self._auth_header())
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback test server
            return resp.read()

    def json(self, path: str) -> object:
        """A REST GET decoded as JSON."""
        return json.loads(self.request(path))

    def stop(self) -> None:
        """Terminate the process, then kill it if it has not exited within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_orthanc() -> str:
    """Path of the ``Orthanc`` executable, installing ``orthanc orthanc-dicomweb`` with apt-get when missing.

    Raises:
        RuntimeError: the install failed (its output's tail in the message).
    """
    exe = shutil.which("Orthanc") or (os.path.exists("/usr/sbin/Orthanc") and "/usr/sbin/Orthanc") or None
    if exe and os.path.exists(DICOMWEB_PLUGIN):
        return exe
    _INSTALL_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(_INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; the others find it installed
        try:
            exe = shutil.which("Orthanc") or (os.path.exists("/usr/sbin/Orthanc") and "/usr/sbin/Orthanc") or None
            if exe and os.path.exists(DICOMWEB_PLUGIN):
                return exe
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
            for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "orthanc", "orthanc-dicomweb"]):
                res = subprocess.run(sudo + cmd, capture_output=True, text=True, env=env, timeout=900)
                if res.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed: {(res.stdout + res.stderr)[-2000:]}")
            # the Debian package starts a system service on port 8042: the tests run their own servers
            subprocess.run(sudo + ["service", "orthanc", "stop"], capture_output=True, timeout=60)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not os.path.exists(exe):
        raise RuntimeError("apt-get installed orthanc but no Orthanc executable was found")
    return exe


def _wait_ready(server: OrthancServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = (server.folder / "orthanc.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Orthanc exited with code {server.process.returncode}: {log}")
        try:
            server.request("/system")
            return
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer /system within {timeout:.0f} s: {last}")


@contextmanager
def orthanc_server(tmp_dir: str | os.PathLike, users: dict[str, str] | None = None) -> Iterator[OrthancServer]:
    """Start Orthanc with the DICOMweb plugin on free loopback ports; stop it when the block ends.

    Args:
        tmp_dir: folder for the config, storage, index and log (created).
        users: ``{user: password}``: turn HTTP basic authentication on with these users; default off.

    Yields:
        The running :class:`OrthancServer`.
    """
    exe = ensure_orthanc()
    folder = Path(tmp_dir)
    (folder / "db").mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "monai_transfer_test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "StorageCompression": False,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 8,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Host": f"127.0.0.1:{http_port}"},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen([exe, str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{http_port}"
    server = OrthancServer(url=url, dicomweb=url + "/dicom-web", process=proc, folder=folder, users=dict(users or {}))
    try:
        _wait_ready(server, timeout=60)
        yield server
    finally:
        server.stop()
        log.close()


def upload(server: OrthancServer, paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``POST /instances`` each file; return ``{path: Orthanc status}`` (``Success``, ``AlreadyStored``, or the error).

    Files Orthanc refuses (not DICOM, malformed) are reported, not raised: a caller keeps the accepted ones.
    """
    out: dict[str, str] = {}
    for p in paths:
        try:
            answer = json.loads(server.request("/instances", data=Path(p).read_bytes(), method="POST"))
            out[str(p)] = answer.get("Status", "?") if isinstance(answer, dict) else "?"
        except urllib.error.HTTPError as e:
            out[str(p)] = f"HTTP {e.code}"
    return out
