"""Start and stop a real MONAI Label server for our bundles (or MONAI Label's own ``monaibundle`` app).

Does not import ``monailabel``: the server runs in the MONAI Label environment's Python, in its own process group, so
that stopping it stops everything it started (training runs MONAI Label spawns included).

Defaults are the safe ones: the server listens on 127.0.0.1 only and starts offline (``zoo_source local``: bundles
come from the app's ``model/`` folder, never from the model zoo; ``sam2 false``: no SAM2 weights are fetched).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_transfer.label.bundles import ServedBundle
from monai_transfer.utils.atomic import atomic_write_text

__all__ = [
    "LOOPBACK",
    "OFFLINE_CONF",
    "ServerError",
    "build_app",
    "log_tail",
    "free_port",
    "link_bundles",
    "server_command",
    "start_server",
    "stop_server",
    "wait_until_ready",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
OFFLINE_CONF: dict[str, str] = {"zoo_source": "local", "sam2": "false"}

MAIN_PY = '''"""MONAI Label app serving monai_transfer bundles (written by monai-transfer label serve)."""

from monai_transfer.label.app import TransferLabelApp  # noqa: F401  (MONAI Label finds the MONAILabelApp subclass)
'''


class ServerError(RuntimeError):
    """The server exited or did not answer in time (the message holds the end of its log)."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def link_bundles(bundles: Sequence[ServedBundle], model_dir: str | os.PathLike) -> list[str]:
    """Make ``model_dir/<name>`` a link to each bundle folder (MONAI Label serves the folders under ``model/``);
    an existing link is replaced, a real folder of that name is an error (nothing of the user's is removed)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for b in bundles:
        link = model_dir / b.name
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise FileExistsError(f"{link} exists and is not a link made by monai-transfer; choose another --app-dir")
        link.symlink_to(b.path, target_is_directory=True)
    return [b.name for b in bundles]


def build_app(bundles: Sequence[ServedBundle], app_dir: str | os.PathLike) -> Path:
    """Write our MONAI Label app to ``app_dir``: a ``main.py`` that loads :class:`TransferLabelApp` and
    ``model/<name>`` links to the bundles (served in place: training replaces each bundle's ``models/model.pt``)."""
    app = Path(app_dir).expanduser().absolute()
    app.mkdir(parents=True, exist_ok=True)
    atomic_write_text(app / "main.py", MAIN_PY)
    link_bundles(bundles, app / "model")
    return app


def server_command(
    python: str | os.PathLike,
    app_dir: str | os.PathLike,
    studies: str | os.PathLike,
    models: Sequence[str],
    port: int,
    host: str = LOOPBACK,
    conf: Mapping[str, str] | None = None,
) -> list[str]:
    """``python -m monailabel.main start_server ...`` with the offline defaults, ``models`` and ``conf``."""
    cmd = [str(python), "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies", str(studies)]
    cmd += ["--host", host, "--port", str(port)]
    for key, value in {**OFFLINE_CONF, "models": ",".join(models), **(conf or {})}.items():
        cmd += ["--conf", key, str(value)]
    return cmd


def start_server(cmd: Sequence[str], log: str | os.PathLike | None = None, env: Mapping[str, str] | None = None):
    """Start the server in its own process group; output goes to ``log`` (default: inherited)."""
    environ = {**os.environ, **(env or {})}
    # MONAI Label spawns its background tasks with "python -m ...": make that the environment's Python
    environ["PATH"] = f"{Path(cmd[0]).parent}{os.pathsep}{environ.get('PATH', '')}"
    environ.setdefault("MONAI_LABEL_PYEXE", str(cmd[0]))
    out = open(log, "ab") if log else None
    try:
        return subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT if out else None, env=environ, start_new_session=True
        )
    finally:
        if out:
            out.close()


def log_tail(log: str | os.PathLike | None, lines: int = 25) -> str:
    if not log or not os.path.exists(log):
        return ""
    return "".join(Path(log).read_text(errors="replace").splitlines(keepends=True)[-lines:])


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0, log: str | None = None) -> dict:
    """Poll ``url/info/`` until it answers; returns the info.

    Raises:
        ServerError: the process exited, or no answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"the MONAI Label server exited with status {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/info/", timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            time.sleep(0.5)
    raise ServerError(f"the MONAI Label server did not answer {url}/info/ within {timeout:.0f} s:\n{log_tail(log)}")


def stop_server(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        pass
